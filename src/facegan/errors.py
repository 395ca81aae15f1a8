"""User-facing errors: one clear line naming the cause and the fix."""
from __future__ import annotations


class FaceganError(Exception):
    """An error the user caused and can fix (bad path, bad option, wrong file).

    The CLI prints `error: <message>` and exits with status 2; it never shows a traceback for these.
    """


class DivergenceError(FaceganError):
    """Training produced a non-finite loss; the last good checkpoint is kept."""
