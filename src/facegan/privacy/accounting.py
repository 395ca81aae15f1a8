"""The privacy ledger: how much (epsilon, delta) the run has spent, and how many steps it may still take.

One Opacus accountant step per discriminator step on real data (Poisson-sampled at rate q with noise
multiplier sigma); fakes are never charged. The history is saved with the checkpoint, so a resumed
run keeps counting from where it stopped.
"""
from __future__ import annotations

import math
import warnings
from typing import Any

from facegan.errors import FaceganError

# Stop the budget search once the safe step count is known to within this fraction (never above the target).
BUDGET_SEARCH_TOLERANCE = 0.005
# More steps than any run will take: a budget that allows this many is treated as unlimited.
MAX_BUDGET_STEPS = 10**9


def make_accountant(name: str, history: list[tuple[float, float, int]] | None = None):
    """An Opacus accountant (`rdp` or `prv`), optionally holding a history of (sigma, q, steps)."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    accountant = {"rdp": RDPAccountant, "prv": PRVAccountant}[name]()
    accountant.history = [(float(sigma), float(rate), int(steps)) for sigma, rate, steps in history or []]
    return accountant


def compute_epsilon(accountant_name: str, history: list[tuple[float, float, int]], delta: float) -> float:
    """Epsilon spent by a history of (noise multiplier, sample rate, steps) at `delta`."""
    if sum(steps for *_, steps in history) == 0:
        return 0.0
    with warnings.catch_warnings():
        # PRV warns when its discretisation is coarser than asked; the value it returns is an upper bound anyway.
        warnings.simplefilter("ignore")
        return float(make_accountant(accountant_name, history).get_epsilon(delta=delta))


def planned_steps(kimg: float, batch_size: int) -> int:
    """Discriminator steps for a kimg target: each step shows `batch_size` real images in expectation."""
    return max(1, math.ceil(kimg * 1000 / batch_size - 1e-9))


def default_delta(num_images: int) -> float:
    """The usual delta when none is given: well below 1/N, the delta of publishing one random face."""
    return 1.0 / (10 * num_images)


def noise_multiplier_for(target_epsilon: float, delta: float, sample_rate: float, num_steps: int, accountant: str) -> float:
    """The smallest noise multiplier (to 0.01 in epsilon) that keeps `num_steps` steps within the target."""
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(get_noise_multiplier(target_epsilon=target_epsilon, target_delta=delta, sample_rate=sample_rate,
                                              steps=num_steps, accountant=accountant))
    except ValueError:
        raise FaceganError(
            f"--dp-epsilon {target_epsilon:g} is too small for {num_steps} steps at sample rate {sample_rate:.4g} "
            "(no noise level reaches it); raise --dp-epsilon or lower --kimg"
        ) from None


class PrivacyLedger:
    """Privacy spent so far, with the budget check that keeps a run within its target epsilon."""

    def __init__(self, accountant: str, noise_multiplier: float, sample_rate: float, delta: float,
                 target_epsilon: float = 0.0, known_safe_steps: int = 0) -> None:
        self.accountant_name = accountant
        self.noise_multiplier = float(noise_multiplier)
        self.sample_rate = float(sample_rate)
        self.delta = float(delta)
        self.target_epsilon = float(target_epsilon)
        self.accountant = make_accountant(accountant)
        # Step counts verified to stay within the target; computing the exact maximum costs many accountant calls.
        self.known_safe_steps = int(known_safe_steps)
        self._max_steps: int | None = None
        self._epsilon_cache: tuple[int, float] | None = None

    @property
    def history(self) -> list[tuple[float, float, int]]:
        """(noise multiplier, sample rate, steps) entries; Opacus merges equal consecutive steps into one."""
        return self.accountant.history

    @property
    def num_steps(self) -> int:
        return sum(steps for *_, steps in self.history)

    def step(self) -> None:
        """Charge one discriminator step on Poisson-sampled real data."""
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        """Epsilon spent so far at this ledger's delta (cached per step count)."""
        if self._epsilon_cache is None or self._epsilon_cache[0] != self.num_steps:
            self._epsilon_cache = (self.num_steps, compute_epsilon(self.accountant_name, self.history, self.delta))
        return self._epsilon_cache[1]

    def epsilon_after(self, num_more_steps: int) -> float:
        """Epsilon if `num_more_steps` more steps were taken at this ledger's noise and sample rate."""
        return compute_epsilon(self.accountant_name, self.history + [(self.noise_multiplier, self.sample_rate, num_more_steps)], self.delta)

    def max_steps(self) -> int | None:
        """Total steps the target epsilon allows (a safe value within 0.5% of the exact one); None without a target."""
        if self.target_epsilon <= 0:
            return None
        if self._max_steps is None:
            done = self.num_steps
            low = max(done, self.known_safe_steps)  # fits the target
            if low > done and self.epsilon_after(low - done) > self.target_epsilon:
                low = done
            if low == done and done and self.epsilon() > self.target_epsilon:
                self._max_steps = done  # a ledger restored over its budget may take no more steps
                return done
            high = max(2 * low, 1)
            while self.epsilon_after(high - done) <= self.target_epsilon:  # gallop until the target is passed
                low, high = high, 2 * high
                if high > MAX_BUDGET_STEPS:
                    self._max_steps = MAX_BUDGET_STEPS
                    return self._max_steps
            while high - low > max(1, int(low * BUDGET_SEARCH_TOLERANCE)):
                middle = (low + high) // 2
                if self.epsilon_after(middle - done) <= self.target_epsilon:
                    low = middle
                else:
                    high = middle
            self._max_steps = low
        return self._max_steps

    def can_step(self) -> bool:
        """Whether one more step keeps the run within its target epsilon (always true without a target)."""
        if self.target_epsilon <= 0 or self.num_steps + 1 <= self.known_safe_steps:
            return True
        return self.num_steps + 1 <= self.max_steps()

    def state_dict(self) -> dict[str, Any]:
        return {
            "accountant": self.accountant_name,
            "history": [[sigma, rate, steps] for sigma, rate, steps in self.history],
            "noise_multiplier": self.noise_multiplier,
            "sample_rate": self.sample_rate,
            "delta": self.delta,
            "target_epsilon": self.target_epsilon,
            "known_safe_steps": self.known_safe_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["accountant"] != self.accountant_name:
            raise FaceganError(f"cannot resume: the run was accounted with '{state['accountant']}', not '{self.accountant_name}'")
        self.accountant = make_accountant(self.accountant_name, state["history"])
        self.noise_multiplier = float(state["noise_multiplier"])
        self.sample_rate = float(state["sample_rate"])
        self.delta = float(state["delta"])
        self.target_epsilon = float(state["target_epsilon"])
        self.known_safe_steps = int(state["known_safe_steps"])
        self._max_steps = None
        self._epsilon_cache = None
