"""Carlini-Wagner L2: finds closer adversarials than PGD-L2, leaves unbeatable samples unchanged, keeps eps."""
from __future__ import annotations

import torch

from facegan.attacks import perturbation_norms, pgd, run_attack
from facegan.attacks.gradient import cw_l2

from .test_budget_gradient import clean_images, toy_objective


def test_cw_succeeds_with_smaller_l2_than_pgd_at_a_generous_budget():
    objective, _ = toy_objective()
    x = clean_images(count=6)
    assert bool((objective(x) > 0).all())
    x_cw = cw_l2(objective, x, steps=20, search_steps=3)
    x_pgd = pgd(objective, x, norm="l2", eps=1500.0, steps=20, generator=torch.Generator().manual_seed(0))
    assert bool((objective(x_cw) < 0).all())
    assert bool((objective(x_pgd) < 0).all())
    _, l2_cw = perturbation_norms(x_cw, x)
    _, l2_pgd = perturbation_norms(x_pgd, x)
    assert bool((l2_cw < 0.5 * l2_pgd).all()), (l2_cw, l2_pgd)
    assert x_cw.min() >= 0 and x_cw.max() <= 255


def test_cw_returns_unbeatable_samples_unchanged():
    objective, _ = toy_objective()
    locked = torch.tensor([0.0, 1e6, 0.0, 1e6])  # samples 1 and 3 cannot be fooled

    def partly_robust(x):
        return objective(x) + locked

    x = clean_images(count=4)
    x_adv = cw_l2(partly_robust, x, steps=15, search_steps=2)
    assert torch.equal(x_adv[1], x[1]) and torch.equal(x_adv[3], x[3])
    assert bool((partly_robust(x_adv)[[0, 2]] < 0).all())


def test_cw_with_eps_stays_inside_the_budget_and_needs_l2():
    objective, _ = toy_objective()
    x = clean_images(count=4)
    eps = torch.tensor([10.0, 20.0, 40.0, 2000.0])
    x_adv = run_attack("cw", objective, x, norm="l2", eps=eps, steps=20, search_steps=3)
    _, l2 = perturbation_norms(x_adv, x)
    assert bool((l2 <= eps.double() + 1e-3).all())
    assert float(l2[0]) > 0  # the budget is used, not ignored
    assert bool(objective(x_adv)[3] < 0)
