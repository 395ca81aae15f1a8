"""`facegan provenance IMAGE...`, and the provenance options every image-writing command shares
(`--no-provenance`, `--c2pa-cert/--c2pa-key/--c2pa-tsa`, `--c2pa-config`)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from facegan.cli.common import ExamplesFormatter
from facegan.errors import FaceganError

EXAMPLES = """\
examples:
  facegan provenance grid.png fakes/                       # what each image says it is (XMP, C2PA)
  facegan provenance signed.png --trust root.pem           # C2PA state checked against your trust anchor
  facegan provenance out/*.png --require-c2pa --json       # exit 1 unless every image has valid credentials
"""
# Environment variable naming a C2PA settings file, for users who sign everything they generate.
C2PA_CONFIG_ENV = "FACEGAN_C2PA_CONFIG"


def add_provenance_options(parser: argparse.ArgumentParser, c2pa: bool = True) -> None:
    """The options of a command that writes images."""
    group = parser.add_argument_group("provenance (every image carries an XMP record: IPTC digital source type, model hash, seed)")
    group.add_argument("--no-provenance", action="store_true",
                       help="write images without provenance metadata (experiments only; results JSON records it)")
    if c2pa:
        group.add_argument("--c2pa-cert", metavar="CHAIN.pem", help="sign each image with C2PA content credentials: the "
                           "certificate chain (leaf first; C2PA refuses self-signed leaves)")
        group.add_argument("--c2pa-key", metavar="KEY.pem", help="the leaf's private key (unencrypted PEM)")
        group.add_argument("--c2pa-tsa", metavar="URL", help="a timestamp authority (the only network use; none by default)")
        group.add_argument("--c2pa-config", metavar="FILE", help=f"TOML/JSON with cert, key, tsa_url (${C2PA_CONFIG_ENV} names one when no --c2pa-* is given)")


def provenance_from_args(args: argparse.Namespace, source_type: str | None, action: str, model: str | None = None,
                         seeds: str | None = None, fingerprint: str | None = None):
    """The Provenance a command's images carry, with the C2PA signer checked now (before any work)."""
    from facegan.provenance.credentials import load_c2pa_config, load_signer
    from facegan.provenance.record import Provenance

    cert, key = getattr(args, "c2pa_cert", None), getattr(args, "c2pa_key", None)
    tsa_url, config = getattr(args, "c2pa_tsa", None), getattr(args, "c2pa_config", None)
    if getattr(args, "no_provenance", False):
        if cert or key or config:
            raise FaceganError("--no-provenance and C2PA signing contradict each other; drop one")
        print("note: --no-provenance: these images carry no provenance metadata", file=sys.stderr)
        return Provenance.off(action)
    if config is None and not cert and not key and hasattr(args, "c2pa_config"):
        config = os.environ.get(C2PA_CONFIG_ENV) or None
    if config is not None:
        if cert or key:
            raise FaceganError("give either --c2pa-config or --c2pa-cert/--c2pa-key, not both")
        settings = load_c2pa_config(config)
        cert, key, tsa_url = settings["cert"], settings["key"], tsa_url or settings["tsa_url"]
    if bool(cert) != bool(key):
        raise FaceganError("C2PA signing needs both --c2pa-cert CHAIN.pem and --c2pa-key KEY.pem")
    if tsa_url and not cert:
        raise FaceganError("--c2pa-tsa needs --c2pa-cert and --c2pa-key (it timestamps the C2PA signature)")
    signer = load_signer(cert, key, tsa_url) if cert else None
    return Provenance(source_type=source_type, action=action, model=model, seeds=seeds, fingerprint=fingerprint, signer=signer)


def register(commands) -> None:
    parser = commands.add_parser("provenance", help="read the provenance (XMP record, C2PA credentials) of image files",
                                 epilog=EXAMPLES, formatter_class=ExamplesFormatter)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, or folders of them")
    parser.add_argument("--trust", metavar="ROOTS.pem", help="C2PA trust anchors (PEM) to validate signers against")
    parser.add_argument("--require-c2pa", action="store_true", help="exit 1 unless every image has a valid C2PA manifest "
                        "(with --trust: one whose signer chains to those anchors)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    parser.set_defaults(handler=run_provenance)


def run_provenance(args: argparse.Namespace) -> int:
    from facegan.files import ReadRefused, read_regular_file
    from facegan.provenance.inspect import describe, expand_image_paths, read_provenance

    trust = None
    if args.trust:
        try:
            trust = read_regular_file(args.trust, 1 << 20).decode("ascii")
        except (ReadRefused, UnicodeDecodeError) as error:
            raise FaceganError(f"--trust: {error if isinstance(error, ReadRefused) else 'not a PEM file'}; give the trust anchors as PEM") from None
        if "-----BEGIN CERTIFICATE-----" not in trust:
            raise FaceganError(f"--trust {args.trust} holds no PEM certificate")
    files = expand_image_paths(args.images)
    missing = []
    # With trust anchors, "Valid" (any CA-issued signer, an attacker's included) is not enough: the signer must chain to them.
    accepted = ("Trusted",) if trust else ("Valid", "Trusted")
    for path in files:
        record = read_provenance(path, trust)
        print(json.dumps(record, sort_keys=True) if args.json else f"{path}: {describe(record)}")
        if args.require_c2pa and (record["c2pa"] is None or record["c2pa"].get("state") not in accepted):
            missing.append((path, record["c2pa"]))
    if missing:
        sys.stdout.flush()
        first = missing[0][1]  # the record already read: the file is not opened and validated twice
        state = "no C2PA manifest" if first is None else f"a C2PA manifest in state {first.get('state')}"
        print(f"error: {len(missing)} of {len(files)} images lack {'trusted' if trust else 'valid'} C2PA credentials "
              f"({missing[0][0]} has {state})", file=sys.stderr)
        return 1
    return 0
