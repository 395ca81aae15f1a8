"""Helpers shared by subcommands: seed lists and the help formatter."""
from __future__ import annotations

import argparse
import itertools
from typing import Iterator

from facegan.errors import FaceganError

# One command renders at most this many seeds (a bigger job is split into several commands); a seed
# list is counted from its ranges before any list is built, so a typo like 0-100000000 costs nothing.
MAX_SEEDS = 10_000_000
MAX_SEED = 2**63


def parse_seed_ranges(text: str, max_count: float = MAX_SEEDS, option: str = "--seeds") -> list[range]:
    """'0-63' -> [range(0, 64)]; '1,5-7' -> [range(1, 2), range(5, 8)]; refuses more than `max_count` seeds."""
    ranges: list[range] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:] and not part.startswith("-"):
                low, high = part.split("-", 1)
                low_value, high_value = int(low), int(high)
                if high_value < low_value:
                    raise FaceganError(f"seed range '{part}' runs backwards; write it low-high")
            else:
                low_value = high_value = int(part)
            if low_value < 0 or high_value >= MAX_SEED:
                raise FaceganError(f"seeds must be integers in [0, 2**63), got '{part}'")
            ranges.append(range(low_value, high_value + 1))
    except ValueError:
        raise FaceganError(f"cannot read seeds '{text}'; write e.g. 0-63 or 3,7,11") from None
    count = sum(len(seeds) for seeds in ranges)
    if not count:
        raise FaceganError(f"no seeds in '{text}'")
    if count > max_count:
        raise FaceganError(f"{option} {text} is {count} seeds; at most {max_count} in one command (split it into smaller ranges)")
    return ranges


def count_seeds(ranges: list[range]) -> int:
    return sum(len(seeds) for seeds in ranges)


def iter_seeds(ranges: list[range]) -> Iterator[int]:
    return itertools.chain.from_iterable(ranges)


def parse_seeds(text: str, max_count: int = MAX_SEEDS, option: str = "--seeds") -> list[int]:
    """'0-63' -> [0..63]; '3,7' -> [3, 7]; '1,5-7' -> [1, 5, 6, 7] (at most `max_count` seeds)."""
    return list(iter_seeds(parse_seed_ranges(text, max_count, option)))


class ExamplesFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the worked examples in epilogs as written, and show each default once.

    A default is added only where the help does not already state one, and never for None (the value
    then comes from elsewhere, which the help says), False (an off switch) or an empty list.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if "default:" in help_text or "%(default)" in help_text:
            return help_text
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return help_text
        return super()._get_help_string(action)
