"""Report-card sections: small typed records any part of facegan can contribute.

A section builder takes a run folder and returns a `ReportSection`, or None when the run has nothing
for it (no metrics yet, no audit). Later parts (privacy, recognition) register their own builders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Figure:
    """A picture with a one-sentence caption saying what it shows and which way is better."""

    title: str
    png: bytes
    caption: str


@dataclass
class Table:
    """A small table; values are shown as given (format numbers before)."""

    title: str
    columns: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class ReportSection:
    """One block of the report card."""

    title: str
    readings: list[str] = field(default_factory=list)
    """One-sentence findings, shown first."""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


SectionBuilder = Callable[[Path], "ReportSection | None"]
_BUILDERS: list[tuple[int, str, SectionBuilder]] = []


def register_section(name: str, order: int) -> Callable[[SectionBuilder], SectionBuilder]:
    """Decorator: add a section builder; sections appear sorted by `order`."""

    def decorate(builder: SectionBuilder) -> SectionBuilder:
        _BUILDERS[:] = [entry for entry in _BUILDERS if entry[1] != name]
        _BUILDERS.append((order, name, builder))
        _BUILDERS.sort(key=lambda entry: entry[0])
        return builder

    return decorate


def registered_sections() -> list[tuple[int, str, SectionBuilder]]:
    """Builders in report order (core sections are registered on import of facegan.report.card)."""
    return list(_BUILDERS)
