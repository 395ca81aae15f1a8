"""minimal_budget: per-sample binary search finds each sample's smallest successful budget."""
from __future__ import annotations

import math

import pytest
import torch

from facegan.attacks import fgsm, minimal_budget, pgd, quantise
from facegan.errors import FaceganError


def linear_margin():
    """margin = offset_i + w . x: FGSM L-inf at eps lowers it by exactly eps * ||w||_1 (no clipping at mid-grey)."""
    weights = torch.tensor([1.0, -2.0, 0.5, 0.5]).reshape(1, 1, 2, 2)  # ||w||_1 = 4
    x = torch.full((4, 1, 2, 2), 128.0)
    offsets = torch.tensor([4.0, 10.0, 30.0, 1000.0]) - (x * weights).flatten(1).sum(1)  # clean margins 4, 10, 30, 1000

    def objective(images: torch.Tensor) -> torch.Tensor:
        return (images * weights).flatten(1).sum(1) + offsets

    return objective, x


def test_minimal_budget_matches_the_analytic_minimum():
    objective, x = linear_margin()
    eps_max, iterations = 16.0, 10
    budgets, images = minimal_budget(
        lambda eps: fgsm(objective, x, norm="linf", eps=eps), lambda images: objective(images) < 0,
        eps_max=eps_max, count=4, iterations=iterations,
    )
    exact = torch.tensor([1.0, 2.5, 7.5])  # margin / ||w||_1, just above which the margin is negative
    assert bool(((budgets[:3] - exact.double()).abs() <= eps_max / 2**iterations).all()), budgets
    assert bool((budgets[:3] >= exact.double()).all())
    assert math.isinf(float(budgets[3]))  # needs 250 > eps_max
    assert bool((objective(images)[:3] < 0).all())
    linf = (images - x).flatten(1).abs().amax(1)
    assert torch.allclose(linf[:3].double(), budgets[:3], atol=1e-4)  # the images are the ones at that budget


def test_minimal_budget_with_quantised_pgd_is_an_integer_budget_for_linf():
    objective, x = linear_margin()

    def attack(eps):
        return quantise(pgd(objective, x, norm="linf", eps=eps, steps=5, random_start=False), x, "linf", eps)

    budgets, images = minimal_budget(attack, lambda images: objective(images) < 0, eps_max=16.0, count=4)
    # Integer perturbations (each lowers the margin by 4 per grey level): 4 needs 2 (1 only reaches 0), 10 needs 3, 30 needs 8.
    assert [math.ceil(float(b) - 1e-9) for b in budgets[:3]] == [2, 3, 8]
    assert (images - x).abs().flatten(1).amax(1)[:3].tolist() == [2.0, 3.0, 8.0]


def test_minimal_budget_refuses_a_non_positive_maximum():
    objective, x = linear_margin()
    with pytest.raises(FaceganError, match="positive"):
        minimal_budget(lambda eps: x, lambda images: objective(images) < 0, eps_max=0.0, count=4)
