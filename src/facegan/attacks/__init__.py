"""Adversarial attack algorithms (FGSM, PGD, Carlini-Wagner L2, Square) on any objective of images in 0..255.

Every attack takes an objective x (N, C, H, W) float 0..255 -> margin (N,), where margin < 0 means the
attack succeeded on that sample, and returns x_adv inside the budget and [0, 255]. `quantise` turns it
into the uint8-valued image that is saved and judged; `minimal_budget` finds each sample's smallest
successful budget. See gradient.py and square.py for the papers behind each algorithm.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from facegan.attacks.budget import NORMS, check_norm, parse_budget, perturbation_norms, project, quantise
from facegan.attacks.gradient import cw_l2, fgsm, pgd
from facegan.errors import FaceganError

ATTACKS = ("fgsm", "pgd", "cw", "square")

__all__ = [
    "ATTACKS", "NORMS", "check_attack", "check_norm", "cw_l2", "fgsm", "parse_budget",
    "perturbation_norms", "pgd", "project", "quantise", "run_attack",
]


def check_attack(name: str, norm: str) -> str:
    """The attack name, or one error line: unknown attack, or a norm the attack does not support."""
    if name not in ATTACKS:
        raise FaceganError(f"unknown attack {name!r}; choose fgsm, pgd, cw or square")
    check_norm(norm)
    if name == "cw" and norm != "l2":
        raise FaceganError("the cw attack (Carlini-Wagner L2) works in the l2 norm only; use --norm l2")
    if name == "square" and norm != "linf":
        raise FaceganError("square supports linf only; use --norm linf")
    return name


def run_attack(name: str, objective: Callable[[Tensor], Tensor], x: Tensor, *, norm: str, eps: float | Tensor | None,
               steps: int, generator: torch.Generator | None = None, **options: Any) -> Tensor:
    """Run one attack by name; `steps` is iterations (pgd, cw), queries (square), ignored by fgsm."""
    check_attack(name, norm)
    if name == "fgsm":
        return fgsm(objective, x, norm=norm, eps=eps, **options)
    if name == "pgd":
        return pgd(objective, x, norm=norm, eps=eps, steps=steps, generator=generator, **options)
    if name == "cw":
        return cw_l2(objective, x, steps=steps, eps=eps, **options)
    from facegan.attacks.square import square

    return square(objective, x, norm=norm, eps=eps, queries=steps, generator=generator, **options)


def __getattr__(name: str) -> Any:
    # square and minimal_budget land after fgsm/pgd; resolve them lazily so importing the package never fails.
    if name == "square":
        from facegan.attacks.square import square

        return square
    if name == "minimal_budget":
        from facegan.attacks import search

        return search.minimal_budget
    raise AttributeError(f"module 'facegan.attacks' has no attribute {name!r}")
