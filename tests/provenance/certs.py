"""A private test PKI made with `cryptography`: a root CA and an end-entity signer with the profile
C2PA requires (CA:FALSE, critical key usage digitalSignature, EKU document signing, SKI/AKI, subject O)."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def _usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")
    return x509.KeyUsage(**{name: flags.get(name, False) for name in names}, encipher_only=False, decipher_only=False)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class TestPki:
    root: Path  # the trust anchor (PEM)
    chain: Path  # leaf then root (PEM)
    key: Path  # the leaf's key (PEM)
    self_signed_chain: Path  # a self-signed leaf with the same profile (C2PA must refuse it)
    self_signed_key: Path
    expired_chain: Path
    expired_key: Path


def make_test_pki(folder: Path) -> TestPki:
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facegan test root"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facegan tests")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name).public_key(root_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - day).not_valid_after(now + 365 * day)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))

    def leaf(issuer_key, issuer_name, start, end, name="facegan test signer"):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facegan tests")])
        issuer_key = issuer_key or key
        certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject).public_key(key.public_key())
                       .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(_usage(digital_signature=True), critical=True)
                       .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), critical=False)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
                       .sign(issuer_key, hashes.SHA256()))
        return certificate, key

    signer, signer_key = leaf(root_key, root_name, now - day, now + 30 * day)
    lonely, lonely_key = leaf(None, None, now - day, now + 30 * day, name="self-signed")
    old, old_key = leaf(root_key, root_name, now - 30 * day, now - 2 * day, name="expired")
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "root": _pem(root), "chain": _pem(signer) + _pem(root), "key": _key_pem(signer_key),
        "self_signed_chain": _pem(lonely), "self_signed_key": _key_pem(lonely_key),
        "expired_chain": _pem(old) + _pem(root), "expired_key": _key_pem(old_key),
    }
    for name, payload in files.items():
        (folder / f"{name}.pem").write_bytes(payload)
    return TestPki(**{name: folder / f"{name}.pem" for name in files})
