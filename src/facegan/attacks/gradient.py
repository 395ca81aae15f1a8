"""White-box gradient attacks on a margin objective: FGSM, PGD (L-inf and L2) and Carlini-Wagner L2.

An objective maps images x (N, C, H, W), float in 0..255, to a per-sample margin (N,); the attack
succeeds on a sample when its margin is below 0 (for verification: dodging score - threshold, or
threshold - score for impersonation). Gradient attacks therefore DESCEND the margin. Each sample's
margin must depend on that sample alone (no batch statistics), so one backward pass of margin.sum()
gives every sample its own gradient, and per-sample budgets (N,) work unchanged.

- FGSM: Goodfellow, Shlens and Szegedy, "Explaining and harnessing adversarial examples", ICLR 2015:
  one step of size eps along sign(grad) (L-inf) or grad / ||grad||_2 (L2, the fast gradient method).
- PGD: Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR 2018:
  random start in the ball, then steps of the FGSM kind projected back onto the ball and the pixel
  range; the default step 2.5 * eps / steps is Madry's rule (reach the boundary from anywhere). The
  last iterate is returned, as in Madry's and ART's PGD, so results compare with the reference.
- C&W L2: Carlini and Wagner, "Towards evaluating the robustness of neural networks", IEEE S&P 2017:
  minimise ||delta||_2^2 + c * max(margin, -confidence) in tanh space (the box constraint for free),
  Adam, binary search on c per sample; the smallest-L2 successful image per sample is kept.

Gradients are taken with torch.autograd.grad on the input only, so a model's parameter .grad (for
example during adversarial training) is never touched. Randomness only comes from `generator`.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from facegan.attacks.budget import _per_sample, budget_tensor, check_norm, project, project_checked
from facegan.errors import FaceganError

Objective = Callable[[Tensor], Tensor]
PIXEL_MAX = 255.0


def margin_and_gradient(objective: Objective, x: Tensor) -> tuple[Tensor, Tensor]:
    """(margin (N,), d margin / d x (N, C, H, W)) at x, with no effect on any parameter's .grad."""
    with torch.enable_grad():
        x_var = x.detach().requires_grad_(True)
        margin = objective(x_var)
        if margin.shape != (x.shape[0],):
            raise ValueError(f"the objective must return one margin per sample, shape ({x.shape[0]},), not {tuple(margin.shape)}")
        if not margin.requires_grad:
            raise FaceganError("this recogniser is not differentiable; use the black-box attack: --attack square")
        (gradient,) = torch.autograd.grad(margin.sum(), x_var, allow_unused=True)
    if gradient is None:  # the margin does not depend on x: no direction to follow
        gradient = torch.zeros_like(x)
    return margin.detach(), gradient.detach()


def _direction(gradient: Tensor, norm: str) -> Tensor:
    """Unit steepest-ascent direction of the gradient in the given norm (sign for L-inf, normalised for L2)."""
    if norm == "linf":
        return gradient.sign()
    length = _per_sample(gradient.flatten(1).norm(dim=1), gradient)
    return gradient / length.clamp_min(1e-12)


def _clip_to_pixels(x: Tensor, delta: Tensor) -> Tensor:
    """delta moved so that x + delta lies in [0, 255] (x itself is in range, so |delta| only shrinks)."""
    return torch.clamp(x + delta, 0.0, PIXEL_MAX) - x


def fgsm(objective: Objective, x: Tensor, *, norm: str, eps: float | Tensor) -> Tensor:
    """One step of size eps down the margin's gradient (sign for L-inf, normalised for L2), clipped to [0, 255]."""
    check_norm(norm)
    x = x.detach()
    eps_b = _per_sample(budget_tensor(eps, x.shape[0], x.device), x)
    _, gradient = margin_and_gradient(objective, x)
    x_adv = torch.clamp(x - eps_b * _direction(gradient, norm), 0.0, PIXEL_MAX)
    return torch.where(eps_b == 0, x, x_adv)  # a zero budget changes nothing, not even by clamping


def random_in_ball(shape: torch.Size, norm: str, eps: Tensor, generator: torch.Generator | None,
                   device: torch.device, dtype: torch.dtype) -> Tensor:
    """A uniform sample from each sample's eps ball (L-inf: a cube; L2: direction times eps * u^(1/d))."""
    rng_device = generator.device if generator is not None else device
    eps_b = eps.reshape(-1, *([1] * (len(shape) - 1)))
    if norm == "linf":
        noise = torch.rand(shape, generator=generator, device=rng_device, dtype=torch.float64) * 2 - 1
        return (noise.to(device) * eps_b.to(device)).to(dtype)
    direction = torch.randn(shape, generator=generator, device=rng_device, dtype=torch.float64)
    direction = direction / _per_sample(direction.flatten(1).norm(dim=1), direction).clamp_min(1e-12)
    dimension = int(torch.tensor(shape[1:]).prod())
    radius = torch.rand(shape[0], generator=generator, device=rng_device, dtype=torch.float64) ** (1.0 / dimension)
    return (direction * _per_sample(radius, direction)).to(device).mul(eps_b.to(device)).to(dtype)


def pgd(objective: Objective, x: Tensor, *, norm: str, eps: float | Tensor, steps: int,
        step_size: float | Tensor | None = None, random_start: bool = True,
        generator: torch.Generator | None = None) -> Tensor:
    """Madry's projected gradient descent on the margin within the eps ball and [0, 255]; the last iterate."""
    check_norm(norm)
    if steps < 0:
        raise FaceganError(f"--steps {steps} is negative; give a number of attack steps >= 1, e.g. --steps 20")
    x = x.detach()
    eps64 = budget_tensor(eps, x.shape[0], x.device)
    eps_b = _per_sample(eps64, x)
    if step_size is None:
        step64 = eps64 * (2.5 / max(steps, 1))
    else:
        step64 = budget_tensor(step_size, x.shape[0], x.device)
    step_b = _per_sample(step64, x)
    if random_start:
        delta = random_in_ball(x.shape, norm, eps64, generator, x.device, x.dtype)
        delta = _clip_to_pixels(x, delta)
    else:
        delta = torch.zeros_like(x)
    for _ in range(steps):
        _, gradient = margin_and_gradient(objective, x + delta)
        # Clip to the pixel range, then project onto the ball (ART's order): x is in range and projection only
        # shrinks delta toward 0, so the result is in both; for L2 this beats projecting first and clipping after.
        delta = _clip_to_pixels(x, delta - step_b * _direction(gradient, norm))
        delta = project_checked(delta, norm, eps64)
    return torch.where(eps_b == 0, x, x + delta)


def cw_l2(objective: Objective, x: Tensor, *, steps: int, eps: float | Tensor | None = None,
          confidence: float = 0.0, initial_const: float = 1.0, search_steps: int = 5,
          learning_rate: float = 0.05) -> Tensor:
    """Carlini-Wagner L2: the smallest-L2 successful image found per sample; unchanged where none was found.

    Minimises ||delta / 255||_2^2 + c * max(margin, -confidence) over w with x_adv = 255 (tanh(w) + 1) / 2
    (the [0, 255] box for free), by Adam for `steps` iterations, for each of `search_steps` values of c
    chosen by a per-sample binary search (x10 until the first success, then bisection). The distance is
    measured on the 0..1 scale so `initial_const` 1 means one unit of margin is worth the whole range.
    With eps, the result is projected onto the L2 eps ball (the budget is a hard limit, as for PGD).
    learning_rate 0.05 (in w space, about 6 grey levels per Adam step at mid-grey) is larger than the paper's
    0.01, which assumes thousands of iterations; an attack here runs tens of steps per value of c.
    """
    if steps < 0 or search_steps < 1:
        raise FaceganError(f"cw needs steps >= 0 and search_steps >= 1, not {steps} and {search_steps}")
    x = x.detach()
    count = x.shape[0]
    device, dtype = x.device, x.dtype
    half = PIXEL_MAX / 2
    # atanh(+-1) is infinite: pull pure black/white a hair inside so w starts finite (error < 1e-3 grey level).
    w_clean = torch.atanh((x / half - 1).clamp(-1 + 1e-6, 1 - 1e-6))
    lower = torch.zeros(count, dtype=torch.float64, device=device)
    upper = torch.full((count,), 1e10, dtype=torch.float64, device=device)
    const = torch.full((count,), float(initial_const), dtype=torch.float64, device=device)
    best_l2 = torch.full((count,), float("inf"), dtype=torch.float64, device=device)
    best = x.clone()

    def record(x_adv: Tensor, margin: Tensor, found: Tensor) -> Tensor:
        """Keep each successful iterate that is closer than the best so far; returns the updated 'found'."""
        nonlocal best, best_l2
        success = margin < 0 if confidence <= 0 else margin <= -confidence
        l2 = (x_adv - x).flatten(1).to(torch.float64).norm(dim=1)
        better = success & (l2 < best_l2)
        best_l2 = torch.where(better, l2, best_l2)
        best = torch.where(_per_sample(better, x).bool(), x_adv.detach(), best)
        return found | success

    for _ in range(search_steps):
        w = w_clean.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=learning_rate)
        found = torch.zeros(count, dtype=torch.bool, device=device)
        weight = const.to(dtype)
        for _ in range(steps):
            with torch.enable_grad():
                x_adv = (torch.tanh(w) + 1) * half
                margin = objective(x_adv)
                distance = ((x_adv - x) / PIXEL_MAX).flatten(1).pow(2).sum(1)
                loss = distance + weight * torch.clamp(margin, min=-confidence)
                # grad w.r.t. w only, so the objective's parameters never accumulate .grad.
                (w.grad,) = torch.autograd.grad(loss.sum(), w)
            found = record(x_adv.detach(), margin.detach(), found)
            optimiser.step()
        with torch.no_grad():
            x_adv = (torch.tanh(w) + 1) * half
            found = record(x_adv, objective(x_adv).detach(), found)
        # Binary search on c per sample: success -> a smaller c (closer images); failure -> a larger one.
        upper = torch.where(found, torch.minimum(upper, const), upper)
        lower = torch.where(found, lower, torch.maximum(lower, const))
        bounded = upper < 1e9
        const = torch.where(bounded, (lower + upper) / 2, const * 10)

    if eps is not None:
        delta = project(best - x, "l2", eps)
        best = torch.where(_per_sample(torch.isfinite(best_l2), x).bool(), _clip_to_pixels(x, delta) + x, x)
    return best.detach()
