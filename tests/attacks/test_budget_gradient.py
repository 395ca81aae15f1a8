"""Budgets and the gradient attacks: exact budget after quantisation, zero budget, PGD/FGSM on a toy margin."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from facegan.attacks import fgsm, parse_budget, perturbation_norms, pgd, project, quantise, run_attack
from facegan.attacks.budget import check_norm
from facegan.errors import FaceganError


def toy_objective(seed: int = 0, shape=(3, 8, 8), offset: float = 0.4):
    """A tiny differentiable 'recogniser margin': a small conv net score, positive on clean images."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(shape[0], 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
        torch.nn.Linear(4 * shape[1] * shape[2], 1),
    )
    for parameter in net.parameters():
        parameter.requires_grad_(False)

    def objective(x: torch.Tensor) -> torch.Tensor:
        raw = net(x / 127.5 - 1).squeeze(1)
        return raw + offset

    return objective, net


def clean_images(count: int = 6, shape=(3, 8, 8), seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, *shape), generator=generator).float()


@settings(max_examples=60, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.floats(0.0, 255.0, allow_nan=False),
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.0, 600.0),
)
def test_quantise_keeps_budget_and_range_exactly(norm, eps, seed, spread):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 256, (4, 3, 5, 5), generator=generator).float()
    # Adversarial candidates anywhere, even far outside the ball and the pixel range.
    adversarial = clean + (torch.rand(clean.shape, generator=generator) * 2 - 1) * spread
    out = quantise(adversarial, clean, norm, eps)
    assert torch.equal(out, out.round())
    assert out.min() >= 0 and out.max() <= 255
    linf, l2 = perturbation_norms(out, clean)
    bound = linf if norm == "linf" else l2
    assert bool((bound <= eps).all()), (norm, eps, bound)


@settings(max_examples=30, deadline=None)
@given(norm=st.sampled_from(["linf", "l2"]), seed=st.integers(0, 2**31 - 1))
def test_quantise_per_sample_budget(norm, seed):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, 256, (5, 1, 6, 6), generator=generator).float()
    eps = torch.tensor([0.0, 0.5, 1.0, 3.7, 40.0])
    adversarial = clean + torch.randn(clean.shape, generator=generator) * 30
    out = quantise(adversarial, clean, norm, eps)
    linf, l2 = perturbation_norms(out, clean)
    bound = linf if norm == "linf" else l2
    assert bool((bound <= eps.double()).all())
    assert torch.equal(out[0], clean[0])  # eps 0: exactly the clean image


def test_quantise_linf_rounds_to_nearest_inside_budget():
    clean = torch.full((1, 1, 1, 3), 100.0)
    adversarial = clean + torch.tensor([3.6, -2.4, 0.49]).reshape(1, 1, 1, 3)
    out = quantise(adversarial, clean, "linf", 3.6)
    assert out.flatten().tolist() == [103.0, 98.0, 100.0]  # 3.6 rounds to 4 > floor(3.6): clamped to 3


def test_quantise_l2_truncates_only_what_rounding_pushed_out_of_the_ball():
    clean = torch.full((1, 1, 1, 2), 100.0)
    adversarial = clean + torch.tensor([0.7, 0.7]).reshape(1, 1, 1, 2)  # norm 0.99; rounded (1, 1) is 1.41
    out = quantise(adversarial, clean, "l2", 1.0)
    assert sorted(out.flatten().tolist()) == [100.0, 101.0]  # one value truncated back: norm exactly 1, not 0


def test_project_onto_ball():
    delta = torch.tensor([[3.0, 4.0], [0.3, 0.4]]).reshape(2, 1, 1, 2)
    assert project(delta, "l2", 1.0).flatten(1).norm(dim=1).tolist() == pytest.approx([1.0, 0.5])
    assert project(delta, "linf", torch.tensor([2.0, 0.1])).flatten().tolist() == pytest.approx([2, 2, 0.1, 0.1])


def test_perturbation_norms_values():
    clean = torch.zeros(1, 1, 1, 2)
    adversarial = torch.tensor([3.0, -4.0]).reshape(1, 1, 1, 2)
    linf, l2 = perturbation_norms(adversarial, clean)
    assert linf.tolist() == [4.0] and l2.tolist() == [5.0]


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_zero_budget_changes_nothing(attack, norm):
    objective, _ = toy_objective()
    x = clean_images()
    x_adv = run_attack(attack, objective, x, norm=norm, eps=0.0, steps=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x_adv, x)


@pytest.mark.parametrize("norm,eps", [("linf", 32.0), ("l2", 1500.0)])
def test_pgd_at_large_budget_succeeds_and_fgsm_at_zero_does_not(norm, eps):
    objective, _ = toy_objective()
    x = clean_images(count=8)
    assert bool((objective(x) > 0).all())  # the toy recogniser accepts every clean sample
    x_adv = pgd(objective, x, norm=norm, eps=eps, steps=20, generator=torch.Generator().manual_seed(0))
    quantised = quantise(x_adv, x, norm, eps)
    assert bool((objective(quantised) < 0).all())
    linf, l2 = perturbation_norms(quantised, x)
    assert bool(((linf if norm == "linf" else l2) <= eps).all())
    assert bool((objective(fgsm(objective, x, norm=norm, eps=0.0)) > 0).all())


def test_pgd_respects_per_sample_budget_and_range():
    objective, _ = toy_objective()
    x = clean_images(count=4)
    x[0] = 0.0  # a black image: the pixel clamp matters
    eps = torch.tensor([1.0, 2.0, 8.0, 16.0])
    x_adv = pgd(objective, x, norm="linf", eps=eps, steps=7, generator=torch.Generator().manual_seed(3))
    linf, _ = perturbation_norms(x_adv, x)
    assert bool((linf <= eps.double() + 1e-4).all())
    assert x_adv.min() >= 0 and x_adv.max() <= 255
    x_l2 = pgd(objective, x, norm="l2", eps=eps * 10, steps=7, generator=torch.Generator().manual_seed(3))
    _, l2 = perturbation_norms(x_l2, x)
    assert bool((l2 <= eps.double() * 10 + 1e-3).all())
    # Per-sample eps gives each sample what the scalar budget would have given it alone.
    alone = pgd(objective, x[2:3], norm="linf", eps=8.0, steps=7, random_start=False)
    batch = pgd(objective, x, norm="linf", eps=eps, steps=7, random_start=False)
    assert torch.allclose(alone[0], batch[2], atol=1e-4)


def test_pgd_is_deterministic_with_a_generator_and_leaves_parameter_grads():
    objective, net = toy_objective()
    for parameter in net.parameters():
        parameter.requires_grad_(True)
    x = clean_images()
    first = pgd(objective, x, norm="l2", eps=200.0, steps=3, generator=torch.Generator().manual_seed(5))
    second = pgd(objective, x, norm="l2", eps=200.0, steps=3, generator=torch.Generator().manual_seed(5))
    other = pgd(objective, x, norm="l2", eps=200.0, steps=3, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert all(parameter.grad is None for parameter in net.parameters())


def test_fgsm_step_is_eps_along_the_gradient_sign():
    weights = torch.tensor([1.0, -2.0, 0.0, 3.0]).reshape(1, 1, 2, 2)

    def objective(x):
        return (x * weights).flatten(1).sum(1)

    x = torch.full((1, 1, 2, 2), 100.0)
    assert fgsm(objective, x, norm="linf", eps=4.0).flatten().tolist() == [96.0, 104.0, 100.0, 96.0]
    step = fgsm(objective, x, norm="l2", eps=math.sqrt(14.0)) - x
    assert step.flatten().tolist() == pytest.approx([-1.0, 2.0, 0.0, -3.0], abs=1e-4)


@pytest.mark.parametrize("text,expected", [("4/255", 4.0), ("4", 4.0), ("0.5", 0.5), (" 8/255 ", 8.0), ("1/2", 127.5),
                                           ("0", 0.0), ("255", 255.0), (2.0, 2.0)])
def test_parse_budget_accepts(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["-1", "256", "nan", "inf", "", "1/0", "junk", "4/", "/255", "-4/255", "1e400", "4/255/2", True])
def test_parse_budget_refuses_with_one_line_naming_the_option(text):
    with pytest.raises(FaceganError) as caught:
        parse_budget(text, option="--adversarial-eps")
    message = str(caught.value)
    assert "--adversarial-eps" in message and "\n" not in message


@pytest.mark.parametrize("value", ["1e300/1e-300", "1/1e-400", "1e-99999999/1", "1/1e99999999", "nan/1", 10**400])
def test_parse_budget_refuses_overflow_and_absurd_exponents_in_one_line(value):
    # An OverflowError traceback before; a huge exponent made Fraction expand 10**N (seconds to hours).
    with pytest.raises(FaceganError) as caught:
        parse_budget(value, option="--adversarial-step-size")
    assert "--adversarial-step-size" in str(caught.value) and "is not a budget" in str(caught.value)


@pytest.mark.parametrize("text", ["-0", "-0.0", "-0/255", 0.0 * -1])
def test_parse_budget_stores_minus_zero_as_zero(text):
    budget = parse_budget(text)
    assert budget == 0 and math.copysign(1.0, budget) == 1.0


def test_unknown_norm_is_one_line():
    with pytest.raises(FaceganError, match="unknown norm 'l3'; choose linf or l2"):
        check_norm("l3")


def test_run_attack_refuses_unknown_and_mismatched():
    objective, _ = toy_objective()
    x = clean_images(count=1)
    with pytest.raises(FaceganError, match="unknown attack"):
        run_attack("bim", objective, x, norm="linf", eps=1.0, steps=1)
    with pytest.raises(FaceganError, match="l2"):
        run_attack("cw", objective, x, norm="linf", eps=1.0, steps=1)


@pytest.mark.parametrize("eps", [10.0, 30.0, 50.0])
def test_l2_quantise_keeps_nearly_all_of_a_small_budget(eps):
    # Most values of an L2 10 perturbation over 32x32 are below one grey level: truncating them all kept only 2.24.
    generator = torch.Generator().manual_seed(0)
    clean = torch.full((4, 1, 32, 32), 128.0)
    direction = torch.randn(4, 1, 32, 32, generator=generator)
    adversarial = clean + direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * eps
    saved = quantise(adversarial, clean, "l2", eps)
    _, l2 = perturbation_norms(saved, clean)
    assert bool((l2 <= eps).all())
    assert bool((l2 >= eps - 1.0).all()), l2  # within one grey level of the budget
