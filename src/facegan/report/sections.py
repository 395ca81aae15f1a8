"""Report-card sections: small typed records any part of facegan can contribute.

A section builder takes a run folder and returns a `ReportSection`, or None when the run has nothing
for it (no metrics yet, no audit). Each part's sections live in this package (`card.py` the core ones,
`privacy_sections.py` the privacy ones) and read that part's results: the report sits above every part
it shows, so no part imports the report. A name is registered once; a second builder under the same
name is refused rather than silently replacing the first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from facegan.registry import Registry


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
_BUILDERS: Registry[tuple[int, SectionBuilder]] = Registry("report section")


def register_section(name: str, order: int) -> Callable[[SectionBuilder], SectionBuilder]:
    """Decorator: add a section builder; sections appear sorted by `order`. A name already registered is refused."""

    def decorate(builder: SectionBuilder) -> SectionBuilder:
        _BUILDERS.add(name, (order, builder))
        return builder

    return decorate


def unregister_section(name: str) -> None:
    """Remove a registered section builder (tests use this to clean up); unknown names are ignored."""
    _BUILDERS.remove(name)


def registered_sections() -> list[tuple[int, str, SectionBuilder]]:
    """Builders in report order (core sections are registered on import of facegan.report.card)."""
    return sorted(((order, name, builder) for name, (order, builder) in _BUILDERS.items()), key=lambda entry: entry[0])
