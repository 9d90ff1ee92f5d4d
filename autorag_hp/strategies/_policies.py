"""Bandit policies over a fixed set of arms: UCB1 and Thompson sampling.

Both serve as the upper and lower levels of the hierarchical strategies and as the
flat strategies over the enumerated configurations.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np

from autorag_hp.strategies._base import argmax_random
from autorag_hp.strategies._stats import _RENORM, Discounted, SlidingWindow, StatsRule, parse_stats

__all__ = ["ArmSet", "UCB", "Thompson", "Policy"]

_SMALL = 64  # UCB and Gaussian Thompson on at most this many arms run in plain Python


class ArmSet:
    """Reward statistics of ``k`` arms under a forgetting rule; ``pending`` counts asked-but-untold pulls.

    ``n``, ``sum`` and ``sumsq`` are effective statistics (fractional counts when discounted).
    The owning strategy calls ``decay()`` once per reward it is told, before ``update``, so a
    discount ages every arm of every table by one reward (``Discounted``: "each new reward
    multiplies all earlier weights by gamma"). ``clock`` is the bandit's own discounted number
    of rewards, t in UCB's ln t: it grows by one per ``update`` and is discounted per update,
    so it never falls below 1 once an arm has a reward. Pending counts are never discounted.
    """

    def __init__(self, k: int, rule: StatsRule | None = None) -> None:
        self.rule = parse_stats(rule)
        self._gamma = float(self.rule.gamma) if isinstance(self.rule, Discounted) else 1.0
        self._size = int(self.rule.size) if isinstance(self.rule, SlidingWindow) else 0
        self._window: deque[tuple[int, float]] | None = deque() if self._size else None
        self._n = np.zeros(k)
        self._sum = np.zeros(k)
        self._sumsq = np.zeros(k)
        self.pending = np.zeros(k)
        self._w = 1.0
        self.clock = 0.0
        self._memo: tuple | None = None  # a policy's per-arm constants and the statistics they came from

    def __len__(self) -> int:
        return len(self._n)

    # effective statistics: the stored arrays themselves unless a discount is pending
    @property
    def n(self) -> np.ndarray:
        return self._n if self._w == 1.0 else self._n / self._w

    @property
    def sum(self) -> np.ndarray:
        return self._sum if self._w == 1.0 else self._sum / self._w

    @property
    def sumsq(self) -> np.ndarray:
        return self._sumsq if self._w == 1.0 else self._sumsq / self._w

    def decay(self) -> None:
        """Age every arm by one reward (no-op unless discounted)."""
        if self._gamma < 1.0:
            self._w /= self._gamma
            if self._w > _RENORM:
                inv = 1.0 / self._w
                self._n *= inv
                self._sum *= inv
                self._sumsq *= inv
                self._w = 1.0

    def update(self, arm: int, reward: float, *, was_pending: bool) -> None:
        w = self._w
        self._n[arm] += w
        self._sum[arm] += w * reward
        self._sumsq[arm] += w * reward * reward
        self.clock = self.clock * self._gamma + 1.0
        if was_pending and self.pending[arm] > 0:
            self.pending[arm] -= 1
        if self._window is not None:
            self._window.append((arm, reward))
            if len(self._window) > self._size:
                old, r = self._window.popleft()
                self.clock -= 1.0
                if self._n[old] <= 1.0:  # integral counts in window mode: exactly empty again
                    self._n[old] = self._sum[old] = self._sumsq[old] = 0.0
                else:
                    self._n[old] -= 1.0
                    self._sum[old] -= r
                    self._sumsq[old] -= r * r

    def update_many(self, arms: list[int], rewards: list[float]) -> bool:
        """``update(arm, reward, was_pending=True)`` for each pair in order, in plain Python on
        the arms' statistics as lists: the same operations on the same floats in the same
        order. Only for statistics that neither discount nor window (returns False, changing
        nothing, otherwise)."""
        if self._gamma != 1.0 or self._window is not None or self._w != 1.0:
            return False
        n, s, q, p = self._n.tolist(), self._sum.tolist(), self._sumsq.tolist(), self.pending.tolist()
        clock = self.clock
        for a, r in zip(arms, rewards):
            n[a] += 1.0  # update(): w = 1.0, so w * r == r and w * r * r == r * r
            s[a] += r
            q[a] += r * r
            clock = clock * 1.0 + 1.0
            if p[a] > 0:
                p[a] -= 1
        self._n[:] = n
        self._sum[:] = s
        self._sumsq[:] = q
        self.pending[:] = p
        self.clock = clock
        return True

    def means(self) -> np.ndarray:
        """Empirical means (0 where an arm has no pulls)."""
        return np.divide(self._sum, self._n, out=np.zeros(len(self._n)), where=self._n > 0)

    def state(self) -> dict[str, Any]:
        """Plain JSON record (``load`` restores it exactly)."""
        out: dict[str, Any] = {"n": self._n.tolist(), "sum": self._sum.tolist(), "sumsq": self._sumsq.tolist(),
                               "pending": self.pending.tolist(), "w": self._w, "clock": self.clock}
        if self._window is not None:
            out["window"] = [[a, r] for a, r in self._window]
        return out

    def load(self, state: Mapping[str, Any]) -> None:
        k = len(self._n)
        arrays = {}
        for name in ("n", "sum", "sumsq", "pending"):
            arr = np.asarray(state[name], dtype=float)
            if arr.shape != (k,):
                raise ValueError(f"arm table {name!r} has {arr.size} arms in the state, expected {k}")
            arrays[name] = arr
        self._n, self._sum, self._sumsq, self.pending = arrays["n"], arrays["sum"], arrays["sumsq"], arrays["pending"]
        self._w = float(state["w"])
        self.clock = float(state["clock"])
        if self._window is not None:
            self._window = deque((int(a), float(r)) for a, r in state.get("window", []))


@dataclass(frozen=True)
class UCB:
    """UCB1: Q_i + alpha * sqrt(ln t / N_i), untried arms first (AutoRAG-HP, eq. for Hier-UCB).

    ``t`` is the bandit's (discounted) number of rewards, ``arms.clock``, and ``N_i`` the arm's
    (discounted) count; pending pulls count in both so that a batch spreads over arms. An arm
    with pending pulls but no reward yet is valued at the mean of the tried arms. Under a
    discount, t is counted in the bandit's own time: a bandit left alone (a group the upper
    bandit did not pick) keeps t while its arms' counts fade, so their bonus grows and the
    bandit re-explores when it is picked again (Garivier & Moulines's D-UCB per bandit).
    """

    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {self.alpha!r}")

    def select(self, arms: ArmSet, rng: np.random.Generator) -> int:
        if len(arms) <= _SMALL:
            picked = self._select_small(arms, rng)
            if picked is not None:
                return picked
        n_eff = arms.n + arms.pending
        untried = n_eff == 0
        if untried.any():
            return argmax_random(untried.astype(float), rng)
        tried = arms.n > 0
        q = arms.means()
        if not tried.all():
            q = np.where(tried, q, q[tried].mean() if tried.any() else 0.0)
        t = arms.clock + arms.pending.sum()  # >= 1: the clock is >= 1 after a reward, pending >= 1 before
        scores = q + self.alpha * np.sqrt(math.log(t) / n_eff)
        return argmax_random(scores, rng)


    def _select_small(self, arms: ArmSet, rng: np.random.Generator) -> int | None:
        """``select`` in plain Python for a few arms (numpy calls cost more than the arithmetic):
        the same operations in the same order, the same draws from ``rng``, so the same arm.
        None when an arm has pending pulls but no reward (the numpy path values it)."""
        n = arms.n.tolist()
        pending = arms.pending.tolist()
        n_eff = [a + b for a, b in zip(n, pending)]
        untried = [i for i, v in enumerate(n_eff) if v == 0]
        if untried:
            return _pick(untried, rng)
        if 0.0 in n:
            return None
        log_t = math.log(arms.clock + sum(pending))  # the numpy path's arms.pending.sum(): whole numbers, exact
        alpha = self.alpha
        return _argmax_list([s / k + alpha * math.sqrt(log_t / e) for s, k, e in zip(arms.sum.tolist(), n, n_eff)], rng)


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

    def _prior(self, arms: ArmSet) -> tuple[float, float, float, float]:
        """(mu0, k0, a0, b0) of the Normal-Inverse-Gamma prior, from the bandit's pooled rewards."""
        n = arms.n
        total = n.sum()
        if total > 0:
            mu0 = arms.sum.sum() / total
            var0 = max((arms.sumsq.sum() - total * mu0 * mu0) / max(total - 1, 1), 1e-6) if total > 1 else 0.25
        else:
            mu0, var0 = 0.0, 0.25
        k0 = self.prior_strength
        a0 = 1.0 + k0 / 2.0
        b0 = var0 * (a0 - 1.0) if a0 > 1 else var0
        return mu0, k0, a0, b0

    def sample(self, arms: ArmSet, rng: np.random.Generator) -> np.ndarray:
        """One posterior draw of every arm's mean."""
        if self.posterior == "beta":
            return rng.beta(1.0 + arms.sum, 1.0 + arms.n - arms.sum)
        an, mun, bn, kn = self._posterior_arrays(arms)
        sigma2 = bn / rng.gamma(an)
        return mun + rng.standard_normal(len(an)) * np.sqrt(sigma2 / kn)

    def _posterior_arrays(self, arms: ArmSet) -> tuple[np.ndarray, ...]:
        """Per arm (a_n, mu_n, b_n, k_n) of the Normal-Inverse-Gamma posterior, as arrays."""
        n = arms.n
        mu0, k0, a0, b0 = self._prior(arms)
        xbar = np.divide(arms.sum, n, out=np.full(len(n), float(mu0)), where=n > 0)
        ss = np.where(n > 0, np.maximum(arms.sumsq - n * xbar * xbar, 0.0), 0.0)
        kn = k0 + n
        mun = (k0 * mu0 + n * xbar) / kn
        an = a0 + n / 2.0
        bn = b0 + 0.5 * ss + k0 * n * (xbar - mu0) ** 2 / (2.0 * kn)
        return an, mun, bn, kn

    def select_many(self, tables: list[ArmSet], which: list[int], rng: np.random.Generator) -> list[int]:
        """For each entry ``t`` of ``which``, the arm of ``tables[t]`` with the highest value in its
        own posterior draw of every arm's mean: the rows of a batch of suggestions, drawn
        together (one generator call per kind of variate, the rows of table 0 first, then of
        table 1, ...). Each row has the distribution of one ``select`` on an arm set whose
        arms all have rewards, but the variates come in another order than ``len(which)``
        calls of ``select`` would draw them, so not the same values; ties (probability zero
        with these continuous draws) go to the first arm."""
        rows: list[list[int]] = [[] for _ in tables]
        for i, t in enumerate(which):
            rows[t].append(i)
        cols: list[list[float]] = [[], []] if self.posterior == "beta" else [[], [], [], []]
        idx: list[int] = []
        blocks = []
        for t, r in enumerate(rows):
            if not r:
                continue
            arms = tables[t]
            if self.posterior == "beta":
                params = [(1.0 + arms.sum).tolist(), (1.0 + arms.n - arms.sum).tolist()]
            elif len(arms) <= _SMALL:
                params = self._posterior(arms, arms.n.tolist(), arms.sum.tolist(), arms.sumsq.tolist())
            else:
                params = [a.tolist() for a in self._posterior_arrays(arms)]
            off = len(cols[0])
            for col, values in zip(cols, params):
                col.extend(values)
            k = len(arms)
            idx.extend(list(range(off, off + k)) * len(r))
            blocks.append((r, k))
        p = np.array(cols)[:, idx]
        if self.posterior == "beta":
            theta = rng.beta(p[0], p[1])
        else:
            gam = rng.standard_gamma(p[0])
            z = rng.standard_normal(len(idx))
            theta = p[1] + z * np.sqrt(p[2] / gam / p[3])
        out = [0] * len(which)
        pos = 0
        for r, k in blocks:
            for i, best in zip(r, theta[pos : pos + len(r) * k].reshape(len(r), k).argmax(axis=1).tolist()):
                out[i] = best
            pos += len(r) * k
        return out

    def _sample_small(self, arms: ArmSet, rng: np.random.Generator) -> list[float]:
        """``sample`` (Gaussian) in plain Python for a few arms: the numpy path's operations in the
        same order on the same draws, so the same values (see ``_posterior``)."""
        n, s, q = arms.n.tolist(), arms.sum.tolist(), arms.sumsq.tolist()
        return self._draw(self._posterior(arms, n, s, q), rng)

    def _posterior(self, arms: ArmSet, n: list[float], s: list[float], q: list[float]) -> tuple[list[float], ...]:
        """Per arm (a_n, mu_n, b_n, k_n) of the Normal-Inverse-Gamma posterior, from the arms'
        statistics as lists (at most ``_SMALL`` arms), computed as ``sample`` computes them:
        the pooled sums in numpy's summation order (``_np_sum``), every other operation in the
        same order on the same floats. Kept on ``arms`` with the statistics it came from and
        reused while they are unchanged (e.g. across the asks of a batch)."""
        memo = arms._memo
        if memo is not None and memo[0] is self and memo[1] == n and memo[2] == s and memo[3] == q:
            return memo[4]
        total = _np_sum(n)
        if total > 0:
            mu0 = _np_sum(s) / total
            var0 = max((_np_sum(q) - total * mu0 * mu0) / max(total - 1, 1), 1e-6) if total > 1 else 0.25
        else:
            mu0, var0 = 0.0, 0.25
        k0 = self.prior_strength
        a0 = 1.0 + k0 / 2.0
        b0 = var0 * (a0 - 1.0) if a0 > 1 else var0
        k0mu0 = k0 * mu0
        an, mun, bn, kn = [], [], [], []
        for ni, si, qi in zip(n, s, q):
            if ni > 0:
                xi = si / ni
                ssi = max(qi - ni * xi * xi, 0.0)
            else:
                xi, ssi = mu0, 0.0
            d = xi - mu0
            kni = k0 + ni
            an.append(a0 + ni / 2.0)
            mun.append((k0mu0 + ni * xi) / kni)
            bn.append(b0 + 0.5 * ssi + k0 * ni * (d * d) / (2.0 * kni))
            kn.append(kni)
        post = (an, mun, bn, kn)
        arms._memo = (self, n, s, q, post)
        return post

    @staticmethod
    def _draw(post: tuple[list[float], ...], rng: np.random.Generator) -> list[float]:
        """One draw per arm: a gamma variate per arm in arm order, then one ``standard_normal``
        call for all arms, as ``sample`` draws them (``gamma(an)`` with an array of shapes is
        ``standard_gamma`` element by element: the same variates from the same stream, without
        numpy's broadcasting cost on a few arms)."""
        an, mun, bn, kn = post
        gamma = rng.standard_gamma
        gam = [gamma(a) for a in an]
        z = rng.standard_normal(len(an)).tolist()
        sqrt = math.sqrt
        return [m + zi * sqrt(b / g / k) for m, zi, b, g, k in zip(mun, z, bn, gam, kn)]

    def select(self, arms: ArmSet, rng: np.random.Generator) -> int:
        if len(arms) <= _SMALL and self.posterior == "gaussian":
            n = arms.n.tolist()
            if 0.0 in n:  # an arm without rewards: untried unless it has pending pulls
                untried = [i for i, (a, b) in enumerate(zip(n, arms.pending.tolist())) if a + b == 0]
                if untried:
                    return _pick(untried, rng)
            post = self._posterior(arms, n, arms.sum.tolist(), arms.sumsq.tolist())
            return _argmax_list(self._draw(post, rng), rng)
        untried = (arms.n + arms.pending) == 0
        if untried.any():
            return argmax_random(untried.astype(float), rng)
        return argmax_random(self.sample(arms, rng), rng)


Policy = UCB | Thompson


def _pick(candidates: list[int], rng: np.random.Generator) -> int:
    """One of ``candidates``, drawn as ``argmax_random`` draws among its ties."""
    return candidates[0] if len(candidates) == 1 else candidates[int(rng.integers(len(candidates)))]


def _np_sum(xs: list[float]) -> float:
    """``numpy.sum`` of a float64 array of at most 128 values, in numpy's order (pairwise
    summation: one running sum below 8 values, else 8 running sums combined pairwise, then the
    remainder), so the same float bit for bit; for the plain-Python paths of a few arms."""
    k = len(xs)
    if k < 8:
        r = 0.0
        for x in xs:
            r += x
        return r
    r0, r1, r2, r3, r4, r5, r6, r7 = xs[:8]
    stop = k - k % 8
    for i in range(8, stop, 8):
        r0 += xs[i]
        r1 += xs[i + 1]
        r2 += xs[i + 2]
        r3 += xs[i + 3]
        r4 += xs[i + 4]
        r5 += xs[i + 5]
        r6 += xs[i + 6]
        r7 += xs[i + 7]
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for x in xs[stop:]:
        res += x
    return 0.0 + res  # numpy adds the sum to its identity 0.0 (-0.0 becomes 0.0)


def _argmax_list(values: list[float], rng: np.random.Generator) -> int:
    """``argmax_random`` over a Python list (same ties, same draw)."""
    best = max(values)
    if values.count(best) == 1:  # the usual case: no tie, no draw
        return values.index(best)
    return _pick([i for i, v in enumerate(values) if v == best], rng)
