"""The XMP record: what is written is what is read, for facegan's packets and other tools' spellings."""
from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from facegan.errors import FaceganError
from facegan.images import encode_image, save_image
from facegan.provenance.inspect import read_provenance
from facegan.provenance.record import (ALGORITHMIC, COMPOSITE, EDITED, IPTC_VOCABULARY, TRAINED, Provenance, XmpError,
                                       parse_xmp)
from facegan.version import __version__

IMAGE = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8)[:, :, None].repeat(3, axis=2) * 8


@pytest.mark.parametrize("source_type", [TRAINED, COMPOSITE, ALGORITHMIC, EDITED])
def test_the_packet_round_trips_every_field(source_type):
    record = Provenance(source_type=source_type, action="sample", model="sha256:" + "ab" * 32, seed=42, fingerprint="fp123")
    parsed = parse_xmp(record.xmp())
    assert parsed == {"digital_source_type": source_type, "tool": f"facegan {__version__}", "action": "sample",
                      "model": "sha256:" + "ab" * 32, "seed": "42", "fingerprint": "fp123"}
    assert (IPTC_VOCABULARY + source_type).encode() in record.xmp()


def test_real_content_names_no_source_type():
    parsed = parse_xmp(Provenance(source_type=None, action="train").xmp())
    assert "digital_source_type" not in parsed and parsed["content"] == "reencoded"


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=40).filter(lambda text: "\x00" not in text and all(ord(c) >= 32 or c in "\t\n" for c in text)))
def test_any_text_survives_escaping(text):
    """Seeds as typed (`--seeds`), model paths: XML specials and quotes must not break or inject into the packet."""
    parsed = parse_xmp(Provenance(source_type=TRAINED, action="sample", seeds=text).xmp())
    # XML attribute-value normalisation turns tabs and newlines into spaces; everything else is kept.
    assert parsed["seeds"] == text.replace("\t", " ").replace("\n", " ")
    assert parsed["digital_source_type"] == TRAINED


def test_other_tools_spelling_as_child_elements_is_read():
    packet = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
      <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">
        <Iptc4xmpExt:DigitalSourceType>http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture</Iptc4xmpExt:DigitalSourceType>
        <xmp:CreatorTool>SomeCamera 1.0</xmp:CreatorTool></rdf:Description></rdf:RDF></x:xmpmeta>"""
    assert parse_xmp(packet) == {"digital_source_type": "digitalCapture", "tool": "SomeCamera 1.0"}


@pytest.mark.parametrize("packet, reason", [
    (b"no xml here", "no x:xmpmeta"),
    (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><unclosed></x:xmpmeta>", "malformed"),
    (b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&a;</x:xmpmeta>', "DTD"),
])
def test_bad_packets_are_refused_with_a_reason(packet, reason):
    with pytest.raises(XmpError, match=reason):
        parse_xmp(packet)


def test_records_refuse_unknown_source_types_and_bad_actions():
    with pytest.raises(ValueError, match="digital source type"):
        Provenance(source_type="digitalCapture", action="sample")
    with pytest.raises(ValueError, match="action"):
        Provenance(source_type=TRAINED, action="")


@pytest.mark.parametrize("suffix, pil_format", [(".png", "PNG"), (".jpg", "JPEG"), (".webp", "WEBP")])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_writer_embeds_the_packet_in_each_format(tmp_path, suffix, pil_format, channels):
    record = Provenance(source_type=TRAINED, action="sample", model="sha256:00", seed=7)
    path = save_image(IMAGE[:, :, :channels], tmp_path / f"face{suffix}", record)
    with Image.open(path) as written:
        assert written.format == pil_format
        packet = written.info.get("xmp")
    assert parse_xmp(packet) == parse_xmp(record.xmp())
    read = read_provenance(path)
    assert read["xmp"]["seed"] == "7" and read["xmp"]["digital_source_type"] == TRAINED and read["c2pa"] is None
    if pil_format == "PNG":  # the standard place: an iTXt chunk keyed XML:com.adobe.xmp, uncompressed
        assert b"iTXtXML:com.adobe.xmp\x00\x00\x00" in path.read_bytes()


def test_pixels_are_unchanged_by_marking():
    marked = encode_image(IMAGE, ".png", Provenance(source_type=TRAINED, action="sample"))
    plain = encode_image(IMAGE, ".png", Provenance.off())
    assert len(marked) > len(plain)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(marked))), np.asarray(Image.open(io.BytesIO(plain))))


def test_off_writes_no_metadata_and_unmarked_files_read_as_none(tmp_path):
    path = save_image(IMAGE, tmp_path / "plain.png", Provenance.off())
    assert b"xmpmeta" not in path.read_bytes()
    assert read_provenance(path) == {"path": str(path), "format": "PNG", "xmp": None, "c2pa": None}


def test_bmp_cannot_carry_provenance_so_it_is_refused_unless_off(tmp_path):
    with pytest.raises(FaceganError, match="cannot carry provenance"):
        save_image(IMAGE, tmp_path / "grid.bmp", Provenance(source_type=TRAINED, action="sample"))
    assert not (tmp_path / "grid.bmp").exists()
    save_image(IMAGE, tmp_path / "grid.bmp", Provenance.off())


def test_the_writer_needs_a_record():
    with pytest.raises(TypeError, match="Provenance"):
        encode_image(IMAGE, ".png", None)  # type: ignore[arg-type]


def test_reading_refuses_non_images_and_fifos(tmp_path):
    import os

    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(FaceganError, match="not a readable image"):
        read_provenance(tmp_path / "notes.png")
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(FaceganError, match="FIFO"):
        read_provenance(tmp_path / "pipe.png")


@pytest.mark.parametrize("compressed", [False, True])
def test_an_xmp_chunk_after_the_pixel_data_is_found_without_decoding(tmp_path, compressed):
    """Other tools put iTXt after IDAT (Pillow sees it only after decoding every pixel); the chunk walk finds it."""
    import struct
    import zlib

    plain = encode_image(IMAGE, ".png", Provenance.off())
    packet = Provenance(source_type=TRAINED, action="sample", seed=9).xmp()
    data = b"XML:com.adobe.xmp\x00" + bytes([int(compressed), 0]) + b"\x00\x00" + (zlib.compress(packet) if compressed else packet)
    chunk = struct.pack(">I", len(data)) + b"iTXt" + data + struct.pack(">I", zlib.crc32(b"iTXt" + data) & 0xFFFFFFFF)
    end = plain.rfind(b"IEND") - 4
    (tmp_path / "late.png").write_bytes(plain[:end] + chunk + plain[end:])
    assert read_provenance(tmp_path / "late.png")["xmp"]["seed"] == "9"


def test_a_crafted_value_cannot_forge_a_line_of_output(tmp_path):
    """`&#10;` in an XMP attribute is a newline once parsed: printed raw it would forge a second image's line."""
    from facegan.provenance.inspect import describe

    packet = Provenance(source_type=TRAINED, action="sample", seeds="1NEWLINE/tmp/real.png: xmp: none; c2pa: Trusted").xmp()
    path = tmp_path / "fake.png"
    path.write_bytes(encode_image(IMAGE, ".png", Provenance.off()))
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", packet.decode().replace("NEWLINE", "&#10;"))
    Image.open(path).save(path, format="PNG", pnginfo=info)
    record = read_provenance(path)
    assert "\n" in record["xmp"]["seeds"]
    line = describe(record)
    assert "\n" not in line and "\\n/tmp/real.png" in line
