"""C2PA content credentials: signing images facegan writes, and validating them, offline, with c2pa-python.

The signer is the user's certificate chain (leaf first) and private key in PEM. C2PA refuses
self-signed leaves, so the chain must come from a CA; facegan checks what it can before any work
(readable, the key matches the leaf, not self-signed, not expired) and then signs one probe image,
so a certificate C2PA refuses fails in a second with C2PA's reason. No network is used unless the
user gives a timestamp authority URL.
"""
from __future__ import annotations

import datetime
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegan.errors import FaceganError
from facegan.version import __version__

if TYPE_CHECKING:
    from facegan.provenance.record import Provenance

MIME_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# The extended key usages C2PA accepts for a claim signer (C2PA 2.x trust model): document signing,
# e-mail protection, and the Microsoft and C2PA-specific ones. c2pa-python 0.38's default settings
# reject a leaf whose EKU is document signing unless this list is given explicitly.
SIGNER_EKUS = ("1.3.6.1.5.5.7.3.36", "1.3.6.1.5.5.7.3.4", "1.3.6.1.4.1.311.76.59.1.9", "1.3.6.1.4.1.62558.2.1")
CUSTOM_ASSERTION = "dev.facegan.provenance"
MAX_PEM_BYTES = 1 << 20


def c2pa_settings(trust_anchors_pem: str | None = None) -> dict[str, Any]:
    """c2pa-rs settings: no thumbnail (a 32 px face would carry a larger JPEG of itself), the C2PA
    signer EKUs, and the trust anchors to validate against when given."""
    trust: dict[str, Any] = {"trust_config": "\n".join(SIGNER_EKUS) + "\n"}
    if trust_anchors_pem:
        trust["trust_anchors"] = trust_anchors_pem
    # Never fetch: an image can name a remote manifest URL (a tracking pixel, or a probe of internal hosts) and
    # c2pa-rs would GET it while reading; OCSP lookups would phone the CA. Both off: reading stays offline.
    verify = {"verify_trust": True, "remote_manifest_fetch": False, "ocsp_fetch": False}
    return {"trust": trust, "verify": verify, "builder": {"thumbnail": {"enabled": False}}}


def _read_pem(path: str | os.PathLike, what: str, option: str) -> bytes:
    from facegan.files import ReadRefused, read_regular_file

    try:
        return read_regular_file(path, MAX_PEM_BYTES)
    except ReadRefused as error:
        raise FaceganError(f"{option}: {error}; give the {what} as a PEM file") from None


def _algorithm(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        names = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if key.curve.name not in names:
            raise FaceganError(f"--c2pa-key is an EC key on {key.curve.name}; C2PA signs with P-256, P-384 or P-521")
        return names[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise FaceganError(f"--c2pa-key is a {type(key).__name__.lstrip('_')}; C2PA signs with EC (P-256/384/521), Ed25519 or RSA-PSS keys")


@dataclass(frozen=True)
class C2paSigner:
    """A checked certificate chain and key; `sign` adds a C2PA manifest to encoded image bytes."""

    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    algorithm: str
    subject: str
    tsa_url: str | None = None

    def _native(self):
        import c2pa

        cached = getattr(self, "_cache", None)
        if cached is None:
            info = c2pa.C2paSignerInfo(self.algorithm, self.chain_pem, self.key_pem, self.tsa_url)
            cached = (c2pa.Signer.from_info(info), c2pa.Context.from_dict(c2pa_settings()))
            object.__setattr__(self, "_cache", cached)  # one native signer and context per signer, reused for every image
        return cached

    def manifest(self, provenance: "Provenance", title: str) -> dict[str, Any]:
        action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": provenance.source_type_uri,
                                  "softwareAgent": {"name": "facegan", "version": __version__}}
        if provenance.action:
            action["parameters"] = {"facegan.action": provenance.action}
        details = {key: value for key, value in provenance.fields().items() if key != "tool"}
        return {
            "claim_generator_info": [{"name": "facegan", "version": __version__}],
            "title": title,
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": [action]}},
                {"label": CUSTOM_ASSERTION, "data": details},
            ],
        }

    def sign(self, payload: bytes, image_format: str, provenance: "Provenance", title: str = "image") -> bytes:
        """`payload` (encoded PNG/JPEG/WebP bytes) with an embedded, signed C2PA manifest."""
        import c2pa

        mime = MIME_TYPES.get(image_format)
        if mime is None:
            raise FaceganError(f"C2PA signing needs PNG, JPEG or WebP, not {image_format}")
        if provenance.source_type is None:
            raise ValueError("C2PA manifests are written for generated or changed images only (source_type None is real content)")
        signer, context = self._native()
        out = io.BytesIO()
        try:
            with c2pa.Builder(self.manifest(provenance, title), context=context) as builder:
                builder.sign(signer, mime, io.BytesIO(payload), out)
        except c2pa.C2paError as error:
            raise FaceganError(f"C2PA signing failed: {str(error).splitlines()[0][:200]}") from None
        return out.getvalue()


def load_signer(cert_path: str | os.PathLike, key_path: str | os.PathLike, tsa_url: str | None = None) -> C2paSigner:
    """Check a PEM chain (leaf first) and its private key, then sign a probe image with them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    chain_pem = _read_pem(cert_path, "certificate chain (leaf first, then its CA)", "--c2pa-cert")
    key_pem = _read_pem(key_path, "private key", "--c2pa-key")
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise FaceganError(f"--c2pa-cert {cert_path} holds no PEM certificate; give the chain as PEM (leaf first, then its CA)") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise FaceganError(f"--c2pa-key {key_path} is encrypted; give an unencrypted PEM key (facegan does not ask for passwords)") from None
    except (ValueError, Exception) as error:  # noqa: BLE001 - cryptography raises several types for a bad key
        raise FaceganError(f"--c2pa-key {key_path} is not a PEM private key ({type(error).__name__}); give the key of the leaf certificate") from None
    leaf = certificates[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf.public_key().public_bytes(serialization.Encoding.DER, public):
        raise FaceganError(f"--c2pa-key {key_path} is not the key of the first certificate in {cert_path}; give the leaf's key (the chain starts with the leaf)")
    if leaf.issuer == leaf.subject:
        raise FaceganError(
            f"--c2pa-cert {cert_path} starts with a self-signed certificate; C2PA refuses self-signed signers: "
            "give an end-entity certificate issued by a CA, followed by that CA's certificate"
        )
    now = datetime.datetime.now(datetime.timezone.utc)
    if leaf.not_valid_after_utc < now or leaf.not_valid_before_utc > now:
        raise FaceganError(f"--c2pa-cert {cert_path}: the signing certificate is valid {leaf.not_valid_before_utc:%Y-%m-%d} to "
                           f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now; renew it")
    if tsa_url is not None and not (isinstance(tsa_url, str) and tsa_url.startswith(("http://", "https://"))):
        raise FaceganError(f"--c2pa-tsa must be an http(s) URL of a timestamp authority, got {tsa_url!r:.80}")
    subject = ", ".join(f"{attribute.oid._name}={attribute.value}" for attribute in leaf.subject)
    signer = C2paSigner(chain_pem=chain_pem, key_pem=key_pem, algorithm=_algorithm(key), subject=subject, tsa_url=tsa_url)
    _probe(signer)
    return signer


def _probe(signer: C2paSigner) -> None:
    """Sign a 1x1 PNG now, so C2PA's own refusal of the certificate comes before any work."""
    import zlib
    import struct

    from facegan.provenance.record import TRAINED, Provenance

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")
    try:
        signer.sign(png, "PNG", Provenance(source_type=TRAINED, action="probe"), "probe")
    except FaceganError as error:
        raise FaceganError(f"--c2pa-cert/--c2pa-key: {str(error)[:300]}; C2PA needs a CA-issued end-entity certificate "
                           "(CA:FALSE, key usage digitalSignature, EKU document signing 1.3.6.1.5.5.7.3.36)") from None


def load_c2pa_config(path: str | os.PathLike) -> dict[str, str | None]:
    """A TOML or JSON settings file: `cert`, `key` (paths, relative to the file) and optionally `tsa_url`."""
    import tomllib

    from facegan.files import read_text_option

    path = Path(path)
    text = read_text_option(path, MAX_PEM_BYTES, "--c2pa-config", "give a TOML or JSON file")
    try:
        settings = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, RecursionError) as error:
        raise FaceganError(f"--c2pa-config {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'} ({str(error)[:100]})") from None
    if not isinstance(settings, dict):
        raise FaceganError(f"--c2pa-config {path} must hold a table with cert and key")
    settings = settings.get("c2pa", settings) if isinstance(settings.get("c2pa"), dict) else settings
    unknown = sorted(set(settings) - {"cert", "key", "tsa_url"})
    if unknown:
        raise FaceganError(f"--c2pa-config {path}: unknown setting '{unknown[0]}' (known: cert, key, tsa_url)")
    for name in ("cert", "key"):
        if not isinstance(settings.get(name), str) or not settings[name]:
            raise FaceganError(f"--c2pa-config {path} needs {name} = \"PATH\" (a PEM file)")
    tsa_url = settings.get("tsa_url")
    if tsa_url is not None and not isinstance(tsa_url, str):
        raise FaceganError(f"--c2pa-config {path}: tsa_url must be a URL string")
    return {"cert": str(path.parent / settings["cert"]), "key": str(path.parent / settings["key"]), "tsa_url": tsa_url}


def read_credentials(payload: bytes, image_format: str, trust_anchors_pem: str | None = None) -> dict[str, Any] | None:
    """The C2PA manifest of encoded image bytes, validated; None when the image has no manifest.

    `state` is C2PA's validation state: "Trusted" (valid and chained to a trust anchor), "Valid"
    (signature and hashes verify, signer not in the trust anchors) or "Invalid" (with `failures`).
    """
    import c2pa

    mime = MIME_TYPES.get(image_format)
    if mime is None:
        return None
    context = c2pa.Context.from_dict(c2pa_settings(trust_anchors_pem))
    try:
        reader = c2pa.Reader.try_create(mime, io.BytesIO(payload), context=context)
    except c2pa.C2paError as error:
        return {"state": "Invalid", "failures": [str(error).splitlines()[0][:200]]}
    if reader is None:
        return None
    with reader:
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
        manifest = reader.get_active_manifest() or {}
    failures = [entry.get("code", "?") for entry in (results.get("activeManifest") or {}).get("failure", [])]
    record: dict[str, Any] = {"state": state, "failures": failures}
    signature = manifest.get("signature_info") or {}
    if signature:
        record["signer"] = ", ".join(str(signature[key]) for key in ("common_name", "issuer") if signature.get(key))
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions = (assertion.get("data") or {}).get("actions") or []
            if actions:
                record["action"] = actions[0].get("action")
                source = actions[0].get("digitalSourceType")
                if isinstance(source, str):
                    from facegan.provenance.record import IPTC_VOCABULARY

                    record["digital_source_type"] = source[len(IPTC_VOCABULARY):] if source.startswith(IPTC_VOCABULARY) else source
        elif assertion.get("label") == CUSTOM_ASSERTION and isinstance(assertion.get("data"), dict):
            record["facegan"] = {key: str(value) for key, value in assertion["data"].items()}
    return record
