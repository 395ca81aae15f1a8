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
from facegan.attacks.square import square, square_with_queries
from facegan.errors import FaceganError

ATTACKS = ("fgsm", "pgd", "cw", "square")

__all__ = [
    "ATTACKS", "NORMS", "check_attack", "check_norm", "cw_l2", "fgsm", "minimal_budget", "parse_budget",
    "perturbation_norms", "pgd", "project", "quantise", "run_attack", "square", "square_with_queries",
]


def check_attack(name: str, norm: str) -> str:
    """The attack name, or one error line: unknown attack, or a norm the attack does not support."""
    if name not in ATTACKS:
        raise FaceganError(f"unknown attack {name!r}; choose fgsm, pgd, cw or square")
    check_norm(norm)
    if name == "cw" and norm != "l2":
        raise FaceganError("the cw attack (Carlini-Wagner L2) works in the l2 norm only; use --norm l2")
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
    queries = options.pop("queries", steps)  # a black box usually gets far more queries than PGD gets steps
    return square(objective, x, norm=norm, eps=eps, queries=queries, generator=generator, **options)


def minimal_budget(attack: Callable[[Tensor], Tensor], succeeded: Callable[[Tensor], Tensor], eps_max: float,
                   count: int, iterations: int = 8) -> tuple[Tensor, Tensor]:
    """Per-sample binary search for the smallest successful budget in [0, eps_max] (RobFR's minimal perturbation).

    attack(eps (N,)) -> x_adv and succeeded(x_adv) -> bool (N,); let `attack` quantise, so success is judged
    on the images that would be saved. First eps_max is tried; samples that resist it get inf (and the
    eps_max images, the strongest attempt). The others bisect `iterations` times, keeping the smallest
    successful budget and its images: the result is within eps_max / 2**iterations above the true minimum
    when success grows with the budget (an attack that is not monotone makes it an upper bound).
    Returns (budgets float64 (N,), images (N, C, H, W)).
    """
    if not eps_max > 0:
        raise FaceganError(f"the largest budget for the minimal search must be positive, not {eps_max}")
    high = torch.full((count,), float(eps_max), dtype=torch.float64)
    images = attack(high)
    high = high.to(images.device)
    found = succeeded(images).to(device=images.device, dtype=torch.bool).reshape(count)
    low = torch.zeros_like(high)
    for _ in range(iterations):
        middle = (low + high) / 2
        candidate = attack(middle)
        success = succeeded(candidate).to(device=images.device, dtype=torch.bool).reshape(count)
        keep = success & found  # samples that resist eps_max are not searched (their budget is inf)
        images = torch.where(keep.reshape(-1, *([1] * (images.ndim - 1))), candidate, images)
        high = torch.where(keep, middle, high)
        low = torch.where(keep, low, middle)
    budgets = torch.where(found, high, torch.full_like(high, float("inf")))
    return budgets, images
