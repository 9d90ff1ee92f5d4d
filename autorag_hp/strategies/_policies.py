"""Bandit policies over a fixed set of arms: UCB1 and Thompson sampling.

Both serve as the upper and lower levels of the hierarchical strategies and as the
flat strategies over the enumerated configurations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autorag_hp.strategies._base import argmax_random

__all__ = ["ArmSet", "UCB", "Thompson", "Policy"]


class ArmSet:
    """Reward statistics of ``k`` arms; ``pending`` counts asked-but-untold pulls."""

    def __init__(self, k: int) -> None:
        self.n = np.zeros(k)
        self.sum = np.zeros(k)
        self.sumsq = np.zeros(k)
        self.pending = np.zeros(k)

    def __len__(self) -> int:
        return len(self.n)

    def update(self, arm: int, reward: float, *, was_pending: bool) -> None:
        self.n[arm] += 1
        self.sum[arm] += reward
        self.sumsq[arm] += reward * reward
        if was_pending and self.pending[arm] > 0:
            self.pending[arm] -= 1

    def means(self) -> np.ndarray:
        """Empirical means (0 where an arm has no pulls)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.sum / np.maximum(self.n, 1), 0.0)


@dataclass(frozen=True)
class UCB:
    """UCB1: Q_i + alpha * sqrt(ln t / N_i), untried arms first (AutoRAG-HP, eq. for Hier-UCB).

    ``t`` is the bandit's total number of pulls and ``N_i`` the arm's; pending pulls count
    in both so that a batch spreads over arms. An arm with pending pulls but no reward
    yet is valued at the mean of the tried arms.
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")

    def select(self, arms: ArmSet, rng: np.random.Generator) -> int:
        n_eff = arms.n + arms.pending
        untried = n_eff == 0
        if untried.any():
            return argmax_random(untried.astype(float), rng)
        tried = arms.n > 0
        q = arms.means()
        if not tried.all():
            q = np.where(tried, q, q[tried].mean() if tried.any() else 0.0)
        t = n_eff.sum()
        scores = q + self.alpha * np.sqrt(math.log(t) / n_eff)
        return argmax_random(scores, rng)


@dataclass(frozen=True)
class Thompson:
    """Thompson sampling with a conjugate posterior per arm, untried arms first.

    ``posterior="gaussian"``: Normal-Inverse-Gamma (unknown mean and variance), prior
    centred on the bandit's pooled mean with ``prior_strength`` pseudo-observations and a
    prior variance of the pooled variance (0.25 before any data) -- suitable for any
    real-valued reward. ``posterior="beta"``: Beta(1 + sum r, 1 + sum (1 - r)), the
    fractional-update Beta-Bernoulli model for rewards in [0, 1] (Agrawal & Goyal 2012).
    """

    posterior: Literal["gaussian", "beta"] = "gaussian"
    prior_strength: float = 1.0

    def __post_init__(self) -> None:
        if self.posterior not in ("gaussian", "beta"):
            raise ValueError(f"posterior must be 'gaussian' or 'beta', got {self.posterior!r}")
        if not (isinstance(self.prior_strength, (int, float)) and self.prior_strength > 0):
            raise ValueError(f"prior_strength must be > 0, got {self.prior_strength!r}")

    def sample(self, arms: ArmSet, rng: np.random.Generator) -> np.ndarray:
        """One posterior draw of every arm's mean."""
        n = arms.n
        if self.posterior == "beta":
            return rng.beta(1.0 + arms.sum, 1.0 + n - arms.sum)
        total = n.sum()
        if total > 0:
            mu0 = arms.sum.sum() / total
            var0 = max((arms.sumsq.sum() - total * mu0 * mu0) / max(total - 1, 1), 1e-6) if total > 1 else 0.25
        else:
            mu0, var0 = 0.0, 0.25
        k0 = self.prior_strength
        a0 = 1.0 + k0 / 2.0
        b0 = var0 * (a0 - 1.0) if a0 > 1 else var0
        safe_n = np.maximum(n, 1)
        xbar = np.where(n > 0, arms.sum / safe_n, mu0)
        ss = np.where(n > 0, np.maximum(arms.sumsq - n * xbar * xbar, 0.0), 0.0)
        kn = k0 + n
        mun = (k0 * mu0 + n * xbar) / kn
        an = a0 + n / 2.0
        bn = b0 + 0.5 * ss + k0 * n * (xbar - mu0) ** 2 / (2.0 * kn)
        sigma2 = bn / rng.gamma(an)
        return mun + rng.standard_normal(len(n)) * np.sqrt(sigma2 / kn)

    def select(self, arms: ArmSet, rng: np.random.Generator) -> int:
        untried = (arms.n + arms.pending) == 0
        if untried.any():
            return argmax_random(untried.astype(float), rng)
        return argmax_random(self.sample(arms, rng), rng)


Policy = UCB | Thompson
