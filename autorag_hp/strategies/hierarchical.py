"""Hier-MAB of AutoRAG-HP (Fu et al., EMNLP Findings 2024, arXiv 2406.19251).

An upper-level bandit picks which group of hyperparameters to change; that group's
lower-level bandit picks its value(s); every other group keeps the value it had in the
previous pull. The pull's reward updates the chosen upper arm and the chosen lower arm.
Neither level enumerates the joint space, so the cost of a step grows with the number
of groups and values, not with the number of configurations.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autorag_hp.strategies._base import Coords, Proposal, Recommendation, Strategy, normal_mixture_quantile, pull_count
from autorag_hp.strategies._policies import ArmSet, Thompson, UCB
from autorag_hp.strategies._stats import Discounted, SlidingWindow, Stationary

__all__ = ["HierUCB", "HierTS"]


def _check_nonneg(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class HierUCBOptions:
    """``alpha_upper``/``alpha_lower``: UCB exploration weights (paper default 1 and 1;
    its best ablation 1.5 and 0.5). ``shrinkage``: pseudo-pulls with which a configuration's
    own mean is pulled toward its group-level estimate in ``best``."""

    alpha_upper: float = 1.0
    alpha_lower: float = 1.0
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        for f in ("alpha_upper", "alpha_lower", "shrinkage"):
            _check_nonneg(f, getattr(self, f))


@dataclass(frozen=True)
class HierTSOptions:
    """``posterior``: "gaussian" (unknown mean and variance; any real reward) or "beta"
    (fractional Beta updates; rewards must lie in [0, 1]). ``shrinkage`` as for Hier-UCB."""

    posterior: Literal["gaussian", "beta"] = "gaussian"
    prior_strength: float = 1.0
    shrinkage: float = 1.0

    def __post_init__(self) -> None:
        Thompson(self.posterior, self.prior_strength)  # validates both
        _check_nonneg("shrinkage", self.shrinkage)


class _Hierarchical(Strategy):
    forgets = (Stationary, Discounted, SlidingWindow)
    online = True

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        self.groups = space.groups
        # Positions of each group's parameters inside a configuration's coordinates.
        pos = {name: i for i, name in enumerate(space.names)}
        self._group_pos = [tuple(pos[p] for p in g.params) for g in self.groups]
        self.upper = ArmSet(len(self.groups), self.stats_rule)
        self.lower = [ArmSet(g.size, self.stats_rule) for g in self.groups]
        self.upper_policy, self.lower_policy = self._policies()
        # The configuration that the next pull modifies: drawn at random to start.
        self.current: list[int] = [int(self.rng.integers(s)) for s in space.sizes]

    def _policies(self):  # pragma: no cover - abstract
        raise NotImplementedError

    # arm index of group g inside coordinates, and back
    def _arm_of(self, g: int, coords) -> int:
        idx = 0
        for p, size in zip(self._group_pos[g], self.groups[g].sizes):
            idx = idx * size + coords[p]
        return idx

    def _set_arm(self, g: int, coords: list[int], arm: int) -> None:
        for p, size in zip(reversed(self._group_pos[g]), reversed(self.groups[g].sizes)):
            arm, r = divmod(arm, size)
            coords[p] = r

    def propose(self) -> Proposal:
        """The upper bandit picks a group, its lower bandit an arm; the tag is [group, arm]."""
        g = self.upper_policy.select(self.upper, self.rng)
        arm = self.lower_policy.select(self.lower[g], self.rng)
        coords = list(self.current)
        self._set_arm(g, coords, arm)
        return Proposal(tuple(coords), [int(g), int(arm)])

    def propose_batch(self, n: int) -> list[Proposal] | None:
        """Thompson sampling once every arm of both levels has a reward: no reward arrives
        inside a batch and pending pulls change no posterior, so ``n`` calls of ``propose``
        (each committed) would draw ``n`` times from the same posteriors. Here the upper
        draws of all rows come from one ``Thompson.select_many`` call and the lower draws of
        all rows (each from its group's table) from one more (ties, of probability zero, go
        to the first arm); each
        proposal changes the previous one's configuration, as committing them in order does.
        None (one at a time) while an arm has no reward yet: untried arms go first, and
        which are untried changes with every commit."""
        policy = self.upper_policy
        if not isinstance(policy, Thompson) or n < 2:
            return None
        if any(0.0 in arms._n.tolist() for arms in (self.upper, *self.lower)):
            return None
        groups = policy.select_many([self.upper], [0] * n, self.rng)
        picked = self.lower_policy.select_many(self.lower, groups, self.rng)
        single = [pos[0] if len(pos) == 1 else -1 for pos in self._group_pos]  # a one-parameter group: arm = value
        coords = list(self.current)
        out = []
        for g, arm in zip(groups, picked):
            if single[g] >= 0:
                coords[single[g]] = arm
            else:
                self._set_arm(g, coords, arm)
            out.append(Proposal(tuple(coords), [g, arm]))
        return out

    def commit_many(self, proposals: list[Proposal]) -> None:
        if not proposals:
            return
        counts: dict[tuple[int, int], int] = {}
        pending = self.pending
        for proposal in proposals:
            coords, tag = tuple(proposal.coords), proposal.tag
            if tag is not None:
                key = (tag[0], tag[1])
                counts[key] = counts.get(key, 0) + 1
            queue = pending.get(coords)
            if queue is None:
                queue = pending[coords] = deque()
            queue.append(tag)
        for (g, arm), c in counts.items():  # whole numbers: the same floats as adding one at a time
            self.upper.pending[g] += c
            self.lower[g].pending[arm] += c
        self.current = list(coords)
        self.n_asked += len(proposals)

    def _commit(self, coords: Coords, tag) -> None:
        self.current = list(coords)
        if tag is not None:
            g, arm = tag
            self.upper.pending[g] += 1
            self.lower[g].pending[arm] += 1

    def _expire(self, coords: Coords, tag) -> None:
        if tag is not None:
            g, arm = tag
            if self.upper.pending[g] > 0:
                self.upper.pending[g] -= 1
            if self.lower[g].pending[arm] > 0:
                self.lower[g].pending[arm] -= 1

    def _update(self, coords: Coords, reward: float, tag) -> None:
        self.upper.decay()
        for arms in self.lower:
            arms.decay()
        if tag is not None:
            g, arm = tag
            self.upper.update(g, reward, was_pending=True)
            self.lower[g].update(arm, reward, was_pending=True)
        else:
            # A reward for a configuration we did not propose (warm start, user data):
            # it says something about every group's value, nothing about which group to move.
            for g in range(len(self.groups)):
                self.lower[g].update(self._arm_of(g, coords), reward, was_pending=False)

    def _answer_many(self, proposals: list[Proposal], values: list[float]) -> None:
        """``_answer`` each in order, with the arm tables updated once per batch (``ArmSet.update_many``:
        the same floats) when the statistics are stationary and every proposal is tagged."""
        if not isinstance(self.stats_rule, Stationary) or any(p.tag is None for p in proposals):
            return super()._answer_many(proposals, values)
        pending, done = self.pending, 0
        try:  # what _answer checks, item by item; a failure leaves the earlier items applied, as _answer would
            for proposal in proposals:
                coords = tuple(proposal.coords)
                queue = pending.get(coords)
                if not queue or proposal.tag not in queue:
                    raise ValueError(f"{proposal!r} is not a pending ask")
                self._unpend(coords, proposal.tag, queue)
                done += 1
        finally:
            groups = [p.tag[0] for p in proposals[:done]]
            if not self.upper.update_many(groups, values[:done]):  # pragma: no cover - Stationary always can
                raise AssertionError("stationary arm tables must take update_many")
            for g, arms in enumerate(self.lower):
                rows = [k for k in range(done) if groups[k] == g]
                if rows:
                    arms.update_many([proposals[k].tag[1] for k in rows], [values[k] for k in rows])
            add = self.stats.add
            for proposal, value in zip(proposals[:done], values[:done]):
                add(tuple(proposal.coords), value)
            self.n_told += done

    def _state(self) -> dict:
        return {"upper": self.upper.state(), "lower": [a.state() for a in self.lower], "current": list(self.current)}

    def _load(self, state) -> None:
        if len(state["lower"]) != len(self.lower):
            raise ValueError(f"state has {len(state['lower'])} groups, the space has {len(self.lower)}")
        self.upper.load(state["upper"])
        for arms, s in zip(self.lower, state["lower"]):
            arms.load(s)
        current = [int(c) for c in state["current"]]
        self.space.index_of_coords(current)  # validates
        self.current = current

    # -- recommendation -------------------------------------------------------------------
    def _prior(self, coords, means: list[np.ndarray] | None = None) -> float:
        """Group-level estimate of a configuration: mean of its arms' lower-level means
        (``means``: ``_lower_means()``, passed in when many configurations are scored)."""
        if means is None:
            means = self._lower_means()
        vals = []
        for g, m in enumerate(means):
            v = m[self._arm_of(g, coords)]
            if v == v:
                vals.append(v)
        if vals:
            return float(np.mean(vals))
        total_n, total_s, _ = self.stats.totals()
        return total_s / total_n if total_n else 0.0

    def _lower_means(self) -> list[np.ndarray]:
        """Each lower bandit's arm means, NaN where an arm has no reward."""
        return [np.where(arms.n > 0, arms.means(), np.nan) for arms in self.lower]

    def best(self, n: int = 1) -> list[Recommendation]:
        """Rank configurations by their own pulls, shrunk toward group-level estimates.

        estimate = (n_c * mean_c + k * prior_c) / (n_c + k) with k = ``shrinkage``. The interval
        is the central ``confidence`` interval of the posterior of the configuration's mean around
        its group estimate, the spread of that prior integrated out (:meth:`_intervals`); with
        ``k = 0`` (the paper's empirical mean) it is mean_c +- z * sigma / sqrt(n_c). When fewer than ``n``
        configurations were pulled, unpulled ones built from the best-estimated arms of each
        group complete the list.
        """
        n = self._check_n(n)
        k = float(self.options.shrinkage)
        sigma = self.stats.noise_std()
        means = self._lower_means()
        recs = []
        for coords, (cnt, s, _) in self.stats.items():
            est = (s + k * self._prior(coords, means)) / (cnt + k) if cnt + k > 0 else s / cnt
            recs.append((est, cnt, coords))
        if len(recs) < n:
            recs.extend(self._unpulled_candidates(n - len(recs), means))
        jitter = self._tiebreak_rng().random(len(recs))
        order = sorted(range(len(recs)), key=lambda i: (-recs[i][0], -recs[i][1], jitter[i]))[:n]
        bounds = self._intervals([recs[i] for i in order], k, sigma, means)
        out = []
        for i, (lo, hi) in zip(order, bounds):
            est, cnt, coords = recs[i]
            out.append(Recommendation(self.space.config_from_coords(coords), float(est), pull_count(cnt), lo, hi))
        return out

    # -- interval of a recommendation -------------------------------------------------------
    def _arm_matrix(self, coords: np.ndarray) -> np.ndarray:
        """Arm index of every group (columns) for each row of configuration coordinates
        (:meth:`_arm_of` on the coordinate columns)."""
        out = np.zeros((len(coords), len(self.groups)), dtype=np.int64)
        cols = np.asarray(coords, dtype=np.int64).T
        for g in range(len(self.groups)):
            out[:, g] = self._arm_of(g, cols)
        return out

    def _group_view(self, arms: np.ndarray, w: np.ndarray, mean: np.ndarray,
                    pop_arms: np.ndarray, pop_w: np.ndarray, pop_mean: np.ndarray):
        """For each row of ``arms`` (a configuration's :meth:`_arm_matrix` row, with vote weight
        ``w``, 0 if never pulled, and own mean ``mean``): its group estimate from the *other*
        pulled configurations, and that estimate's variance.

        Every pulled configuration (``pop_arms``: its :meth:`_arm_matrix` row; ``pop_w``,
        ``pop_mean``) votes for each of its arms with its own mean, weighted by ``pop_w``; the
        intervals use ``n / (sigma^2 + n tau2)``: the precision of a configuration's mean as evidence about the
        level of its arms when configurations scatter around that level with variance tau2 (the
        random-effects, i.e. generalised least squares, mean). The lower-level tables weight by
        pulls, so there the few configurations a greedy lower level pulled over and over -- the
        ones whose early rewards were high -- set their arms' levels and put the group estimate
        of every other configuration with those arms too high. The group estimate is the mean of
        the configuration's arms' weighted means over the groups where other configurations
        vote (its own vote taken out; NaN where none do), its variance (under those weights)
        ``sum_g 1 / W_g / G'^2`` (``W_g`` the other votes' weight on the arm, ``G'`` the groups counted).
        """
        total = np.zeros(len(arms))
        var = np.zeros(len(arms))
        kept = np.zeros(len(arms))
        for g, group in enumerate(self.groups):
            weight = np.bincount(pop_arms[:, g], weights=pop_w, minlength=group.size)[arms[:, g]]
            votes = np.bincount(pop_arms[:, g], weights=pop_w * pop_mean, minlength=group.size)[arms[:, g]]
            other = weight - w
            keep = other > 1e-9 * weight  # another configuration votes for this arm
            safe = np.where(keep, other, 1.0)
            total += np.where(keep, (votes - w * mean) / safe, 0.0)
            var += np.where(keep, 1.0 / safe, 0.0)
            kept += keep
        with np.errstate(invalid="ignore", divide="ignore"):
            p_other = total / kept
        return p_other, var / np.maximum(kept, 1.0) ** 2

    def _spread_posterior(self, arms: np.ndarray, cnt: np.ndarray, mean: np.ndarray,
                          s2: float, k: float) -> tuple[np.ndarray, np.ndarray]:
        """Posterior of tau2, the spread of configuration means around their group estimates, on a
        grid: ``(grid, log weights)``.

        Every pulled configuration (``arms``: its :meth:`_arm_matrix` row; ``cnt`` pulls, own
        ``mean``) gives d = mean - p (p its group estimate from the others, weighted at
        the shrinkage prior's spread sigma^2 / k), d ~ N(0, tau2 + sigma^2 / n + var p); the prior is
        uniform on tau (Gelman 2006, for the spread of a hierarchical model with few groups).
        Integrating tau2 out, rather than plugging in a point estimate, keeps the interval honest
        while a handful of configurations, with one to a few pulls each, are all tau2 rests on.
        With fewer than two configurations to go on, the grid is the single shrinkage spread.
        """
        vote = cnt / (s2 + cnt * (s2 / k))
        p, var_p = self._group_view(arms, vote, mean, arms, vote, mean)
        ok = np.isfinite(p)
        if ok.sum() < 2:
            return np.array([s2 / k]), np.zeros(1)
        d2 = (mean[ok] - p[ok]) ** 2
        grid = np.geomspace(1e-4 * s2, 4.0 * max(float(d2.mean()), s2), 64)
        var = grid[:, None] + (s2 / cnt[ok] + var_p[ok])[None, :]
        log_w = -0.5 * (d2[None, :] / var + np.log(var)).sum(axis=1) + 0.5 * np.log(grid)  # uniform on tau
        log_w -= log_w.max()
        return grid, log_w - math.log(float(np.exp(log_w).sum()))

    def _intervals(self, picked, k: float, sigma: float, means: list[np.ndarray]) -> list[tuple[float, float]]:
        """``confidence`` intervals of the picked ``(estimate, pulls, coords)`` entries.

        The model: one pull's reward is mean_c + noise (sd ``sigma``), and mean_c ~ N(p_c, tau2 +
        var_p) around the configuration's group estimate p_c, taken from the other configurations'
        pulls (:meth:`_group_view`, weighted at tau2's posterior mean), with tau2 itself unknown:
        its grid posterior from every pulled configuration (:meth:`_spread_posterior`). The
        configuration's own pulls reweigh that grid, and the interval is the central
        ``confidence`` interval of the resulting scale mixture of Gaussian posteriors of mean_c,
        widened if needed to contain the estimate. Because ``best`` selects the configurations
        whose pulls were luckiest, a posterior (which conditions on what was seen) keeps its
        coverage under that selection where an interval around the estimate alone does not
        (docs/strategies.md, "Calibration").
        """
        if not picked:
            return []
        z = self._z()
        if k <= 0 or not sigma > 0:
            out = []
            for est, cnt, _ in picked:
                half = z * sigma / math.sqrt(cnt + k) if cnt + k > 0 else math.inf
                out.append((float(est - half), float(est + half)))
            return out
        s2 = sigma * sigma
        items = list(self.stats.items())
        all_coords = np.array([c for c, _ in items], dtype=np.int64).reshape(len(items), len(self.space.sizes))
        all_cnt = np.array([r[0] for _, r in items], dtype=float)
        all_mean = np.array([r[1] / r[0] for _, r in items], dtype=float)
        all_arms = self._arm_matrix(all_coords)
        grid, log_post = self._spread_posterior(all_arms, all_cnt, all_mean, s2, k)
        tau2 = float(np.exp(log_post) @ grid)
        coords = np.array([c for _, _, c in picked], dtype=np.int64).reshape(len(picked), len(self.space.sizes))
        cnt = np.array([c for _, c, _ in picked], dtype=float)
        rows = [self.stats.row(c) if c in self.stats else None for _, _, c in picked]
        own = np.array([r[1] / r[0] if r is not None else 0.0 for r in rows])
        p_other, var_p = self._group_view(self._arm_matrix(coords), cnt / (s2 + cnt * tau2), own, all_arms,
                                          all_cnt / (s2 + all_cnt * tau2), all_mean)
        fallback = np.array([self._prior(c, means) for _, _, c in picked])
        p = np.where(np.isfinite(p_other), p_other, fallback)
        pulled = cnt > 0
        noise = s2 / np.where(pulled, cnt, 1.0)  # variance of the configuration's own mean
        v = grid[:, None] + var_p[None, :]  # (grid, entries): prior variance of mean_c
        centres = p + np.where(pulled, v / (v + noise), 0.0) * (own - p)
        sds = np.sqrt(np.where(pulled, v * noise / (v + noise), v))
        marg = v + noise  # variance of own - p
        log_w = log_post[:, None] + np.where(pulled, -0.5 * ((own - p) ** 2 / marg + np.log(marg)), 0.0)
        w = np.exp(log_w - log_w.max(axis=0))
        w /= w.sum(axis=0)
        tail = (1.0 - self.confidence) / 2
        lo = normal_mixture_quantile(w, centres, sds, tail)
        hi = normal_mixture_quantile(w, centres, sds, 1.0 - tail)
        est = np.array([e for e, _, _ in picked], dtype=float)
        return [(float(a), float(b)) for a, b in zip(np.minimum(lo, est), np.maximum(hi, est))]

    def _unpulled_candidates(self, need: int, means: list[np.ndarray]):
        per_group = []
        for g, arms in enumerate(self.lower):
            q = np.where(arms.n > 0, arms.means(), -np.inf)
            top = 3 if len(self.lower) <= 6 else 2
            per_group.append([int(a) for a in np.argsort(-q, kind="stable")[:top]])
        out = []
        for arms_choice in itertools.product(*per_group):
            coords = list(self.current)
            for g, arm in enumerate(arms_choice):
                self._set_arm(g, coords, arm)
            c = tuple(coords)
            if c in self.stats:
                continue
            out.append((self._prior(c, means), 0, c))
        out.sort(key=lambda r: -r[0])
        seen, uniq = set(), []
        for r in out:
            if r[2] not in seen:
                seen.add(r[2])
                uniq.append(r)
        if len(uniq) < need:  # tiny spaces or few tried arms: fall back to index order
            for i in range(len(self.space)):
                c = self.space.coords_of_index(i)
                if c not in self.stats and c not in seen:
                    seen.add(c)
                    uniq.append((self._prior(c, means), 0, c))
                if len(uniq) >= need:
                    break
        return uniq[:need]


class HierUCB(_Hierarchical):
    """Hier-UCB: UCB1 at both levels with separate ``alpha_upper`` and ``alpha_lower``."""

    name = "hier-ucb"
    Options = HierUCBOptions

    def _policies(self):
        return UCB(self.options.alpha_upper), UCB(self.options.alpha_lower)


class HierTS(_Hierarchical):
    """Hier-TS: Thompson sampling at both levels."""

    name = "hier-ts"
    Options = HierTSOptions

    def _policies(self):
        ts = Thompson(self.options.posterior, self.options.prior_strength)
        return ts, ts

    def _check_reward(self, reward: float) -> None:
        if self.options.posterior == "beta" and not 0.0 <= reward <= 1.0:
            raise ValueError(f"reward must lie in [0, 1] with posterior='beta', got {reward!r}")
