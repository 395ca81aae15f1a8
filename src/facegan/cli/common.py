"""Helpers shared by subcommands: seed lists and argument types."""
from __future__ import annotations

import argparse

from facegan.errors import FaceganError


def parse_seeds(text: str) -> list[int]:
    """'0-63' -> [0..63]; '3,7' -> [3, 7]; '1,5-7' -> [1, 5, 6, 7]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                low, high = part.split("-", 1) if not part.startswith("-") else (part, part)
                low_value, high_value = int(low), int(high)
                if high_value < low_value:
                    raise FaceganError(f"seed range '{part}' runs backwards; write it low-high")
                seeds.extend(range(low_value, high_value + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise FaceganError(f"cannot read seeds '{text}'; write e.g. 0-63 or 3,7,11") from None
    if not seeds:
        raise FaceganError(f"no seeds in '{text}'")
    if any(seed < 0 or seed >= 2**63 for seed in seeds):
        raise FaceganError("seeds must be non-negative integers")
    return seeds


class ExamplesFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep the worked examples in epilogs as written, and show defaults."""
