"""The Square attack: a score-based black-box attack (L-inf and L2) that needs only the margin, never a gradient.

Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020 (reference code: github.com/max-andr/square-attack). It starts
from vertical stripes of +-eps (one sign per column and channel: the perturbations convolutional
networks are most sensitive to), then each query proposes to set one random square window to a
random +-eps per channel and keeps the proposal only for the samples whose margin falls. The window's
area is a fraction p of the image that halves on the paper's schedule, so early queries move large
regions and late ones refine. The image always lies on a vertex of the eps cube, clipped to [0, 255].
The L2 version (the paper's Algorithm 3) starts from a grid of "meta pseudo-Gaussian" squares (two
halves of opposite sign, mass concentrated at the centre) and each proposal moves the perturbation's
mass from a second random window into the first, adds a fresh meta square there, and rescales the
whole perturbation onto the sphere of radius eps, so the L2 budget is used fully and never exceeded.

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

import numpy as np
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


def _window(top: Tensor, left: Tensor, side: int, height: int, width: int) -> Tensor:
    """(N, 1, H, W) bool mask of each sample's side x side window at (top, left)."""
    rows = torch.arange(height, device=top.device)
    columns = torch.arange(width, device=top.device)
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + side)  # (N, H)
    in_columns = (columns[None, :] >= left[:, None]) & (columns[None, :] < left[:, None] + side)  # (N, W)
    return in_rows[:, None, :, None] & in_columns[:, None, None, :]


def _pseudo_gaussian(rows: int, columns: int) -> np.ndarray:
    """The paper's pseudo-Gaussian rectangle: nested rectangles weighted 1/(k+1)^2, unit L2 norm."""
    pattern = np.zeros((rows, columns))
    centre_row, centre_column = rows // 2 + 1, columns // 2 + 1
    corner = [centre_row - 1, centre_column - 1]
    for ring in range(max(centre_row, centre_column)):
        pattern[max(corner[0], 0):min(corner[0] + 2 * ring + 1, rows),
                max(corner[1], 0):min(corner[1] + 2 * ring + 1, columns)] += 1.0 / (ring + 1) ** 2
        corner[0] -= 1
        corner[1] -= 1
    norm = np.sqrt((pattern ** 2).sum())
    return pattern / norm if norm > 0 else pattern


def _meta_square(side: int, transpose: bool) -> np.ndarray:
    """The paper's meta pseudo-Gaussian square: two halves of opposite sign (unit L2 norm), maybe transposed."""
    pattern = np.zeros((side, side))
    pattern[: side // 2] = _pseudo_gaussian(side // 2, side)
    pattern[side // 2:] = -_pseudo_gaussian(side - side // 2, side)
    pattern /= np.sqrt((pattern ** 2).sum())
    return pattern.T.copy() if transpose else pattern


def _coin(generator: torch.Generator | None) -> bool:
    # A CPU draw (no device sync) for the pattern's orientation, shared by the batch as in the paper.
    return bool(torch.rand(1, generator=generator, device=generator.device if generator is not None else "cpu") > 0.5)


def _place(pattern: np.ndarray, top: Tensor, left: Tensor, height: int, width: int, like: Tensor) -> Tensor:
    """(N, 1, H, W): the side x side pattern placed at each sample's (top, left), zero elsewhere."""
    side = pattern.shape[0]
    square_pattern = torch.as_tensor(pattern, dtype=like.dtype, device=like.device)
    row_index = torch.arange(height, device=like.device)[None, :] - top[:, None]  # (N, H)
    column_index = torch.arange(width, device=like.device)[None, :] - left[:, None]  # (N, W)
    placed = square_pattern[row_index.clamp(0, side - 1)[:, :, None], column_index.clamp(0, side - 1)[:, None, :]]
    return (placed * _window(top, left, side, height, width)[:, 0].to(like.dtype))[:, None]


def _norms(delta: Tensor, dims: tuple[int, ...]) -> Tensor:
    return delta.pow(2).sum(dim=dims, keepdim=True).sqrt()


def _l2_start(x: Tensor, eps_b: Tensor, generator: torch.Generator | None) -> Tensor:
    """The L2 initialisation: a 5 x 5 grid of meta squares with a random sign per (sample, channel), on the eps sphere."""
    count, channels, height, width = x.shape
    side = max(height // 5, 1)
    delta = torch.zeros_like(x)
    for top in range(0, side * (height // side), side):
        for left in range(0, side * (width // side), side):
            pattern = torch.as_tensor(_meta_square(side, _coin(generator)), dtype=x.dtype, device=x.device)
            signs = _random_signs((count, channels, 1, 1), generator, x.device).to(x.dtype)
            delta[:, :, top:top + side, left:left + side] += pattern * signs
    return torch.clamp(x + delta / _norms(delta, (1, 2, 3)).clamp_min(1e-12) * eps_b, 0.0, PIXEL_MAX)


def _l2_proposal(x: Tensor, best: Tensor, eps_b: Tensor, fraction: float, generator: torch.Generator | None) -> Tensor:
    """One L2 proposal (Algorithm 3): window 2's mass moves into window 1 with a new meta square; then onto the sphere."""
    count, channels, height, width = x.shape
    side = max(int(round(math.sqrt(fraction * height * width))), 3)
    side = side + 1 if side % 2 == 0 else side
    side = min(side, min(height, width) - 1)
    delta = best - x
    top, left = (_random_positions(count, height - side + 1, generator, x.device),
                 _random_positions(count, width - side + 1, generator, x.device))
    top_2, left_2 = (_random_positions(count, height - side + 1, generator, x.device),
                     _random_positions(count, width - side + 1, generator, x.device))
    window = _window(top, left, side, height, width).to(x.dtype)  # (N, 1, H, W)
    window_2 = _window(top_2, left_2, side, height, width).to(x.dtype)
    both = torch.maximum(window, window_2)
    old_in_window = delta * window
    budget_left = (eps_b.pow(2) - _norms(delta, (1, 2, 3)).pow(2)).clamp_min(0.0)  # (N, 1, 1, 1)
    mass = _norms(delta * both, (2, 3))  # (N, C, 1, 1): what the two windows hold, per channel
    signs = _random_signs((count, channels, 1, 1), generator, x.device).to(x.dtype)
    fresh = _place(_meta_square(side, _coin(generator)), top, left, height, width, x) * signs
    fresh = fresh + old_in_window / _norms(old_in_window, (2, 3)).clamp_min(1e-10)
    fresh = fresh / _norms(fresh, (2, 3)).clamp_min(1e-12) * (budget_left / channels + mass.pow(2)).sqrt()
    proposal = torch.where(window.bool(), fresh, torch.where(window_2.bool(), torch.zeros_like(delta), delta))
    proposal = proposal / _norms(proposal, (1, 2, 3)).clamp_min(1e-12) * eps_b
    return torch.clamp(x + proposal, 0.0, PIXEL_MAX)


def _linf_proposal(x: Tensor, best: Tensor, eps_b: Tensor, fraction: float, generator: torch.Generator | None) -> Tensor:
    """One L-inf proposal: a random window set to +-eps per channel (flipped if that would change nothing)."""
    count, channels, height, width = x.shape
    side = int(round(math.sqrt(fraction * height * width)))
    side = max(1, min(side, min(height, width) - 1)) if min(height, width) > 1 else 1
    top = _random_positions(count, height - side + 1, generator, x.device)
    left = _random_positions(count, width - side + 1, generator, x.device)
    window = _window(top, left, side, height, width)  # (N, 1, H, W)
    signs = _random_signs((count, channels, 1, 1), generator, x.device).to(x.dtype)
    candidate = torch.clamp(torch.where(window, x + eps_b * signs, best), 0.0, PIXEL_MAX)
    # A window that equals the current one wastes a query: flip its signs instead (the paper redraws).
    unchanged = ((candidate - best).abs() < 1e-7).flatten(1).all(dim=1)
    flipped = torch.clamp(torch.where(window, x - eps_b * signs, best), 0.0, PIXEL_MAX)
    return torch.where(_per_sample(unchanged, x).bool(), flipped, candidate)


def square_with_queries(objective: Objective, x: Tensor, *, norm: str = "linf", eps: float | Tensor, queries: int,
                        p_init: float | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(x_adv, queries spent per sample (N,)): the Square attack, accepting a proposal only where the margin falls.

    p_init (the first window's share of the image) defaults to the paper's 0.05 for L-inf and 0.1 for L2.
    """
    check_norm(norm)
    if queries < 0:
        raise FaceganError(f"the square attack needs a number of queries >= 0 (--steps), not {queries}")
    if p_init is None:
        p_init = 0.05 if norm == "linf" else 0.1
    if not 0 < p_init <= 1:
        raise FaceganError(f"square p_init {p_init} must be in (0, 1]: the first window's share of the image")
    x = x.detach()
    count, channels, height, width = x.shape
    if norm == "l2" and min(height, width) < 5:
        raise FaceganError(f"the L2 square attack needs images of at least 5 x 5 pixels, not {height} x {width}")
    device = x.device
    eps_b = _per_sample(budget_tensor(eps, count, device), x)
    spent = torch.zeros(count, dtype=torch.long, device=device)
    if queries == 0 or count == 0:
        return x.clone(), spent

    with torch.no_grad():
        if norm == "linf":
            # Vertical stripes: one +-eps per (sample, channel, column), the same down every column.
            stripes = _random_signs((count, channels, 1, width), generator, device).to(x.dtype)
            best = torch.clamp(x + eps_b * stripes, 0.0, PIXEL_MAX)
        else:
            best = _l2_start(x, eps_b, generator)
        best_margin = objective(best).detach()
        if best_margin.shape != (count,):
            raise ValueError(f"the objective must return one margin per sample, shape ({count},), not {tuple(best_margin.shape)}")
        spent += 1
        propose = _linf_proposal if norm == "linf" else _l2_proposal
        for query in range(1, queries):
            active = best_margin >= 0  # fooled samples stop spending queries (the paper's idx_to_fool)
            if query % STOP_CHECK_EVERY == 0 and not bool(active.any()):
                break
            candidate = propose(x, best, eps_b, square_fraction(p_init, query, queries), generator)
            margin = objective(candidate).detach()
            improved = active & (margin < best_margin)
            best = torch.where(_per_sample(improved, x).bool(), candidate, best)
            best_margin = torch.where(improved, margin, best_margin)
            spent += active.long()
    best = torch.where(eps_b == 0, x, best)  # a zero budget changes nothing
    return best, spent


def square(objective: Objective, x: Tensor, *, norm: str = "linf", eps: float | Tensor, queries: int,
           p_init: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """The Square attack (black box, L-inf or L2): x_adv within eps and [0, 255]; see square_with_queries."""
    return square_with_queries(objective, x, norm=norm, eps=eps, queries=queries, p_init=p_init,
                               generator=generator)[0]
