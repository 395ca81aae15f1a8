"""The Square attack: a score-based black-box L-inf attack that needs only the margin, never a gradient.

Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020 (reference code: github.com/max-andr/square-attack). It starts
from vertical stripes of +-eps (one sign per column and channel: the perturbations convolutional
networks are most sensitive to), then each query proposes to set one random square window to a
random +-eps per channel and keeps the proposal only for the samples whose margin falls. The window's
area is a fraction p of the image that halves on the paper's schedule, so early queries move large
regions and late ones refine. The image always lies on a vertex of the eps cube, clipped to [0, 255].

Why it matters here: it attacks recognisers with no gradient at all (LBPH, a defence that is not
differentiable, a remote service that returns only a score), and it checks that a gradient-based
robustness figure is not gradient masking. The objective is only ever called under torch.no_grad.

The batch is attacked in lockstep (one objective call per query for every sample, no host sync per
query); `square_with_queries` counts the queries a per-sample black box would have spent: one for the
stripes plus one per proposal made while that sample was not yet fooled.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from facegan.attacks.budget import _per_sample, budget_tensor, check_norm
from facegan.errors import FaceganError

Objective = Callable[[Tensor], Tensor]
PIXEL_MAX = 255.0
# Check for "everyone fooled, stop" only every so many queries: a host sync per query would stall a GPU.
STOP_CHECK_EVERY = 16


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The paper's schedule for p, the window area as a fraction of the image (rescaled to 10 000 queries)."""
    scaled = int(query / queries * 10000)
    for bound, divisor in ((10, 1), (50, 2), (200, 4), (500, 8), (1000, 16), (2000, 32), (4000, 64),
                           (6000, 128), (8000, 256), (10000, 512)):
        if scaled <= bound:
            return p_init / divisor
    return p_init / 512


def _random_signs(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    rng_device = generator.device if generator is not None else device
    bits = torch.randint(0, 2, shape, generator=generator, device=rng_device)
    return (bits * 2 - 1).to(device=device, dtype=torch.float32)


def _random_positions(count: int, high: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    rng_device = generator.device if generator is not None else device
    return torch.randint(0, high, (count,), generator=generator, device=rng_device).to(device)


def square_with_queries(objective: Objective, x: Tensor, *, norm: str = "linf", eps: float | Tensor, queries: int,
                        p_init: float = 0.05, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(x_adv, queries spent per sample (N,)): the Square attack, L-inf, accepting only margin improvements."""
    check_norm(norm)
    if norm != "linf":
        raise FaceganError("square supports linf only; use --norm linf")
    if queries < 0:
        raise FaceganError(f"the square attack needs a number of queries >= 0 (--steps), not {queries}")
    if not 0 < p_init <= 1:
        raise FaceganError(f"square p_init {p_init} must be in (0, 1]: the first window's share of the image")
    x = x.detach()
    count, channels, height, width = x.shape
    device = x.device
    eps_b = _per_sample(budget_tensor(eps, count, device), x)
    spent = torch.zeros(count, dtype=torch.long, device=device)
    if queries == 0 or count == 0:
        return x.clone(), spent

    with torch.no_grad():
        # Vertical stripes: one +-eps per (sample, channel, column), the same down every column.
        stripes = _random_signs((count, channels, 1, width), generator, device).to(x.dtype)
        best = torch.clamp(x + eps_b * stripes, 0.0, PIXEL_MAX)
        best_margin = objective(best).detach()
        spent += 1
        rows = torch.arange(height, device=device)
        columns = torch.arange(width, device=device)
        for query in range(1, queries):
            active = best_margin >= 0  # fooled samples stop spending queries (the paper's idx_to_fool)
            if query % STOP_CHECK_EVERY == 0 and not bool(active.any()):
                break
            fraction = square_fraction(p_init, query, queries)
            side = int(round(math.sqrt(fraction * height * width)))
            side = max(1, min(side, min(height, width) - 1)) if min(height, width) > 1 else 1
            top = _random_positions(count, height - side + 1, generator, device)
            left = _random_positions(count, width - side + 1, generator, device)
            in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + side)  # (N, H)
            in_columns = (columns[None, :] >= left[:, None]) & (columns[None, :] < left[:, None] + side)  # (N, W)
            window = (in_rows[:, None, :, None] & in_columns[:, None, None, :])  # (N, 1, H, W)
            signs = _random_signs((count, channels, 1, 1), generator, device).to(x.dtype)
            candidate = torch.clamp(torch.where(window, x + eps_b * signs, best), 0.0, PIXEL_MAX)
            # A window that equals the current one wastes a query: flip its signs instead (the paper redraws).
            unchanged = ((candidate - best).abs() < 1e-7).flatten(1).all(dim=1)
            flipped = torch.clamp(torch.where(window, x - eps_b * signs, best), 0.0, PIXEL_MAX)
            candidate = torch.where(_per_sample(unchanged, x).bool(), flipped, candidate)
            margin = objective(candidate).detach()
            improved = active & (margin < best_margin)
            best = torch.where(_per_sample(improved, x).bool(), candidate, best)
            best_margin = torch.where(improved, margin, best_margin)
            spent += active.long()
    best = torch.where(eps_b == 0, x, best)  # a zero budget changes nothing
    return best, spent


def square(objective: Objective, x: Tensor, *, norm: str = "linf", eps: float | Tensor, queries: int,
           p_init: float = 0.05, generator: torch.Generator | None = None) -> Tensor:
    """The Square attack (L-inf, black box): x_adv within eps and [0, 255]; see square_with_queries."""
    return square_with_queries(objective, x, norm=norm, eps=eps, queries=queries, p_init=p_init,
                               generator=generator)[0]
