"""Provenance of the images facegan writes: the record and its XMP packet (`record`), C2PA content
credentials (`credentials`), and reading both back from files (`inspect`).

Core layer (no torch): `facegan.images`, the one image writer, embeds what this package describes.
"""
from facegan.provenance.record import ALGORITHMIC, COMPOSITE, SOURCE_TYPES, TRAINED, Provenance, parse_xmp

__all__ = ["ALGORITHMIC", "COMPOSITE", "SOURCE_TYPES", "TRAINED", "Provenance", "parse_xmp"]
