"""Perturbation budgets on the 0..255 scale: parsing, projection onto the ball, and exact PNG quantisation.

Budgets follow RobFR (Yang et al., "RobFR: Benchmarking adversarial robustness on face recognition", 2021):
an L-inf budget `eps` of 4 means every pixel moves by at most 4 grey levels (4/255 of the range); an L2
budget is the Euclidean norm of the perturbation in grey levels over all C*H*W values.

An adversarial image is only real once it is saved: the attack's float image is rounded to uint8 for the
PNG, and rounding can step outside the budget (L-inf 3.6 rounds to 4; an L2 ball loses its corners).
`quantise` is the one place that rounds, and it guarantees the budget holds exactly afterwards, so the
reported success is on images that truly respect the advertised budget.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor

from facegan.errors import FaceganError

NORMS = ("linf", "l2")
MAX_BUDGET = 255.0


def parse_budget(value: str | float, option: str = "--eps") -> float:
    """'4/255' -> 4.0 (a fraction is of the 0..255 range), '4' -> 4.0, '0.5' -> 0.5: a budget in grey levels."""
    hint = f"give a budget on the 0..255 scale between 0 and {MAX_BUDGET:g}, e.g. {option} 4 or {option} 4/255"
    if isinstance(value, bool):  # bool is an int: True would silently read as a budget of 1
        raise FaceganError(f"{option} {value!r} is not a budget; {hint}")
    try:
        if isinstance(value, (int, float)):
            budget = float(value)  # an int beyond float's range: OverflowError below
        elif isinstance(value, str):
            text = value.strip()
            if "/" in text:
                numerator, denominator = text.split("/")  # more than one '/' -> ValueError below
                # Fraction keeps 4/255 * 255 exactly 4 (float division can land on 3.9999999, whose floor is 3).
                fraction = _fraction(numerator) / _fraction(denominator)
                budget = float(fraction * 255)  # 1e300/1e-300: OverflowError below
            else:
                budget = float(text)
        else:
            raise FaceganError(f"{option} {value!r} is not a budget; {hint}")
    except (ValueError, ArithmeticError):  # ArithmeticError: ZeroDivisionError, OverflowError, decimal's InvalidOperation
        raise FaceganError(f"{option} {value!r:.60} is not a budget; {hint}") from None
    if not math.isfinite(budget):
        raise FaceganError(f"{option} {value!r} is not finite; {hint}")
    if budget < 0:
        raise FaceganError(f"{option} {value!r} is negative; {hint}")
    if budget > MAX_BUDGET:
        raise FaceganError(f"{option} {value!r} is above {MAX_BUDGET:g} (the whole pixel range); {hint}")
    return budget + 0.0  # -0 -> 0.0: a record should not say "eps -0"


def _fraction(text: str) -> Fraction:
    """One side of an 'a/b' budget, exactly; an exponent no budget needs (1e-99999999) is refused before Fraction expands it."""
    from decimal import Decimal

    number = Decimal(text.strip())  # junk: InvalidOperation (an ArithmeticError)
    if not number.is_finite():
        raise ValueError(text)
    if number and not -400 <= number.adjusted() <= 400:  # Fraction would build 10**exponent: seconds to hours
        raise OverflowError(text)
    return Fraction(number)


def check_norm(norm: str) -> str:
    """The norm name, or one error line naming the choices."""
    if norm not in NORMS:
        raise FaceganError(f"unknown norm {norm!r}; choose linf or l2")
    return norm


def budget_tensor(eps: float | Tensor, count: int, device: torch.device | str = "cpu") -> Tensor:
    """Per-sample budgets as a float64 (N,) tensor; a scalar applies to every sample; refuses negative/nan."""
    eps_tensor = torch.as_tensor(eps, dtype=torch.float64, device=device).detach()
    if eps_tensor.ndim == 0:
        eps_tensor = eps_tensor.expand(count)
    eps_tensor = eps_tensor.reshape(-1)
    if eps_tensor.numel() != count:
        raise ValueError(f"eps has {eps_tensor.numel()} values for {count} samples")
    if not bool(torch.isfinite(eps_tensor).all()) or bool((eps_tensor < 0).any()):
        raise FaceganError("the budget eps must be finite and not negative; give e.g. --eps 4/255")
    return eps_tensor


def _per_sample(values: Tensor, like: Tensor) -> Tensor:
    """(N,) -> (N, 1, 1, ...) to broadcast over one sample's values."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def project(delta: Tensor, norm: str, eps: float | Tensor) -> Tensor:
    """The perturbation moved onto the eps ball (per sample when eps is (N,)); inside it, unchanged."""
    check_norm(norm)
    return project_checked(delta, norm, budget_tensor(eps, delta.shape[0], delta.device))


def project_checked(delta: Tensor, norm: str, eps: Tensor) -> Tensor:
    """`project` for a norm and (N,) budgets already checked: no host sync, for use inside attack loops."""
    eps_b = _per_sample(eps, delta)
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, eps_b), -eps_b)
    length = delta.flatten(1).norm(dim=1)
    length = _per_sample(length, delta)
    # Scale only what lies outside; clamp_min keeps a zero delta at 0/0 -> 0 rather than nan.
    scale = torch.clamp(eps_b / length.clamp_min(1e-12), max=1.0)
    return delta * scale


def quantise(adversarial: Tensor, clean: Tensor, norm: str, eps: float | Tensor) -> Tensor:
    """Integer-valued float image in [0, 255] whose perturbation from `clean` provably stays within eps.

    linf: round, then clamp the integer perturbation to +-floor(eps) (an integer perturbation meets the
    budget iff it meets floor(eps)). l2: round; where the rounded norm exceeds eps, take back to their
    truncated value only as many of the values rounding pushed outward as needed, those rounding moved
    most first (their fraction nearest 0.5). Truncating all of them fits, since truncation shrinks every
    |value| of a delta already projected to eps, so enough always exist; truncating all would discard
    most of a small budget (at L2 10 over 32x32 pixels most values are below one grey level and truncate
    to 0). A float64 check afterwards shrinks any sample still over budget (float error) until it fits,
    and as a last resort returns the clean image, so the guarantee does not rest on floating-point luck.
    `clean` must be integer-valued in [0, 255] (it comes from uint8).
    """
    check_norm(norm)
    count = clean.shape[0]
    clean64 = clean.detach().to(torch.float64)
    eps64 = budget_tensor(eps, count, clean.device)
    eps_b = _per_sample(eps64, clean64)
    delta = torch.nan_to_num(adversarial.detach().to(torch.float64) - clean64)
    if norm == "linf":
        whole = torch.floor(eps_b)
        step = torch.round(delta)
        step = torch.maximum(torch.minimum(step, whole), -whole)
        # Clean is in [0, 255], so clamping the image only shrinks |step|: still inside the budget.
        out = torch.clamp(clean64 + step, 0.0, 255.0)
        return out.to(adversarial.dtype if adversarial.is_floating_point() else torch.float32)

    # L2: the float delta first goes onto the ball and into the pixel range (both shrink it).
    delta = project(delta, "l2", eps64)
    delta = torch.clamp(clean64 + delta, 0.0, 255.0) - clean64
    step = _round_within_l2(delta, eps64)
    # Guard against float error (a projected norm a hair above eps on an integer lattice point).
    shrink = 1.0
    for _ in range(30):
        over = _l2(step) > eps64
        if not bool(over.any()):
            break
        shrink *= 0.9
        step = torch.where(_per_sample(over, delta).bool(), torch.trunc(delta * shrink), step)
    step = torch.where(_per_sample(_l2(step) > eps64, delta).bool(), torch.zeros_like(step), step)
    out = torch.clamp(clean64 + step, 0.0, 255.0)
    return out.to(adversarial.dtype if adversarial.is_floating_point() else torch.float32)


def _round_within_l2(delta: Tensor, eps: Tensor) -> Tensor:
    """Round each value of a float64 delta (norm <= eps), truncating just enough of the outward-rounded ones to fit eps."""
    rounded, truncated = torch.round(delta), torch.trunc(delta)
    flat_rounded, flat_truncated = rounded.flatten(1), truncated.flatten(1)
    gain = flat_rounded.square() - flat_truncated.square()  # what truncating a value takes off the squared norm (> 0: rounded outward)
    need = (flat_rounded.square().sum(1) - eps.square()).clamp_min(0.0)  # (N,) squared norm to take off
    fraction = (delta.abs() - truncated.abs()).flatten(1)  # in [0, 1): outward-rounded values have >= 0.5
    # Outward-rounded values nearest 0.5 first (rounding moved them most); the others never.
    order = torch.where(gain > 0, fraction, torch.full_like(fraction, 2.0)).argsort(dim=1, stable=True)
    taken = gain.gather(1, order).cumsum(1)
    count = (taken < need[:, None]).sum(1) + (need > 0).long()  # the shortest prefix whose gains cover `need`
    revert_sorted = torch.arange(order.shape[1], device=delta.device)[None, :] < count[:, None]
    revert = torch.zeros_like(revert_sorted).scatter(1, order, revert_sorted)
    return torch.where(revert, flat_truncated, flat_rounded).reshape(delta.shape)


def _l2(delta: Tensor) -> Tensor:
    return delta.flatten(1).to(torch.float64).norm(dim=1)


def perturbation_norms(adversarial: Tensor, clean: Tensor) -> tuple[Tensor, Tensor]:
    """(L-inf (N,), L2 (N,)) of adversarial - clean in grey levels, in float64 (exact for integer images)."""
    delta = (adversarial.detach().to(torch.float64) - clean.detach().to(torch.float64)).flatten(1)
    if delta.shape[1] == 0:
        zeros = torch.zeros(delta.shape[0], dtype=torch.float64, device=delta.device)
        return zeros, zeros.clone()
    return delta.abs().amax(dim=1), delta.norm(dim=1)
