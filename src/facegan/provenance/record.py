"""What facegan says about an image it writes: the provenance record and its XMP packet.

Every image facegan writes carries an XMP packet (PNG: an iTXt chunk `XML:com.adobe.xmp`; JPEG: an
APP1 segment; WebP: an XMP chunk) with the IPTC digital source type — the term the EU AI Act's
"machine-readable marking" is usually read as — plus facegan's version, the model's export hash
and the seed. The packet holds no date, so an image depends only on its model and seed.

Core module: no torch, no numpy, no Pillow.
"""
from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from facegan.version import __version__

if TYPE_CHECKING:
    from facegan.provenance.credentials import C2paSigner

IPTC_VOCABULARY = "http://cv.iptc.org/newscodes/digitalsourcetype/"
# The IPTC digital source types facegan writes (https://cv.iptc.org/newscodes/digitalsourcetype/).
TRAINED = "trainedAlgorithmicMedia"  # made entirely by a trained model (a generated face)
COMPOSITE = "compositeWithTrainedAlgorithmicMedia"  # a real photo changed by a trained model (repaired, edited, attacked) or real and generated side by side
ALGORITHMIC = "algorithmicMedia"  # made by an algorithm with no training data (a random repair mask)
EDITED = "composite"  # a real photo changed by facegan with no trained model (damage, OpenCV inpainting or denoising)
SOURCE_TYPES = (TRAINED, COMPOSITE, ALGORITHMIC, EDITED)
# Written on images facegan re-encodes without generating or changing them (a grid of training faces, an
# upload shown back): facegan does not know what made those pixels (a camera, or another generator), so it
# names no IPTC type and claims nothing about their origin, only that it generated nothing in them.
REAL_CONTENT = "reencoded"

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_FACEGAN = "http://ns.facegan.dev/provenance/1.0/"
# XMP property (namespace, name) -> the record's field.
_FACEGAN_FIELDS = {"Action": "action", "Model": "model", "Seed": "seed", "Seeds": "seeds", "Fingerprint": "fingerprint", "Content": "content"}
# The largest packet we parse (facegan's are < 2 KiB; other tools' can hold thumbnails).
MAX_XMP_BYTES = 4 * 2**20


@dataclass(frozen=True)
class Provenance:
    """How the writer marks one image (or one batch of images of the same kind).

    `source_type` is one of SOURCE_TYPES, or None for real faces facegan only re-encodes. `enabled`
    False (`--no-provenance`) writes plain images; `signer` adds a C2PA manifest to each image.
    """

    source_type: str | None
    action: str
    model: str | None = None  # the export's content hash, "sha256:<hex>"
    seed: int | None = None
    seeds: str | None = None  # for a grid or strip: the seeds it shows, e.g. "0-63"
    fingerprint: str | None = None  # the learned fingerprint the model's training data carried
    enabled: bool = True
    signer: "C2paSigner | None" = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.source_type is not None and self.source_type not in SOURCE_TYPES:
            raise ValueError(f"unknown digital source type {self.source_type!r}; use one of {SOURCE_TYPES} or None")
        if not self.action or not re.fullmatch(r"[a-z][a-z0-9 _-]*", self.action):
            raise ValueError(f"action must be a short lower-case word, got {self.action!r}")

    @classmethod
    def off(cls, action: str = "experiment") -> "Provenance":
        """No marking at all (`--no-provenance`); results that have metadata say so."""
        return cls(source_type=None, action=action, enabled=False)

    def with_seed(self, seed: int) -> "Provenance":
        """The same record for the image of one seed."""
        return dataclasses.replace(self, seed=int(seed), seeds=None)

    def with_source(self, source_type: str | None) -> "Provenance":
        return dataclasses.replace(self, source_type=source_type)

    def about(self, model: str | None = None, fingerprint: str | None = None, seeds: str | None = None) -> "Provenance":
        """The same record (and signer) naming the model, its fingerprint and the seeds shown."""
        return dataclasses.replace(self, model=model, fingerprint=fingerprint, seeds=seeds)

    @property
    def source_type_uri(self) -> str | None:
        return IPTC_VOCABULARY + self.source_type if self.source_type else None

    def summary(self) -> dict[str, Any]:
        """What a results JSON records about how its images were marked."""
        return {"xmp": self.enabled, "c2pa": bool(self.enabled and self.signer is not None),
                "digital_source_type": self.source_type if self.enabled else None, "model": self.model if self.enabled else None}

    def fields(self) -> dict[str, str]:
        """The record as XMP property values (strings), in a fixed order."""
        values = {"tool": f"facegan {__version__}", "action": self.action}
        if self.source_type is None:
            values["content"] = REAL_CONTENT
        for name in ("model", "seed", "seeds", "fingerprint"):
            value = getattr(self, name)
            if value is not None:
                values[name] = str(value)
        return values

    def xmp(self) -> bytes:
        """The XMP packet (UTF-8) for this record."""
        return build_xmp(self.source_type_uri, self.fields())


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def build_xmp(source_type_uri: str | None, values: Mapping[str, str]) -> bytes:
    """An XMP packet with the IPTC DigitalSourceType, xmp:CreatorTool and facegan's own properties."""
    attributes = []
    if source_type_uri:
        attributes.append(f'Iptc4xmpExt:DigitalSourceType="{_escape(source_type_uri)}"')
    attributes.append(f'xmp:CreatorTool="{_escape(values["tool"])}"')
    for prop, name in _FACEGAN_FIELDS.items():
        if name in values:
            attributes.append(f'facegan:{prop}="{_escape(values[name])}"')
    body = "\n    ".join(attributes)
    packet = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        f'<x:xmpmeta xmlns:x="{NS_X}">\n'
        f' <rdf:RDF xmlns:rdf="{NS_RDF}">\n'
        f'  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{NS_IPTC_EXT}" xmlns:xmp="{NS_XMP}" xmlns:facegan="{NS_FACEGAN}"\n'
        f"    {body}/>\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="r"?>'
    )
    return packet.encode("utf-8")


class XmpError(ValueError):
    """An XMP packet that cannot be parsed."""


def parse_xmp(packet: bytes | str) -> dict[str, str]:
    """The provenance properties of an XMP packet (facegan's or another tool's), as strings.

    Keys: `digital_source_type` (the IPTC term's last part when it is an IPTC URI, else the URI),
    `tool`, and facegan's `action`, `model`, `seed`, `seeds`, `fingerprint`, `content` where present.
    Properties may be attributes of rdf:Description or child elements (both are valid RDF/XML).
    """
    if isinstance(packet, str):
        packet = packet.encode("utf-8", "replace")
    if len(packet) > MAX_XMP_BYTES:
        raise XmpError(f"the XMP packet is {len(packet):,} bytes (at most {MAX_XMP_BYTES:,} are read)")
    if b"<!DOCTYPE" in packet or b"<!ENTITY" in packet:
        raise XmpError("the XMP packet declares a DTD or entities (refused: XMP needs neither)")
    start, end = packet.find(b"<x:xmpmeta"), packet.rfind(b"</x:xmpmeta>")
    if start < 0 or end < 0:
        start, end = packet.find(b"<rdf:RDF"), packet.rfind(b"</rdf:RDF>")
        closing = len(b"</rdf:RDF>")
    else:
        closing = len(b"</x:xmpmeta>")
    if start < 0 or end < 0:
        raise XmpError("no x:xmpmeta or rdf:RDF element")
    try:
        root = ElementTree.fromstring(packet[start : end + closing])
    except ElementTree.ParseError as error:
        raise XmpError(f"malformed XML ({error})") from None
    properties: dict[str, str] = {}
    for description in root.iter(f"{{{NS_RDF}}}Description"):
        items = list(description.attrib.items()) + [(child.tag, (child.text or "").strip()) for child in description]
        for tag, value in items:
            namespace, _, name = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
            if namespace == NS_IPTC_EXT and name == "DigitalSourceType":
                properties["digital_source_type"] = value[len(IPTC_VOCABULARY):] if value.startswith(IPTC_VOCABULARY) else value
            elif namespace == NS_XMP and name == "CreatorTool":
                properties["tool"] = value
            elif namespace == NS_FACEGAN and name in _FACEGAN_FIELDS:
                properties[_FACEGAN_FIELDS[name]] = value
    return properties
