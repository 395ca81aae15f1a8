"""C2PA content credentials through c2pa-python, against a private test root made with `cryptography`."""
from __future__ import annotations

import numpy as np
import pytest

from facegan.errors import FaceganError
from facegan.images import save_image
from facegan.provenance.credentials import C2paSigner, load_c2pa_config, load_signer, read_credentials
from facegan.provenance.inspect import read_provenance
from facegan.provenance.record import COMPOSITE, TRAINED, Provenance
from tests.provenance.certs import make_test_pki

FACE = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def signer(pki):
    return load_signer(pki.chain, pki.key)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_signed_images_are_trusted_against_the_root_and_keep_their_xmp(tmp_path, pki, signer, suffix):
    record = Provenance(source_type=TRAINED, action="sample", model="sha256:" + "cd" * 32, seed=5, signer=signer)
    path = save_image(FACE, tmp_path / f"face{suffix}", record)
    read = read_provenance(path, pki.root.read_text())
    assert read["c2pa"]["state"] == "Trusted", read["c2pa"]
    assert read["c2pa"]["action"] == "c2pa.created" and read["c2pa"]["digital_source_type"] == TRAINED
    assert read["c2pa"]["facegan"]["model"] == "sha256:" + "cd" * 32 and read["c2pa"]["facegan"]["seed"] == "5"
    assert read["xmp"]["seed"] == "5" and read["xmp"]["digital_source_type"] == TRAINED  # signing kept the XMP packet
    # Without the root as anchor the signature still verifies, but the signer is not trusted.
    assert read_provenance(path)["c2pa"]["state"] == "Valid"


def test_changed_pixels_make_the_manifest_invalid(tmp_path, pki, signer):
    path = save_image(FACE, tmp_path / "face.png", Provenance(source_type=COMPOSITE, action="repair", signer=signer))
    data = bytearray(path.read_bytes())
    index = data.find(b"IDAT") + 12
    data[index] ^= 0xFF
    tampered = tmp_path / "tampered.png"
    tampered.write_bytes(bytes(data))
    read = read_credentials(bytes(data), "PNG", pki.root.read_text())
    assert read["state"] == "Invalid" and read["failures"], read
    assert read_provenance(path, pki.root.read_text())["c2pa"]["state"] == "Trusted"


def test_a_manifest_from_another_root_is_not_trusted(tmp_path, tmp_path_factory, signer):
    other = make_test_pki(tmp_path_factory.mktemp("other"))
    path = save_image(FACE, tmp_path / "face.png", Provenance(source_type=TRAINED, action="sample", signer=signer))
    assert read_provenance(path, other.root.read_text())["c2pa"]["state"] != "Trusted"


def test_c2pa_itself_refuses_a_self_signed_leaf(pki):
    """facegan's early check and the reference agree: c2pa-python will not sign with a self-signed certificate."""
    lonely = C2paSigner(chain_pem=pki.self_signed_chain.read_bytes(), key_pem=pki.self_signed_key.read_bytes(), algorithm="es256", subject="x")
    with pytest.raises(FaceganError, match="C2PA signing failed"):
        lonely.sign(b"\x89PNG", "PNG", Provenance(source_type=TRAINED, action="sample"))
    with pytest.raises(FaceganError, match="self-signed"):
        load_signer(pki.self_signed_chain, pki.self_signed_key)


def test_bad_credentials_are_one_clear_line(tmp_path, pki):
    from cryptography.hazmat.primitives import serialization

    with pytest.raises(FaceganError, match="not valid now|valid .* not now"):
        load_signer(pki.expired_chain, pki.expired_key)
    with pytest.raises(FaceganError, match="not the key of the first certificate"):
        load_signer(pki.chain, pki.self_signed_key)
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(FaceganError, match="no PEM certificate"):
        load_signer(tmp_path / "empty.pem", pki.key)
    key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    (tmp_path / "locked.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(FaceganError, match="encrypted"):
        load_signer(pki.chain, tmp_path / "locked.pem")
    with pytest.raises(FaceganError, match="--c2pa-cert"):
        load_signer(tmp_path, pki.key)  # a folder
    with pytest.raises(FaceganError, match="timestamp authority"):
        load_signer(pki.chain, pki.key, tsa_url="ftp://nowhere")


def test_the_settings_file_resolves_paths_beside_itself(tmp_path, pki):
    (tmp_path / "c2pa.toml").write_text(f'cert = "{pki.chain}"\nkey = "{pki.key}"\n')
    assert load_c2pa_config(tmp_path / "c2pa.toml") == {"cert": str(pki.chain), "key": str(pki.key), "tsa_url": None}
    (tmp_path / "rel.json").write_text('{"c2pa": {"cert": "a.pem", "key": "b.pem"}}')
    assert load_c2pa_config(tmp_path / "rel.json")["cert"] == str(tmp_path / "a.pem")
    (tmp_path / "bad.toml").write_text('cert = "a"\nkey = "b"\npassword = "x"\n')
    with pytest.raises(FaceganError, match="unknown setting 'password'"):
        load_c2pa_config(tmp_path / "bad.toml")
    (tmp_path / "broken.toml").write_text("cert = ")
    with pytest.raises(FaceganError, match="not valid TOML"):
        load_c2pa_config(tmp_path / "broken.toml")


def test_real_content_is_not_signed(tmp_path, signer):
    """A C2PA "created" claim on a real photo would be false: real faces get the XMP record only."""
    path = save_image(FACE, tmp_path / "real.png", Provenance(source_type=None, action="train", signer=signer))
    read = read_provenance(path)
    assert read["c2pa"] is None and read["xmp"]["content"] == "reencoded"


def test_reading_never_fetches_a_remote_manifest_the_image_names():
    """An image can point C2PA at a remote manifest (XMP dcterms:provenance); reading it must not send that GET
    (a tracking pixel, or a probe of internal hosts): facegan reads offline."""
    import http.server
    import io
    import socketserver
    import threading

    from PIL import Image, PngImagePlugin

    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/tracking/manifest.c2pa"
        packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                  f'<rdf:Description rdf:about="" xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/></rdf:RDF></x:xmpmeta>')
        for image_format in ("PNG", "JPEG"):
            buffer = io.BytesIO()
            image = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
            if image_format == "PNG":
                info = PngImagePlugin.PngInfo()
                info.add_itxt("XML:com.adobe.xmp", packet)
                image.save(buffer, format="PNG", pnginfo=info)
            else:
                image.save(buffer, format="JPEG", xmp=packet.encode())
            read_credentials(buffer.getvalue(), image_format)
        server.shutdown()
    assert hits == []


def test_require_c2pa_with_trust_needs_the_signer_to_chain_to_it(tmp_path, tmp_path_factory, pki, signer, capsys):
    from facegan.cli.main import main

    other = make_test_pki(tmp_path_factory.mktemp("stranger"))
    save_image(FACE, tmp_path / "signed.png", Provenance(source_type=TRAINED, action="sample", signer=signer))
    assert main(["provenance", str(tmp_path / "signed.png"), "--require-c2pa"]) == 0  # valid, no anchors asked for
    assert main(["provenance", str(tmp_path / "signed.png"), "--require-c2pa", "--trust", str(pki.root)]) == 0
    assert main(["provenance", str(tmp_path / "signed.png"), "--require-c2pa", "--trust", str(other.root)]) == 1
    assert "lack trusted C2PA credentials" in capsys.readouterr().err
