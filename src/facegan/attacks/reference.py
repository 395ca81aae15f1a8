"""IBM's adversarial-robustness-toolbox (ART 1.20.1) as the reference for our FGSM, PGD and (L-inf) Square.

Nicolae et al., "Adversarial Robustness Toolbox v1.0.0", arXiv:1807.01069. ART attacks classifiers, so a
margin objective becomes a 2-class classifier with logits [0, -margin] and every sample labelled class 0:
its cross-entropy log(1 + exp(-margin)) falls as the margin rises, so ART's untargeted step up the loss
is exactly our step down the margin (same sign for L-inf, same unit direction for L2), and ART's Square
loss (true logit minus the other) is the margin itself. Budgets, steps and clip_values (0, 255) are
passed through unchanged, so success rates are directly comparable. Only ART's L-inf Square is offered:
its L2 update divides by the window budget where the paper multiplies (square_attack.py, 1.20.1).

ART is a test and benchmark reference, not a runtime need: it is imported only inside `art_attack`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from facegan.attacks.budget import budget_tensor, check_norm

ART_ATTACKS = ("fgsm", "pgd", "square")


class MarginClassifier(torch.nn.Module):
    """A margin objective as a 2-logit classifier [0, -margin] (class 0 = the attack has not succeeded)."""

    def __init__(self, objective: Callable[[Tensor], Tensor]):
        super().__init__()
        # A Module objective is registered (ART moves it to its device and sets eval mode); a plain function is kept as is.
        self.objective = objective

    def forward(self, x: Tensor) -> Tensor:
        margin = self.objective(x)  # (N,)
        return torch.stack([torch.zeros_like(margin), -margin], dim=1)  # (N, 2)


def art_attack(objective: Callable[[Tensor], Tensor], x: Tensor, *, attack: str = "pgd", norm: str = "linf",
               eps: float | Tensor, steps: int = 10, step_size: float | Tensor | None = None,
               random_start: bool = True, seed: int = 0, batch_size: int = 128,
               mask: np.ndarray | None = None) -> Tensor:
    """ART's FastGradientMethod or ProjectedGradientDescent on the margin objective; x_adv like ours.

    step_size defaults to our PGD's 2.5 * eps / steps; random_start means ART's num_random_init=1 (one
    start, the last iterate, like ours). ART draws its random start from numpy's global RNG, which is
    seeded with `seed` for the call and restored afterwards. `mask` is ART's (1 = may change).
    For "square", `steps` is the number of queries (ours count the start as one, ART's max_iter does not)
    and p_init is ours (0.05); ART's Square ignores mask.
    """
    import random

    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    check_norm(norm)
    if attack not in ART_ATTACKS:
        raise ValueError(f"ART reference covers {ART_ATTACKS}, not {attack!r}")
    if attack == "square" and norm != "linf":
        raise ValueError("ART's L2 Square attack rescales its windows wrongly in 1.20.1; compare L-inf only")
    x = x.detach()
    count = x.shape[0]
    eps64 = budget_tensor(eps, count, "cpu")
    if bool((eps64 == 0).all()):
        return x.clone()  # ART refuses a zero step size; a zero budget changes nothing anyway
    if step_size is None:
        step64 = eps64 * (2.5 / max(steps, 1))
    else:
        step64 = budget_tensor(step_size, count, "cpu")
    shape = (count,) + (1,) * (x.ndim - 1)
    # ART takes a float or an array broadcastable per sample; both must be the same type.
    if bool((eps64 == eps64[0]).all()) and bool((step64 == step64[0]).all()):
        art_eps: float | np.ndarray = float(eps64[0])
        art_step: float | np.ndarray = float(step64[0])
    else:
        art_eps = eps64.numpy().astype(np.float32).reshape(shape)
        art_step = step64.numpy().astype(np.float32).reshape(shape)
    art_norm = np.inf if norm == "linf" else 2

    classifier = PyTorchClassifier(
        model=MarginClassifier(objective), loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
        nb_classes=2, clip_values=(0.0, 255.0), device_type="gpu" if x.is_cuda else "cpu",
    )
    if attack == "fgsm":
        method = FastGradientMethod(classifier, norm=art_norm, eps=art_eps, eps_step=art_step, targeted=False,
                                    num_random_init=0, batch_size=batch_size, minimal=False)
    elif attack == "square":
        method = SquareAttack(classifier, norm=art_norm, max_iter=max(steps - 1, 1), eps=float(eps64.max()),
                              p_init=0.05, nb_restarts=1, batch_size=batch_size, verbose=False)
        if not bool((eps64 == eps64[0]).all()):
            raise ValueError("ART's Square attack takes one budget for the batch")
    else:
        method = ProjectedGradientDescent(classifier, norm=art_norm, eps=art_eps, eps_step=art_step,
                                          max_iter=steps, targeted=False, num_random_init=int(random_start),
                                          batch_size=batch_size, verbose=False)
    # One-hot class 0 for every sample (untargeted: push away from "not fooled"); index labels would make ART guess.
    labels = np.zeros((count, 2), dtype=np.float32)
    labels[:, 0] = 1.0
    state, python_state = np.random.get_state(), random.getstate()  # ART's Square also draws from `random`
    np.random.seed(seed)
    random.seed(seed)
    try:
        kwargs = {} if mask is None or attack == "square" else {"mask": mask}
        adversarial = method.generate(x.cpu().numpy().astype(np.float32), y=labels, **kwargs)
    finally:
        np.random.set_state(state)
        random.setstate(python_state)
    result = torch.from_numpy(adversarial).to(device=x.device, dtype=x.dtype)
    zero = (eps64 == 0).to(x.device).reshape(shape)
    return torch.where(zero, x, result)
