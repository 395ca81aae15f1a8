"""Which recogniser a RECOGNISER argument names: a registered name, or a facegan recogniser run/export.

    resolve_recogniser("lbph")                  # faces.recognisers: dlib (dlib-resnet), lbph, pixel, ...
    resolve_recogniser("runs/recog")            # a run of `facegan recog train`, or its export/ folder

A registered name wins over a folder of the same name in the current folder (write `./lbph` for the folder).
"""
from __future__ import annotations

import os
from pathlib import Path

from facegan.errors import FaceganError
from facegan.faces.recognisers import Recogniser, available_recognisers, get_recogniser

__all__ = ["resolve_recogniser"]


def resolve_recogniser(spec: str | os.PathLike, device: str = "cpu") -> Recogniser:
    """A registered recogniser by name, else the facegan recogniser export at that path; anything else is one FaceganError line."""
    if not isinstance(spec, (str, os.PathLike)) or not os.fspath(spec):
        raise FaceganError(f"a recogniser is a registered name or a path, got {spec!r}")
    text = os.fspath(spec)
    if text in available_recognisers():
        return get_recogniser(text, device=device)
    known = ", ".join(available_recognisers())
    if not Path(text).exists():
        raise FaceganError(
            f"unknown recogniser '{text}': not a registered name ({known}) and no such file or folder; "
            "give one of those names or a facegan recogniser run/export (`facegan recog train`)"
        )
    try:
        # Lazy: the export module loads torch and the embedding network.
        from facegan.recognition.export import load_recogniser_export
    except ImportError:
        raise FaceganError(f"{text} is a path, but this facegan has no recogniser exports (facegan.recognition.export); use one of: {known}") from None
    return load_recogniser_export(text, device=device)
