"""Structured Thompson sampling: an additive Bayesian model over knob values shares what each pull teaches.

Model (a Bayesian ANOVA decomposition, fit by conjugate Bayesian linear regression):

    reward(c) = b + sum_k main_k[c_k] + sum_(k,l) pair_kl[c_k, c_l] + u_c + noise

One-hot features for every knob value and for the values of the interacting pairs;
independent Gaussian priors (``prior_scale`` for main effects, ``interaction_scale`` for
pairs); ``u_c ~ N(0, residual_scale**2)`` is what the additive model misses about one
configuration, learned from that configuration's own pulls (with ``residual_tail`` > 0 a scale
mixture: ``N(0, residual_wide**2)`` with that probability, the component's posterior weight set
per configuration by its own pulls, used in the blend, the draws and the intervals; the
regression keeps the single variance; enumerated spaces only); the noise variance is the
pooled within-configuration variance (plug-in); with ``population`` P (paired sampling: a
configuration's first P pulls see disjoint questions) a configuration's own-mean noise variance
is sigma^2 f(n) / n, f(n) = max(1 - min(n, P) / P, 1e-3). The residual is marginalised out of the
regression: a configuration's pulls enter it through their mean, with precision
``n_c / (sigma^2 + n_c tau^2)`` rather than ``n_c / sigma^2``, so they are not counted twice
(once in the model, once in the blend with the configuration's own mean). A pull's one-hot
row has a handful of non-zeros, so a tell is a rank-one update of the posterior, O(d^2); the
posterior is refactored (Cholesky, O(d^3)) when sigma^2 or tau^2 has moved by 10%.

Policies: ``structured-ts`` plays Thompson sampling (Agrawal & Goyal 2013, linear TS);
``structured-tt`` plays top-two Thompson sampling for best-arm identification (Russo 2016):
with probability ``leader_prob`` the sample's argmax, otherwise the argmax of a fresh
sample with the leader masked out (a one-resample variant of TTTS's challenger).
Recommendations (``best``) rank every configuration by posterior mean, with credible
intervals, so an unpulled configuration whose knob values all did well can be recommended.

Stopping rule (``stop=True``): ``ask`` raises :class:`SpaceExhausted` once the posterior
probability that every one of ``best(stop_top)`` is within ``stop_epsilon`` of the
``stop_top``-th best configuration reaches ``stop_level`` and every configuration has been
pulled: when the posterior criterion holds first, the strategy pulls each unpulled configuration
once (tag "verify", highest posterior mean first) and checks again; under paired sampling the
rule's draws also carry the knob x question errors that configurations sharing a knob value
share until they have seen every question. Transfer: ``warm_start`` reads
(config, reward) pairs of a cheaper proxy (a journal path or a list of records); each counts
as ``warm_weight`` of a target pull and the proxy gets its own offset, so a proxy that is
uniformly worse (a smaller embedder) still informs the knob effects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import linalg, sparse
from scipy.linalg import blas

from autorag_hp._seeds import generator
from autorag_hp._threads import one_blas_thread
from autorag_hp._validation import check_int, check_positive_int
from autorag_hp.strategies._base import (
    Coords,
    Proposal,
    Recommendation,
    SpaceExhausted,
    Strategy,
    argmax_random,
    normal_mixture_quantile,
    pull_count,
)
from autorag_hp.strategies._stats import Discounted, Stationary

__all__ = ["StructuredTS", "StructuredTopTwo"]

_ENUMERATE_LIMIT = 250_000  # larger spaces: coordinate ascent instead of scoring every configuration
_AUTO_MAX_FEATURES = 320
_ger = blas.dger  # a -= c x y^T in place on a Fortran-ordered float64 array
_REFACTOR_DRIFT = 0.1  # refactor the posterior when the noise-variance estimate moves by 10%
_EFFECTS_EVERY = 10  # batch_effects: tells between two estimates of the question-batch offsets (at least)


def _above(t: np.ndarray, weights: np.ndarray, K: int) -> np.ndarray:
    """For k = 0 .. K-1, the sum of ``weights`` over the entries whose count ``t`` exceeds k."""
    return np.bincount(t, weights=weights, minlength=K + 1)[::-1].cumsum()[::-1][1:K + 1]


def _ordinal_information(t: np.ndarray, nn: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
    """The two-way view ``reward(c, k) = mu_c + d_k + e`` of paired pulls (``t`` = ``nn``: each
    pulled configuration's pull count, K the largest): per ordinal k, ``m_k`` the configurations
    with more than k pulls, and the reduced information matrix of the ordinal effects with the
    configuration means absorbed, ``R = diag(m) - A``, ``A_kl`` the sum of 1 / n_c over the
    configurations with more than max(k, l) pulls."""
    m = _above(t, np.ones(len(t)), K)
    ks = np.arange(K)
    return m, np.diag(m) - _above(t, 1.0 / nn, K)[np.maximum.outer(ks, ks)]


_ROW_CHUNK = 8192  # configurations per block of row_norms2: (block, k, columns) floats at a time


def row_norms2(m: np.ndarray, rows: np.ndarray, x: np.ndarray | None = None,
               m_x: np.ndarray | None = None) -> np.ndarray:
    """Per configuration c, the squared norm of ``m[rows[c]].sum(axis=0) + x[c] @ m_x`` (the rows
    of ``m`` at its one-hot features, plus its dense covariates ``x`` times ``m_x``), in blocks
    of configurations: the (configurations, k, columns) gather is never held whole (at 250,000
    configurations it took pareto-ts' best() to a peak of 3.3 GB)."""
    out = np.empty(len(rows))
    for a in range(0, len(rows), _ROW_CHUNK):
        z = m[rows[a:a + _ROW_CHUNK]].sum(axis=1)
        if x is not None:
            z += x[a:a + _ROW_CHUNK] @ m_x
        out[a:a + _ROW_CHUNK] = np.einsum("ij,ij->i", z, z)
    return out


def _finite(name: str, value: Any, *, low: float = 0, strict: bool = True) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")


@dataclass(frozen=True)
class StructuredTSOptions:
    """Options of the structured strategies (see the module docstring for the model).

    ``interactions``: "auto" (every pair while the model has at most 320 features, then the
    pairs with fewest value combinations), "all", "none", or explicit pairs "top_k*compression,
    chunk_size*top_k". ``prior_scale``/``interaction_scale``/``residual_scale``: prior standard
    deviations, in reward units, of a main effect, a pairwise effect and one configuration's
    deviation from the additive model. ``residual_tail``: prior probability that a configuration's
    deviation comes instead from a wide component of standard deviation ``residual_wide`` (a
    two-component scale mixture, heavy-tailed; 0 = one Gaussian). ``leader_prob``: top-two TS's
    chance of playing the leader (1 = plain Thompson sampling). ``init``: space-filling first pulls (0 = one per
    value of the knob with most values). ``stop``: honour the stopping rule (``stop_epsilon``,
    ``stop_level``, ``stop_top``, checked every ``stop_every`` tells after ``stop_min_pulls``; it
    never certifies a configuration it has not pulled: see the module docstring).
    ``warm_start``: proxy observations, a journal path or a list of {"config", "reward"}
    records; ``warm_weight``: what one proxy pull counts for, in target pulls.
    ``population``: P = N questions / batch, the pulls in a pass of paired sampling (a real
    number >= 1; 0 = off; "auto" = set by Study and the bench replay to N / batch under paired
    sampling, off otherwise): a configuration's first floor(P) pulls are disjoint question sets
    drawn without replacement from the N, so its own mean's noise variance after n pulls is
    sigma^2 / n * max(1 - min(n, P) / P, 1e-3), i.e. (N - n * batch) / N (finite-population
    correction, in the blend, the regression, the draws, the intervals and the stopping rule),
    and a configuration with n >= floor(P) is not proposed again while others remain. Enumerated spaces
    only; needs ``residual_tail=0``. ``batch_effects``: with ``population`` > 0 (paired sampling,
    where every configuration's k-th pull sees the same k-th batch of questions) estimate each
    batch's shared difficulty offset ``delta_k`` from the configurations that had a k-th pull (a
    two-way configuration + question-batch fit, the offsets of each pass summing to zero so that
    a configuration that saw every question keeps its exact mean) and let every pull enter the
    model as ``reward - delta_k``: configurations compared after different numbers of pulls are
    then compared on equal questions. Re-estimated every max(10, K) tells (K: the most pulls of
    any configuration); inactive (bit-identical) without ``population``.
    """

    interactions: str = "auto"
    prior_scale: float = 0.1
    interaction_scale: float = 0.05
    residual_scale: float = 0.02
    residual_eb: bool = True
    residual_tail: float = 0.0
    residual_wide: float = 0.2
    leader_prob: float = 1.0
    top_m: int = 1
    init: int = 0
    stop: bool = False
    stop_epsilon: float = 0.01
    stop_level: float = 0.95
    stop_top: int = 1
    stop_every: int = 10
    stop_min_pulls: int = 50
    stop_samples: int = 256
    warm_start: Any = None
    warm_weight: float = 0.25
    population: int | str = 0
    batch_effects: bool = False


    def __post_init__(self) -> None:
        if not isinstance(self.interactions, str) or not self.interactions.strip():
            raise ValueError(
                f"interactions must be 'auto', 'all', 'none' or pairs like 'top_k*compression', got {self.interactions!r}"
            )
        for f in ("prior_scale", "interaction_scale", "warm_weight", "stop_epsilon"):
            _finite(f, getattr(self, f))
        _finite("residual_scale", self.residual_scale, strict=False)
        _finite("residual_wide", self.residual_wide)
        if not (isinstance(self.residual_tail, (int, float)) and not isinstance(self.residual_tail, bool)
                and 0.0 <= self.residual_tail < 1.0):
            raise ValueError(f"residual_tail must lie in [0, 1), got {self.residual_tail!r}")
        if not (isinstance(self.leader_prob, (int, float)) and not isinstance(self.leader_prob, bool)
                and 0.0 < self.leader_prob <= 1.0):
            raise ValueError(f"leader_prob must lie in (0, 1], got {self.leader_prob!r}")
        if not (isinstance(self.stop_level, (int, float)) and not isinstance(self.stop_level, bool)
                and 0.5 <= self.stop_level < 1.0):
            raise ValueError(f"stop_level must lie in [0.5, 1), got {self.stop_level!r}")
        for f in ("stop", "residual_eb", "batch_effects"):
            if not isinstance(getattr(self, f), bool):
                raise ValueError(f"{f} must be true or false, got {getattr(self, f)!r}")
        check_int("init", self.init, minimum=0)
        for f in ("top_m", "stop_top", "stop_every", "stop_min_pulls", "stop_samples"):
            check_positive_int(f, getattr(self, f))
        pop = self.population
        if pop != "auto" and (isinstance(pop, bool) or not isinstance(pop, (int, float)) or not math.isfinite(pop)
                              or not (pop == 0 or pop >= 1)):
            raise ValueError(f"population must be 0 (off), a number >= 1 of pulls per pass of paired sampling "
                             f"(N questions / batch) or 'auto', got {pop!r}")
        if pop not in (0, "auto") and self.residual_tail > 0:
            raise ValueError(f"population={pop!r} needs residual_tail=0 (the heavy-tailed residual does not model "
                             f"the finite question population), got residual_tail={self.residual_tail!r}")
        ws = self.warm_start
        if ws is not None and not isinstance(ws, str) and not (isinstance(ws, (list, tuple))):
            raise ValueError(f"warm_start must be a journal path or a list of {{'config', 'reward'}} records, got {ws!r}")


@dataclass(frozen=True)
class StructuredTopTwoOptions(StructuredTSOptions):
    """As :class:`StructuredTSOptions`, with top-two sampling on (``leader_prob=0.5``), the
    challenger drawn among a fresh sample's top ``top_m=5`` (the paper's Recall@5 is top-5
    identification). The heavy-tailed residual stays off (``residual_tail=0``): under the
    sampling ``tune`` uses (paired) it was significantly worse at 10% of grid calls on the
    tuning set and no better at 20% (docs/strategies.md, "10% of grid calls"). ``population="auto"``:
    under paired sampling Study and the bench replay set it to N / batch (the finite-population
    correction won on the tuning set, same section); made directly, the strategy runs with it off.
    ``batch_effects=True``: with that population, the question-batch offsets of paired sampling come
    off the rewards (won on the same tuning set with 2 questions per pull, the class's
    ``default_batch``: docs/strategies.md, "Question-batch offsets"); inactive without it."""

    leader_prob: float = 0.5
    top_m: int = 5
    population: int | str = "auto"
    batch_effects: bool = True


class _Design:
    """Feature layout: intercept, one block per knob, one block per interacting pair, proxy offset."""

    def __init__(self, names: Sequence[str], sizes: Sequence[int], interactions: str) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        p = len(self.sizes)
        pos = {n: i for i, n in enumerate(names)}
        spec = interactions.strip()
        if spec == "none":
            pairs: list[tuple[int, int]] = []
        elif spec in ("all", "auto"):
            pairs = [(a, b) for a in range(p) for b in range(a + 1, p) if self.sizes[a] > 1 and self.sizes[b] > 1]
            if spec == "auto":
                budget = _AUTO_MAX_FEATURES - 1 - sum(self.sizes)
                chosen = []
                for a, b in sorted(pairs, key=lambda ab: (self.sizes[ab[0]] * self.sizes[ab[1]], ab)):
                    if self.sizes[a] * self.sizes[b] <= budget:
                        chosen.append((a, b))
                        budget -= self.sizes[a] * self.sizes[b]
                pairs = sorted(chosen)
        else:
            pairs = []
            for item in spec.split(","):
                parts = [x.strip() for x in item.split("*")]
                if len(parts) != 2 or parts[0] not in pos or parts[1] not in pos or parts[0] == parts[1]:
                    raise ValueError(
                        f"interactions: {item.strip()!r} must name two different parameters as 'a*b'; "
                        f"parameters: {list(names)}"
                    )
                a, b = sorted((pos[parts[0]], pos[parts[1]]))
                if (a, b) not in pairs:
                    pairs.append((a, b))
        self.pairs = pairs
        self.main_off = []
        off = 1
        for s in self.sizes:
            self.main_off.append(off)
            off += s
        self.pair_off = []
        for a, b in pairs:
            self.pair_off.append(off)
            off += self.sizes[a] * self.sizes[b]
        self.proxy = off
        self.d = off + 1  # the proxy offset is always there; without proxy data its prior keeps it inert

    def active(self, coords: Sequence[int], *, proxy: bool = False) -> np.ndarray:
        idx = [0] + [o + int(c) for o, c in zip(self.main_off, coords)]
        idx += [o + int(coords[a]) * self.sizes[b] + int(coords[b]) for o, (a, b) in zip(self.pair_off, self.pairs)]
        if proxy:
            idx.append(self.proxy)
        return np.asarray(idx, dtype=np.intp)

    def active_rows(self, coords: np.ndarray) -> np.ndarray:
        """(m, k) feature indices of m configurations given as an (m, p) coordinate array."""
        cols = [np.zeros(len(coords), dtype=np.intp)]
        cols += [o + coords[:, j] for j, o in enumerate(self.main_off)]
        cols += [o + coords[:, a] * self.sizes[b] + coords[:, b] for o, (a, b) in zip(self.pair_off, self.pairs)]
        return np.stack(cols, axis=1)

    def score_all(self, beta: np.ndarray) -> np.ndarray:
        """Model value of every configuration, in mixed-radix order, by broadcasting (no index arrays)."""
        p = len(self.sizes)
        out = np.full(self.sizes, beta[0])
        for j, (o, s) in enumerate(zip(self.main_off, self.sizes)):
            shape = [1] * p
            shape[j] = s
            out += beta[o:o + s].reshape(shape)
        for o, (a, b) in zip(self.pair_off, self.pairs):
            shape = [1] * p
            shape[a], shape[b] = self.sizes[a], self.sizes[b]
            out += beta[o:o + self.sizes[a] * self.sizes[b]].reshape(shape)
        return out.reshape(-1)

    def score_many(self, beta: np.ndarray) -> np.ndarray:
        """(s, n_configs) values for a stack of s coefficient vectors."""
        s = beta.shape[0]
        p = len(self.sizes)
        out = np.broadcast_to(beta[:, 0].reshape([s] + [1] * p), (s, *self.sizes)).copy()
        for j, (o, size) in enumerate(zip(self.main_off, self.sizes)):
            shape = [s] + [1] * p
            shape[j + 1] = size
            out += beta[:, o:o + size].reshape(shape)
        for o, (a, b) in zip(self.pair_off, self.pairs):
            shape = [s] + [1] * p
            shape[a + 1], shape[b + 1] = self.sizes[a], self.sizes[b]
            out += beta[:, o:o + self.sizes[a] * self.sizes[b]].reshape(shape)
        return out.reshape(s, -1)


class StructuredTS(Strategy):
    """Thompson sampling on an additive-plus-pairwise Bayesian model over knob values."""

    name = "structured-ts"
    Options = StructuredTSOptions
    forgets = (Stationary, Discounted)  # Discounted: exponential forgetting of the regression
    online = True

    def __init__(self, space, *, seed=0, **options):
        super().__init__(space, seed=seed, **options)
        o = self.options
        self._gamma = float(self.stats_rule.gamma) if isinstance(self.stats_rule, Discounted) else 1.0
        self.design = _Design(space.names, space.sizes, o.interactions)
        d = self.design.d
        self.enumerate = len(space) <= _ENUMERATE_LIMIT
        self.prior_prec = np.empty(d)
        self.prior_prec[0] = 1.0
        self.prior_prec[1:self.design.pair_off[0] if self.design.pairs else self.design.proxy] = o.prior_scale ** -2
        if self.design.pairs:
            self.prior_prec[self.design.pair_off[0]:self.design.proxy] = o.interaction_scale ** -2
        self.prior_prec[self.design.proxy] = 0.5 ** -2
        self.gram = np.zeros((d, d))  # sum of weight * x x^T (weight 1 per target pull)
        self.xty = np.zeros(d)
        # per-configuration target statistics for the residual term (dense when enumerable)
        if self.enumerate:
            self.n_c = np.zeros(len(space))
            self.sum_c = np.zeros(len(space))
        self._ss_within = 0.0  # pooled within-configuration sum of squares, kept incrementally
        self._dof_within = 0
        self._warm_n = 0
        self._tot = [0, 0.0, 0.0]  # count, sum, sum of squares of target rewards
        self._tau2 = o.residual_scale ** 2
        self._population = float(o.population) if not isinstance(o.population, str) and self.enumerate else 0.0
        # batch_effects: raw sums of the target rewards (per configuration, per ordinal, of squares) and
        # the offset of each question batch (ordinal) that is taken off the rewards the model sees
        self._fx = bool(o.batch_effects and self._population and self._gamma == 1.0)
        self._fx_raw = np.zeros(len(space)) if self._fx else np.zeros(0)  # raw reward sum per configuration
        self._fx_ord = np.zeros(0)  # raw reward sum per ordinal k (the k-th pulls of every configuration)
        self._fx_sq = 0.0  # raw sum of squares
        self._delta = np.zeros(0)  # offset of question batch k, taken off every k-th pull's reward
        self._delta_cov = np.zeros((0, 0))  # its posterior covariance and the offsets' spread (read by the intervals)
        self._delta_s2d = 0.0
        self._fx_next = _EFFECTS_EVERY  # target pulls told at the next estimate
        # paired sampling: the sum of every configuration's k-th reward, per ordinal k (the k-th pulls of
        # all configurations saw the same questions); read only by the intervals (_question_offset)
        self._ord_sum = np.zeros(0)
        self._qo_cache: tuple[tuple[int, float], float] | None = None  # _question_offset per (pulls told, sigma^2)
        self._blend_key: tuple[float, float] | None = None
        self._blend_cache: tuple[np.ndarray, np.ndarray, np.ndarray] = (np.empty(0),) * 3
        self._blend_dirty: set[int] = set()
        self._wide_key: tuple[int, float, float] | None = None
        # heavy-tailed residual: model variance h_c = x_c^T C x_c of every pulled configuration,
        # kept exact through each rank-one update (O(pulled * k) per tell), rebuilt after a refactor
        self._lev_pos = np.full(len(space) if self.enumerate else 0, -1, dtype=np.intp)
        self._lev_cols = np.zeros((0, 0), dtype=np.intp)
        self._lev_h = np.zeros(0)
        self._lev_m = 0
        self._wide_cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] = (np.empty(0),) * 4
        self._factor()
        self._stop_cache: tuple[int, float] | None = None
        self._sweep_plan: list[Coords] = []  # stopping rule: unpulled configurations to verify first
        self._init_plan: list[Coords] = []
        if o.warm_start is not None:
            self._load_warm_start(o.warm_start)
        n_init = o.init or max(space.sizes)
        if n_init > 0:
            perms = [self.rng.permutation(max(n_init, s)) % s for s in space.sizes]
            self._init_plan = [tuple(int(perm[i]) for perm in perms) for i in range(n_init)]
            self._init_plan.reverse()

    # -- data ---------------------------------------------------------------------------------
    def _load_warm_start(self, source: Any) -> None:
        if isinstance(source, str):
            from autorag_hp.journal import read_journal

            _, records = read_journal(source)
            where = f"warm_start journal {source!r}"
        else:
            records, where = list(source), "warm_start"
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or "config" not in rec or "reward" not in rec:
                raise ValueError(f"{where}: record {i} must be a mapping with 'config' and 'reward', got {rec!r}")
            try:
                coords = self.space.coords(rec["config"])
            except ValueError as exc:
                raise ValueError(f"{where}: record {i}: {exc}") from None
            r = rec["reward"]
            if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
                raise ValueError(f"{where}: record {i}: reward must be a finite number, got {r!r}")
            self._add(coords, float(r), self.options.warm_weight, proxy=True)
            self._warm_n += 1

    def _add(self, coords: Coords, reward: float, weight: float, *, proxy: bool = False) -> None:
        idx = self.design.active(coords, proxy=proxy)
        self.gram[np.ix_(idx, idx)] += weight
        self.xty[idx] += weight * reward
        if self._gamma == 1.0 and (proxy or not self.enumerate):
            self._observe(idx, reward, weight)

    def _forget(self) -> None:
        """Discount everything learned so far by gamma (exponential forgetting, Discounted stats):
        the data part of the posterior precision fades toward the prior."""
        g = self._gamma
        self.gram *= g
        self.xty *= g
        if self.enumerate:
            self.n_c *= g
            self.sum_c *= g
            self._blend_key = None  # every configuration's weight changed
        self._ss_within *= g
        self._dof_within *= g
        self._tot = [x * g for x in self._tot]

    @one_blas_thread
    def _update(self, coords: Coords, reward: float, tag) -> None:
        if self._gamma < 1.0:
            self._forget()
        if self._fx:  # the model sees the reward less its question batch's offset
            i = self.space.index_of_coords(coords)
            k = int(self.n_c[i])  # this pull's ordinal among the configuration's pulls
            if k >= len(self._fx_ord):
                self._fx_ord = np.concatenate([self._fx_ord, np.zeros(max(k + 1 - len(self._fx_ord), 16))])
            self._fx_ord[k] += reward
            self._fx_raw[i] += reward
            self._fx_sq += reward * reward
            reward -= float(self._delta[k]) if k < len(self._delta) else 0.0
        self._add(coords, reward, 1.0)
        row = self.stats.row(coords)  # before the base class adds this reward
        if self._fx:  # the stats hold raw rewards: the own mean of the adjusted ones instead
            row = (self.n_c[i], self.sum_c[i]) if self.n_c[i] else None
        if row is not None:
            n, s = row[0], row[1]
            mean_old = s / n
            # Welford: the within-configuration sum of squares grows by n/(n+1) (x - mean)^2
            self._ss_within += n / (n + 1.0) * (reward - mean_old) ** 2
            self._dof_within += 1
        if self.enumerate:
            i = self.space.index_of_coords(coords)
            n0, s0 = self.n_c[i], self.sum_c[i]
            if self._population and self._gamma == 1.0:
                k = int(n0)  # this pull's ordinal among the configuration's pulls
                if k >= len(self._ord_sum):
                    self._ord_sum = np.concatenate([self._ord_sum, np.zeros(max(k + 1 - len(self._ord_sum), 16))])
                self._ord_sum[k] += reward
            self.n_c[i] += 1
            self.sum_c[i] += reward
            self._blend_dirty.add(i)
            if self._gamma == 1.0:
                self._observe_mean(self.design.active(coords), n0, s0, self.n_c[i], self.sum_c[i])
        t = self._tot
        t[0] += 1
        t[1] += reward
        t[2] += reward * reward
        if self._gamma < 1.0 or abs(self.noise_var() / self._s2 - 1.0) > _REFACTOR_DRIFT:
            # discounted: the whole precision moved, not by a rank-one term; otherwise the noise
            # estimate moved: redo the posterior at the new variance
            self._factor()
        if self._fx and self._tot[0] >= self._fx_next:
            self._batch_effects()
        if self.options.residual_eb and self.enumerate and self.n_told % 10 == 9:
            self._tau2 = max(self.options.residual_scale ** 2, self._residual_moment())
            if abs(self._tau2 - self._tau2_factored) > _REFACTOR_DRIFT * self._tau2_factored:
                self._factor()  # every configuration's weight in the regression moved

    def _batch_effects(self) -> None:
        """``batch_effects``: re-estimate the offset ``delta_k`` of every question batch (ordinal k)
        from the two-way view ``reward(c, k) = mu_c + delta_k + e`` of every target pull, and move
        the model to the rewards less the new offsets.

        With the configuration means absorbed, the raw per-ordinal sums S satisfy ``S - T ~ N(R
        delta, s_e^2 R)`` (T: per ordinal, the sum of the raw means of the configurations that had
        that pull; R = diag(m) - A, m_k those configurations, A_kl the sum of 1 / n_c over those with
        more than max(k, l) pulls). Moments give the noise variance ``s_e^2`` (two-way residual sum
        of squares) and the offsets' spread ``s_d^2 = (|d|^2 - s_e^2 tr R^+) / (K - 1)`` for the
        least-squares fit d = R^+ (S - T); the estimate is the posterior mean under the prior
        ``delta_k ~ N(0, s_d^2)`` conditioned on each pass's offsets summing to zero (the batches of
        a pass partition the questions; a batch not seen yet takes its prior share, and so do the
        N mod batch questions a pass of floor(P) whole batches leaves out, as P - floor(P) of a
        batch), so that a configuration that saw every question keeps its exact mean. Then every sum the model keeps
        (``sum_c``, ``xty``, the within sum of squares, the totals) moves to the new offsets and the
        posterior is refactored. Nothing moves while fewer than two ordinals are seen. The next
        estimate comes after max(10, K) more tells (an estimate costs O(K^3)).
        """
        pulled = np.flatnonzero(self.n_c)
        nn = self.n_c[pulled]
        t = nn.astype(np.intp)
        K = int(t.max())
        self._fx_next = self._tot[0] + max(_EFFECTS_EVERY, K)
        n_tot = float(nn.sum())
        dof = n_tot - len(pulled) - (K - 1)
        if K < 2 or dof < 1:
            return
        raw = self._fx_raw[pulled]
        S = self._fx_ord[:K]
        m, R = _ordinal_information(t, nn, K)
        lam, U = np.linalg.eigh(R)
        keep = lam > 1e-9 * max(float(lam[-1]), 1.0)
        rhs = U.T @ (S - _above(t, raw / nn, K))

        def rss(delta):  # two-way residual sum of squares at offsets delta (means re-fitted)
            cum = np.concatenate([[0.0], np.cumsum(delta)])
            adj = raw - cum[t]
            return self._fx_sq - 2.0 * float(delta @ S) + float(m @ (delta * delta)) - float(np.sum(adj * adj / nn))

        d = U[:, keep] @ (rhs[keep] / lam[keep])  # least squares, minimum norm
        s2e = max(rss(d), 0.0) / dof
        s2d = (float(d @ d) - s2e * float(np.sum(1.0 / lam[keep]))) / (K - 1)
        if not s2e > 0 or not s2d > 0:
            delta = np.zeros(K)
            self._delta_cov, self._delta_s2d = np.zeros((K, K)), 0.0  # (for the intervals) no offsets seen
        else:
            post = 1.0 / (np.maximum(lam, 0.0) / s2e + 1.0 / s2d)
            delta = U @ (post * rhs / s2e)
            V = (U * post) @ U.T
            per = max(int(math.floor(self._population)), 1)
            starts = range(0, K, per)
            B = np.zeros((len(starts), K))
            unseen = np.zeros(len(starts))
            for j, a in enumerate(starts):
                B[j, a:a + per] = 1.0
                # batches of this pass not seen yet, plus the questions a pass of floor(P) whole batches
                # leaves out (N mod batch of them: P - floor(P) of a batch, the same share of its variance)
                unseen[j] = max(a + per - K, 0) + (self._population - per)
            G = B @ V @ B.T + np.diag(unseen * s2d)
            delta = delta - V @ B.T @ np.linalg.solve(G, B @ delta)
            # for the intervals and the stopping rule: the offsets' posterior covariance, constraint included
            self._delta_cov, self._delta_s2d = V - V @ B.T @ np.linalg.solve(G, B @ V), float(s2d)
        old = np.zeros(K)
        old[:min(K, len(self._delta))] = self._delta[:K]
        self._delta = delta
        cum_new = np.concatenate([[0.0], np.cumsum(delta)])
        new_sum = raw - cum_new[t]
        self.xty += self._design_matrix(pulled).T @ (new_sum - self.sum_c[pulled])
        self.sum_c[pulled] = new_sum
        self._ss_within = max(rss(delta), 0.0)
        self._tot = [self._tot[0], float(raw.sum() - m @ delta),
                     self._fx_sq - 2.0 * float(delta @ S) + float(m @ (delta * delta))]
        if len(getattr(self, "_ord_sum", ())) >= K:  # the intervals' per-ordinal sums follow the rewards the model sees
            self._ord_sum[:K] += m * (old - delta)
        self._blend_key = None
        self._factor()

    def _residual_moment(self) -> float:
        """Method-of-moments estimate of the residual variance tau^2 (pull-weighted):
        E[n_c (mean_c - model_c)^2] = n_c tau^2 + sigma^2 (times the finite-population factor
        with ``population``) over pulled configurations."""
        pulled = np.flatnonzero(self.n_c)
        if len(pulled) < 10:
            return 0.0
        f = self.design.score_all(self._mu)[pulled]
        n = self.n_c[pulled]
        r = self.sum_c[pulled] / n - f
        noise = np.sum(self._own_s2(self._s2, n)) if self._population else len(pulled) * self._s2
        return float(max((np.sum(n * r * r) - noise) / n.sum(), 0.0))

    def noise_var(self) -> float:
        """Plug-in variance of one pull: pooled within-configuration, shrunk to the overall spread."""
        n, s, q = self._tot
        if n >= 2:
            overall = max((q - s * s / n) / (n - 1), 1e-6)
        else:
            overall = 0.25
        nu0 = 10.0
        return max((self._ss_within + nu0 * overall) / (self._dof_within + nu0), 1e-8)

    # -- posterior ----------------------------------------------------------------------------
    def _factor(self) -> None:
        """Recompute the posterior from the Gram matrix at the current noise variance.

        Keeps ``_root`` with root @ root.T = posterior covariance (the inverse transposed
        Cholesky factor of the precision) and the posterior mean ``_mu``.
        """
        s2 = self.noise_var()
        a = self.gram / s2
        b = self.xty / s2
        if self.enumerate and (self._tau2 > 0 or self._population):
            # The gram counts every pull of a configuration as independent evidence on the model
            # (n / s2); with the residual u_c the configuration's mean says only n / (s2 + n tau2)
            # about it. Take the difference out, so a configuration's pulls are not counted twice
            # (once in the model, once in the blend with its own mean).
            pulled = np.flatnonzero(self.n_c)
            if len(pulled):
                n = self.n_c[pulled]
                cut = n / s2 - n / (self._own_s2(s2, n) + n * self._tau2)
                x = self._design_matrix(pulled)
                a -= (x.T @ sparse.diags(cut) @ x).toarray()
                b -= x.T @ (cut * self.sum_c[pulled] / n)
        a[np.diag_indices_from(a)] += self.prior_prec
        chol = linalg.cholesky(a, lower=True, check_finite=False)
        root = linalg.solve_triangular(chol, np.eye(len(a)), lower=True, trans="T", check_finite=False)
        self._root = np.asfortranarray(root)
        self._mu = linalg.cho_solve((chol, True), b, check_finite=False)
        self._s2 = s2
        self._tau2_factored = self._tau2
        self._lev_reset()

    def _lev_reset(self) -> None:
        """Forget the tracked model variances (the posterior was refactored or reloaded)."""
        if self._lev_m:
            self._lev_pos[self._lev_pos >= 0] = -1
            self._lev_m = 0

    def _design_matrix(self, indices: np.ndarray) -> sparse.csr_matrix:
        """Sparse one-hot rows of the configurations with these indices (mixed-radix order)."""
        coords = np.stack(np.unravel_index(indices, self.space.sizes), axis=1)
        cols = self.design.active_rows(coords)  # ascending and distinct within a row
        m, k = cols.shape
        return sparse.csr_matrix((np.ones(m * k), cols.ravel(), np.arange(0, m * k + 1, k)),
                                 shape=(m, self.design.d))

    def _observe_mean(self, idx: np.ndarray, n0: float, s0: float, n1: float, s1: float) -> None:
        """A configuration's (count, sum) moved from (n0, s0) to (n1, s1): its mean counts in the
        regression with precision w(n) = n / (s2 f(n) + n tau2) (f = 1 without ``population``), so
        the posterior gains precision w(n1) - w(n0) at the pseudo-observation that moves
        w * mean = s / (s2 f(n) + n tau2) exactly."""
        s2, t2 = self._s2, self._tau2
        a0, a1 = self._own_s2(s2, n0), self._own_s2(s2, n1)  # s2 itself without ``population``
        dw = n1 / (a1 + n1 * t2) - n0 / (a0 + n0 * t2)
        if dw <= 0:
            return
        target = (s1 / (a1 + n1 * t2) - s0 / (a0 + n0 * t2)) / dw
        self._observe(idx, target, s2 * dw)

    def _observe(self, idx: np.ndarray, reward: float, weight: float) -> None:
        """Exact rank-one posterior update (Potter's square-root form, no factorisation): O(d^2)."""
        r = self._s2 / weight
        phi = self._root[idx].sum(axis=0)  # root.T @ x for the one-hot row x
        alpha = 1.0 / (phi @ phi + r)
        gamma = 1.0 / (1.0 + math.sqrt(alpha * r))
        s_phi = self._root @ phi  # = covariance @ x
        self._mu += alpha * s_phi * (reward - self._mu[idx].sum())
        self._root = _ger(-(alpha * gamma), s_phi, phi, a=self._root, overwrite_a=True)  # in place
        if self._lev_m:  # C -= alpha s s^T, so h_c -= alpha (x_c^T s)^2
            proj = s_phi[self._lev_cols[:self._lev_m]].sum(axis=1)
            self._lev_h[:self._lev_m] -= alpha * proj * proj

    def _sample_beta(self, rng: np.random.Generator, size: int | None = None) -> np.ndarray:
        d = self.design.d
        if size is None:
            return self._mu + self._root @ rng.standard_normal(d)
        return self._mu[None, :] + rng.standard_normal((size, d)) @ self._root.T

    def _own_s2(self, s2: float, n, *, floor: float = 1e-3):
        """sigma^2 as it enters the variance sigma^2 / n of a configuration's own mean over n pulls:
        with ``population`` P (paired sampling) times the finite-population factor
        max(1 - min(n, P) / P, floor); without it sigma^2 itself. (pareto-ts' covariate quality
        model takes floor 0: a configuration that saw every question keeps its own mean exactly.)"""
        p = self._population
        if not p:
            return s2
        if isinstance(n, np.ndarray):
            return s2 * np.maximum(1.0 - np.minimum(n, p) / p, floor)
        return s2 * max(1.0 - min(float(n), p) / p, floor)

    def _shrink(self, s2: float) -> tuple[np.ndarray, np.ndarray]:
        """Per configuration: weight k_c of its own mean against the model, and residual sd."""
        t2 = self._tau2
        if t2 == 0:
            return np.zeros_like(self.n_c), np.zeros_like(self.n_c)
        s2 = self._own_s2(s2, self.n_c)
        denom = self.n_c * t2 + s2
        return self.n_c * t2 / denom, np.sqrt(t2 * s2 / denom)

    def _blend(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(1 - k_c, k_c * own mean_c, residual sd_c), cached; one entry changes per tell."""
        key = (self._s2, self._tau2)
        if self._blend_key != key:
            k, sd = self._shrink(self._s2)
            own = np.divide(self.sum_c, self.n_c, out=np.zeros_like(self.sum_c), where=self.n_c > 0)
            self._blend_cache = (1.0 - k, k * own, sd)
            self._blend_key = key
            self._blend_dirty.clear()
        elif self._blend_dirty:
            one_minus_k, k_own, sd = self._blend_cache
            t2, s2 = self._tau2, self._s2
            for i in self._blend_dirty:
                n = self.n_c[i]
                s2i = self._own_s2(s2, n)
                k = n * t2 / (n * t2 + s2i) if t2 > 0 else 0.0
                one_minus_k[i] = 1.0 - k
                k_own[i] = k * self.sum_c[i] / n
                sd[i] = math.sqrt(t2 * s2i / (n * t2 + s2i)) if t2 > 0 else 0.0
            self._blend_dirty.clear()
        return self._blend_cache

    def _values(self, f: np.ndarray, xi: np.ndarray | None, u: np.ndarray | None = None) -> np.ndarray:
        """Configuration values: model f blended with each configuration's own mean (+ residual draw).

        With a heavy-tailed residual (``residual_tail`` > 0) a configuration's residual comes
        from the wide component with its posterior probability: a draw (``xi`` given) picks the
        component with the uniforms ``u``; the posterior mean (``xi`` None) averages the two.
        """
        one_minus_k, k_own, sd = self._blend()
        v = f * one_minus_k
        v += k_own
        wide = self._wide()
        if wide is None:
            if xi is not None:
                v += sd * xi
            return v
        w_one_minus_k, w_k_own, w_sd, prob = wide
        vw = f * w_one_minus_k
        vw += w_k_own
        if xi is None:
            return v + prob * (vw - v)
        if u is None:
            raise ValueError("residual_tail > 0: a posterior draw needs the uniforms that pick each component")
        return np.where(u < prob, vw + w_sd * xi, v + sd * xi)

    def _wide(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """Heavy-tailed residual: (1 - k_c, k_c * own mean_c, residual sd_c) under the wide
        component, and each configuration's posterior probability of the wide component, from
        its own mean's distance to the model's posterior mean (cached per tell); None when
        ``residual_tail`` is 0 or the space is not enumerated."""
        pi = self.options.residual_tail
        if pi <= 0 or not self.enumerate:
            return None
        key = (self.n_told, self._s2, self._tau2)
        if self._wide_key == key:
            return self._wide_cache
        s2, t2, b2 = self._s2, self._tau2, self.options.residual_wide ** 2
        n = self.n_c
        k = n * b2 / (n * b2 + s2)
        own = np.divide(self.sum_c, n, out=np.zeros_like(self.sum_c), where=n > 0)
        prob = np.full(len(n), float(pi))
        pulled = np.flatnonzero(n)
        if len(pulled):
            # The model's prediction for each configuration without its own pulls (they entered
            # the regression as one mean of precision w = n / (s2 + n t2)): leave-one-out
            # f_out = f + wh / (1 - wh) (f - mean), variance h / (1 - wh), h = x^T C x.
            pos = self._lev_pos[pulled]
            new = pulled[pos < 0]
            if len(new):  # first pulls since the last refactor: their h from the covariance root
                coords = np.stack(np.unravel_index(new, self.space.sizes), axis=1)
                cols = self.design.active_rows(coords)
                m0, m1 = self._lev_m, self._lev_m + len(new)
                if m1 > len(self._lev_h):
                    cap = max(2 * m1, 64)
                    self._lev_h = np.resize(self._lev_h, cap)
                    grown = np.zeros((cap, cols.shape[1]), dtype=np.intp)
                    if m0:
                        grown[:m0] = self._lev_cols[:m0]
                    self._lev_cols = grown
                self._lev_cols[m0:m1] = cols
                self._lev_h[m0:m1] = row_norms2(self._root, cols)
                self._lev_pos[new] = np.arange(m0, m1)
                self._lev_m = m1
                pos = self._lev_pos[pulled]
            h = self._lev_h[pos]
            f = self._mu[self._lev_cols[pos]].sum(axis=1)
            np_ = n[pulled]
            wh = np.minimum(np_ / (s2 + np_ * t2) * h, 0.999)
            d = own[pulled] - (f + wh / (1.0 - wh) * (f - own[pulled]))
            h_out = h / (1.0 - wh)
            ll = []
            for v in (t2, b2):
                var = v + s2 / np_ + h_out
                ll.append(-0.5 * d * d / var - 0.5 * np.log(var))
            prob[pulled] = 1.0 / (1.0 + (1.0 - pi) / pi * np.exp(ll[0] - ll[1]))
        self._wide_cache = (1.0 - k, k * own, np.sqrt(b2 * s2 / (n * b2 + s2)), prob)
        self._wide_key = key
        return self._wide_cache

    def _thompson_draw(self, exclude: int | None = None, top_m: int = 1) -> int:
        """Argmax of one posterior draw; with ``top_m`` > 1 a uniform pick among the draw's top m."""
        beta = self._sample_beta(self.rng)
        if not self.enumerate:
            return self._ascent(beta, exclude)
        f = self.design.score_all(beta)
        tail = self.options.residual_tail > 0
        xi = self.rng.standard_normal(len(f)) if self._tau2 > 0 or tail else None
        u = self.rng.random(len(f)) if tail else None
        v = self._values(f, xi, u)
        left = len(v)
        if self._population:  # a configuration that has seen every question is not proposed while others remain
            done = self.n_c >= math.floor(self._population)
            left -= int(done.sum())
            if left:
                v[done] = -np.inf
            else:
                left = len(v)
        if exclude is not None:
            v[exclude] = -np.inf
        if top_m > 1 and left > top_m:
            top = np.argpartition(-v, top_m - 1)[:top_m]
            top = np.sort(top[top != exclude]) if exclude is not None else np.sort(top)
            return int(top[self.rng.integers(len(top))])
        return argmax_random(v, self.rng)

    def _ascent(self, beta: np.ndarray, exclude: int | None) -> int:
        """Huge spaces: coordinate ascent on the sampled model from the best pulled configuration."""
        start = max(self.stats.items(), key=lambda item: item[1][1] / item[1][0])[0] \
            if len(self.stats) else tuple(int(self.rng.integers(s)) for s in self.space.sizes)
        cur = list(start)
        for _ in range(10):
            changed = False
            for j, size in enumerate(self.space.sizes):
                cand = np.repeat(np.asarray(cur)[None, :], size, axis=0)
                cand[:, j] = np.arange(size)
                vals = beta[self.design.active_rows(cand)].sum(axis=1)
                best = argmax_random(vals, self.rng)
                if best != cur[j]:
                    cur[j], changed = best, True
            if not changed:
                break
        idx = self.space.index_of_coords(cur)
        if exclude is not None and idx == exclude:
            j = int(self.rng.integers(len(cur)))
            cur[j] = (cur[j] + 1 + int(self.rng.integers(max(self.space.sizes[j] - 1, 1)))) % self.space.sizes[j]
            idx = self.space.index_of_coords(cur)
        return idx

    # -- ask ----------------------------------------------------------------------------------
    @one_blas_thread
    def propose(self) -> Proposal:
        """The next space-filling first pull (tag "init") while any is left, then a (top-two)
        Thompson draw (tag None)."""
        if self.options.stop:
            self._check_stop()
        if self._init_plan:
            return Proposal(self._init_plan[-1], "init")
        while self._sweep_plan:  # only with stop=True (see _check_stop)
            coords = self._sweep_plan[-1]
            if self.n_c[self.space.index_of_coords(coords)] == 0 and coords not in self.pending:
                return Proposal(coords, "verify")
            self._sweep_plan.pop()
        leader = self._thompson_draw()
        if self.options.leader_prob < 1.0 and self.rng.random() >= self.options.leader_prob:
            leader = self._thompson_draw(exclude=leader, top_m=self.options.top_m)
        return Proposal(self.space.coords_of_index(leader))

    def _commit(self, coords: Coords, tag) -> None:
        if tag == "init" and self._init_plan and self._init_plan[-1] == coords:
            self._init_plan.pop()
        elif tag == "verify" and self._sweep_plan and self._sweep_plan[-1] == coords:
            self._sweep_plan.pop()

    def _state(self) -> dict:
        out = {
            "gram": self.gram.tolist(), "xty": self.xty.tolist(), "root": self._root.tolist(), "mu": self._mu.tolist(),
            "s2": self._s2, "ss_within": self._ss_within, "dof_within": self._dof_within, "warm_n": self._warm_n,
            "tot": list(self._tot), "tau2": self._tau2, "tau2_factored": self._tau2_factored,
            "init_plan": [list(c) for c in self._init_plan],
        }
        if self.enumerate:
            out["n_c"] = self.n_c.tolist()
            out["sum_c"] = self.sum_c.tolist()
        if self._population:
            out["ord_sum"] = self._ord_sum.tolist()
        if self._sweep_plan:
            out["sweep_plan"] = [list(c) for c in self._sweep_plan]
        if self._fx:
            out.update(delta_cov=self._delta_cov.tolist(), delta_s2d=self._delta_s2d,
                       fx_raw=self._fx_raw.tolist(), fx_ord=self._fx_ord.tolist(), fx_sq=self._fx_sq,
                       delta=self._delta.tolist(), fx_next=self._fx_next)
        return out

    def _load(self, state) -> None:
        d = self.design.d
        arrays = {k: np.asarray(state[k], dtype=float) for k in ("gram", "xty", "root", "mu")}
        for k, shape in (("gram", (d, d)), ("xty", (d,)), ("root", (d, d)), ("mu", (d,))):
            if arrays[k].shape != shape:
                raise ValueError(f"state {k!r} has shape {arrays[k].shape}, the model needs {shape}")
        self.gram, self.xty, self._mu = arrays["gram"], arrays["xty"], arrays["mu"]
        self._root = np.asfortranarray(arrays["root"])
        self._s2 = float(state["s2"])
        self._ss_within = float(state["ss_within"])
        self._dof_within = state["dof_within"]
        self._warm_n = int(state["warm_n"])
        self._tot = list(state["tot"])
        self._tau2 = float(state["tau2"])
        self._tau2_factored = float(state["tau2_factored"])
        self._init_plan = [tuple(int(x) for x in c) for c in state["init_plan"]]
        self._sweep_plan = [tuple(int(x) for x in c) for c in state.get("sweep_plan", [])]
        if self.enumerate:
            self.n_c = np.asarray(state["n_c"], dtype=float)
            self.sum_c = np.asarray(state["sum_c"], dtype=float)
        # a state saved before the per-ordinal sums existed: the intervals omit the shared offset
        self._ord_sum = np.asarray(state.get("ord_sum", []), dtype=float)
        self._qo_cache = None
        k_fx = len(state["delta_cov"]) if "delta_cov" in state else 0
        self._delta_cov = np.asarray(state.get("delta_cov", []), dtype=float).reshape(k_fx, k_fx)
        self._delta_s2d = float(state.get("delta_s2d", 0.0))
        if self._fx:
            if "fx_raw" not in state:
                raise ValueError("state has no question-batch offsets (saved without batch_effects); "
                                 "load it into a strategy with batch_effects=false")
            self._fx_raw = np.asarray(state["fx_raw"], dtype=float)
            self._fx_ord = np.asarray(state["fx_ord"], dtype=float)
            self._fx_sq = float(state["fx_sq"])
            self._delta = np.asarray(state["delta"], dtype=float)
            self._fx_next = int(state["fx_next"])
        self._blend_key = None
        self._blend_dirty = set()
        self._wide_key = None
        self._lev_reset()
        self._stop_cache = None

    def _unpulled(self) -> np.ndarray:
        """Indices of the configurations with no pull told and none pending."""
        idx = np.flatnonzero(self.n_c == 0)
        if self.pending:
            asked = {self.space.index_of_coords(c) for c in self.pending}
            idx = np.array([i for i in idx if int(i) not in asked], dtype=np.intp)
        return idx

    def _check_stop(self) -> None:
        o = self.options
        n = self.n_told
        if n < o.stop_min_pulls or (n - o.stop_min_pulls) % o.stop_every or self._sweep_plan:
            return
        conf = self.stop_confidence()
        if conf >= o.stop_level:
            unpulled = self._unpulled()
            if unpulled.size or any(self.n_c[self.space.index_of_coords(c)] == 0 for c in self.pending):
                # the rule does not certify a configuration it never saw: pull every unpulled one
                # once (highest posterior mean first), then check again
                order = unpulled[np.argsort(-self.posterior_mean()[unpulled], kind="stable")]
                self._sweep_plan = [self.space.coords_of_index(int(i)) for i in order[::-1]]
                return
            raise SpaceExhausted(
                f"stopping rule: best({o.stop_top}) is within stop_epsilon={o.stop_epsilon} of the best "
                f"with posterior probability {conf:.3f} >= stop_level={o.stop_level} after {n} pulls"
            )

    def should_stop(self) -> bool:
        """Whether the stopping rule holds now (whatever ``stop`` says): at least ``stop_min_pulls``
        pulls, every configuration pulled at least once, and ``stop_confidence() >= stop_level``."""
        return (self.n_told >= self.options.stop_min_pulls and not (self.enumerate and (self.n_c == 0).any())
                and self.stop_confidence() >= self.options.stop_level)

    @one_blas_thread
    def stop_confidence(self) -> float:
        """Posterior probability that each of ``best(stop_top)`` is within ``stop_epsilon`` of the
        ``stop_top``-th best configuration (Monte Carlo with ``stop_samples`` joint draws; under
        paired sampling plus the shared question offsets and :meth:`_knob_question_draws`).

        Uses its own generator seeded by (seed, pulls told), never ``self.rng``.
        """
        if self._stop_cache is not None and self._stop_cache[0] == self.n_told:
            return self._stop_cache[1]
        if not self.enumerate:
            raise NotImplementedError("the stopping rule needs a space of at most 250,000 configurations")
        o = self.options
        x = min(o.stop_top, len(self.space))
        rng = generator("stopping", self.seed, self.n_told)
        picks = self._ranked_indices(x)
        shared = self._offset_draws()  # paired sampling: the question offsets all configurations share
        hits = 0
        chunk = max(1, min(o.stop_samples, 2_000_000 // max(len(self.space), 1)))
        done = 0
        while done < o.stop_samples:
            m = min(chunk, o.stop_samples - done)
            f = self.design.score_many(self._sample_beta(rng, m))
            tail = o.residual_tail > 0
            xi = rng.standard_normal(f.shape) if self._tau2 > 0 or tail else None
            v = self._values(f, xi, rng.random(f.shape) if tail else None)
            if shared is not None:
                v += rng.standard_normal((m, shared.shape[0])) @ shared
            if self._population:  # paired sampling: knob x question errors shared across configurations
                v += self._knob_question_draws(rng, m)
            if x == 1:
                kth = v.max(axis=1)
            else:
                kth = -np.partition(-v, x - 1, axis=1)[:, x - 1]
            ok = (v[:, picks] >= (kth - o.stop_epsilon)[:, None]).all(axis=1)
            hits += int(ok.sum())
            done += m
        conf = hits / o.stop_samples
        self._stop_cache = (self.n_told, conf)
        return conf

    # -- recommendation -----------------------------------------------------------------------
    def _question_offset(self) -> float:
        """Paired sampling (``population`` > 0): the variance ``sigma_d^2`` of the shared offset of
        one batch of questions, by moments from the two-way view ``reward(c, k) = mu_c + d_k + e``
        of every configuration's k-th pull (the k-th pulls of all configurations saw the same
        questions, so their question difficulty ``d_k`` is common to all of them).

        The ordinal effects are the least-squares fit with the configuration means absorbed,
        ``R d = S - T`` (R the reduced information matrix, S the per-ordinal reward sums, T the
        sums of the means of the configurations that had a k-th pull), whose minimum-norm
        solution sums to zero; ``e``'s variance comes from the two-way residual sum of squares;
        and ``sigma_d^2 = (sum_k d_k^2 - var_e tr(R^+)) / (K - 1)``: the spread of the K seen
        batch effects less what the fit's own noise adds (an unbiased moment under the finite
        population too: K of the P batch means of a pass). With one ordinal nothing separates
        the shared part from the noise and the pooled noise variance itself is returned (all of
        it could be shared); 0 without ``population`` or when the per-ordinal sums do not cover
        every pull (a state saved before they existed).
        """
        if not self._population or not self.enumerate or self._gamma != 1.0:
            return 0.0
        if self._qo_cache is not None and self._qo_cache[0] == (self.n_told, self._s2):
            return self._qo_cache[1]
        value = self._question_offset_now()
        self._qo_cache = ((self.n_told, self._s2), value)
        return value

    def _question_offset_now(self) -> float:
        """:meth:`_question_offset` computed from the current sums (it caches this per tell)."""
        pulled = np.flatnonzero(self.n_c)
        if not len(pulled):
            return 0.0
        nn = self.n_c[pulled]
        t = nn.astype(np.intp)
        K = int(t.max())
        S = self._ord_sum[:K]
        if len(S) < K or abs(S.sum() - self.sum_c[pulled].sum()) > 1e-6 * (1.0 + abs(S.sum())):
            return 0.0
        if K < 2:
            return float(self._s2)
        ybar = self.sum_c[pulled] / nn
        _, R = _ordinal_information(t, nn, K)
        # R's null space is the constant vector (every ordinal is tied to the first by a configuration
        # with more pulls), so R^+ = (R + J/K)^-1 - J/K: one Cholesky instead of an eigendecomposition
        j = np.full((K, K), 1.0 / K)
        Rp = linalg.cho_solve(linalg.cho_factor(R + j, check_finite=False), np.eye(K), check_finite=False) - j
        d = Rp @ (S - _above(t, ybar, K))
        D = np.cumsum(d)[t - 1] / nn  # each configuration's mean offset
        rss = self._tot[2] - float(np.sum(nn * ybar * (ybar - D))) - float(d @ S)
        dof = self._tot[0] - len(pulled) - (K - 1)
        var_e = max(rss, 0.0) / dof if dof >= 1 else float(self._s2)
        return max((float(d @ d) - var_e * float(np.trace(Rp))) / (K - 1), 0.0)

    def _offset_gains(self) -> np.ndarray:
        """(K, configurations): ``g_ck``, how each configuration's posterior mean value moves per unit of
        the k-th question batch's shared offset (K = the most pulls any configuration has):
        ``g_ck = (1 - k_c) x_c^T C u_k + k_c [k < n_c] / n_c``, ``u_k = sum_(j: n_j > k) w_j x_j / n_j``
        (the row sums over k of :meth:`_mean_weights`'s L_cj [k < n_j] / n_j, for every configuration)."""
        pulled = np.flatnonzero(self.n_c)
        nn = self.n_c[pulled]
        t = nn.astype(np.intp)
        K = int(t.max())
        w = nn / (self._own_s2(self._s2, nn) + nn * self._tau2)
        x = self._design_matrix(pulled)
        by_n = sparse.csr_matrix((w / nn, (np.arange(len(t)), t - 1)), shape=(len(t), K))
        u = (x.T @ by_n).toarray()[:, ::-1].cumsum(axis=1)[:, ::-1]  # column k: configurations with > k pulls
        cu = self._root @ (self._root.T @ u)
        k, _ = self._shrink(self._s2)
        seen = (np.arange(K)[:, None] < self.n_c[None, :]) / np.maximum(self.n_c, 1.0)[None, :]
        return self.design.score_many(cu.T) * (1.0 - k)[None, :] + k[None, :] * seen

    def _offset_cov(self, K: int) -> tuple[np.ndarray, bool] | None:
        """Covariance of the shared question-batch offsets left in the rewards the model holds, for
        ordinals 0 .. K-1, and whether they are the raw offsets (then sigma^2 already holds each
        configuration's own share); None: no such term (no ``population``, or no offset seen).

        Raw rewards (``batch_effects`` off, or before its first estimate): the batch effects of one
        pass are means of disjoint batches drawn without replacement from the N = P * batch
        questions, ``Cov(d_k, d_l) = sigma_d^2 ([k = l] - 1 / P)`` within a pass, 0 across passes
        (``sigma_d^2`` from :meth:`_question_offset`). With ``batch_effects`` the offsets taken off
        are estimates: what is left is their estimation error, with the posterior covariance
        ``_batch_effects`` computed (the unknown level of the seen batches included), and the
        prior spread for ordinals seen since.
        """
        if self._fx and len(self._delta_cov):
            kd = len(self._delta_cov)
            m = min(K, kd)
            cov = np.zeros((K, K))
            cov[:m, :m] = self._delta_cov[:m, :m]
            late = np.arange(kd, K)
            cov[late, late] = self._delta_s2d
            return (cov, False) if cov.any() else None
        s2d = self._question_offset()
        if s2d <= 0:
            return None
        p = self._population
        epoch = np.arange(K) // max(int(math.floor(p)), 1)
        return s2d * (np.eye(K) - (epoch[:, None] == epoch[None, :]) / p), True

    def _knob_question_draws(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """Paired sampling: ``m`` draws of every configuration's knob x question error. Every
        configuration's k-th pull sees the same questions, so what a knob value gains or loses on
        the questions seen so far is shared by every configuration with that value; it averages
        out only over distinct questions. Per knob j and value v, a per-batch effect
        z ~ N(0, s^2 / D) (s^2: the noise variance of one pull, an upper bound on its shared
        part, split over the D knobs); a configuration with n pulls (at least 1: the model speaks
        for the unpulled from the first batches) carries sum_j mean(z_{j,v_j,1..n}) -
        mean(z_{j,v_j,1..P}) (ceil(P) batches), variance s^2 (1/n - 1/P): zero once it has seen
        every question."""
        P = self._population
        K = max(int(math.ceil(P)), 1)
        sizes = self.space.sizes
        sd = math.sqrt(self.noise_var() / len(sizes))
        coords = np.unravel_index(np.arange(len(self.space)), sizes)
        n = np.clip(self.n_c.astype(np.intp), 1, K) - 1
        out = np.zeros((m, len(self.space)))
        for j, size in enumerate(sizes):
            cum = np.cumsum(rng.standard_normal((m, size, K)) * sd, axis=2) / np.arange(1, K + 1)
            cum -= cum[:, :, -1:]
            out += cum[:, coords[j], n]
        return out

    def _offset_draws(self) -> np.ndarray | None:
        """Paired sampling: B (K x configurations) such that ``z @ B``, z ~ N(0, I_K), draws how the
        shared offsets left in the K seen question batches (:meth:`_offset_cov`) move every
        configuration's posterior mean value (through :meth:`_offset_gains`); None without such
        offsets. The stopping rule adds these draws to its joint posterior draws: the
        configurations' means are not independent when they saw the same questions. (With raw
        rewards each configuration's own offset variance is then counted twice, once in sigma^2:
        the rule errs on the side of not stopping.)"""
        if not self._population or not self.n_c.any():
            return None
        g = self._offset_gains()
        oc = self._offset_cov(len(g))
        if oc is None:
            return None
        cov = oc[0]
        # a Cholesky root (with a jitter for the singular case of a complete pass) rather than an
        # eigendecomposition, whose eigenvectors within a repeated eigenvalue are arbitrary: the same
        # state gives the same draws on any machine
        root = linalg.cholesky(cov + 1e-12 * max(float(np.trace(cov)), 1e-300) * np.eye(len(cov)), lower=True,
                               check_finite=False)
        return root.T @ g

    def _mean_weights(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pulled configurations (indices, ascending) and, for each configuration in ``idx``, the
        weight ``L_cj`` of each pulled configuration's own mean in its posterior mean value:
        ``L_cj = (1 - k_c) x_c^T C x_j w_j + k_c [j = c]``, ``w_j = n_j / (sigma^2 f(n_j) + n_j tau^2)``
        (the precision of mean_j in the regression; at the last factorisation's sigma^2)."""
        idx = np.asarray(idx, dtype=np.intp)
        pulled = np.flatnonzero(self.n_c)
        nn = self.n_c[pulled]
        w = nn / (self._own_s2(self._s2, nn) + nn * self._tau2)
        coords = np.stack(np.unravel_index(idx, self.space.sizes), axis=1)
        cx = self._root[self.design.active_rows(coords)].sum(axis=1) @ self._root.T  # rows: C x_c
        cols = self.design.active_rows(np.stack(np.unravel_index(pulled, self.space.sizes), axis=1))
        k, _ = self._shrink(self._s2)
        kc = k[idx]
        L = (1.0 - kc)[:, None] * cx[:, cols].sum(axis=2) * w[None, :]
        j = np.searchsorted(pulled, idx)
        own = (j < len(pulled)) & (pulled[np.minimum(j, len(pulled) - 1)] == idx)
        L[np.flatnonzero(own), j[own]] += kc[own]
        return pulled, L

    def _offset_var(self, idx: np.ndarray) -> np.ndarray:
        """Variance that the shared question offsets of paired sampling add to the posterior mean
        value of each configuration in ``idx`` (zeros without them).

        A configuration's value is linear in the pulled configurations' means,
        ``v_c = sum_j L_cj mean_j`` (:meth:`_mean_weights`), and mean_j carries the offset ``D_j``,
        the mean of the offsets of its first n_j batches (covariance :meth:`_offset_cov`). With raw
        rewards the one-way posterior already holds ``Var(D_j)`` (sigma^2 is the spread of a
        configuration's pulls, offsets included) but takes the means of different configurations
        as independent: the term is ``Var(sum_j L_cj D_j) - sum_j L_cj^2 Var(D_j)``, their
        covariances. With ``batch_effects`` the offsets' estimation error is in no variance of the
        model (sigma^2 is the spread of the corrected rewards): the term is ``Var(sum_j L_cj D_j)``.
        """
        idx = np.asarray(idx, dtype=np.intp)
        if not self._population or not self.n_c.any():
            return np.zeros(len(idx))
        pulled = np.flatnonzero(self.n_c)
        nn = self.n_c[pulled]
        t = nn.astype(np.intp)
        K = int(t.max())
        oc = self._offset_cov(K)
        if oc is None:
            return np.zeros(len(idx))
        cov, raw = oc
        pulled, L = self._mean_weights(idx)
        # g_k = sum_j L_cj [k < n_j] / n_j: how v_c moves per unit of the k-th batch's offset
        g = np.stack([_above(t, row / nn, K) for row in L])
        total = np.einsum("ik,kl,il->i", g, cov, g)
        if raw:  # less each mean's own offset variance, h_j^T cov h_j with h_j = [k < n_j] / n_j
            corner = cov.cumsum(axis=0).cumsum(axis=1)[t - 1, t - 1]
            total = total - (L * L) @ (corner / (nn * nn))
        return np.maximum(total, 0.0)

    @one_blas_thread
    def posterior_mean(self) -> np.ndarray:
        """Posterior mean value of every configuration, in index order."""
        if not self.enumerate:
            raise NotImplementedError("posterior_mean needs a space of at most 250,000 configurations")
        return self._values(self.design.score_all(self._mu), None)

    def _ranked_indices(self, n: int) -> np.ndarray:
        v = self.posterior_mean()
        jitter = self._tiebreak_rng().random(len(v))
        if n < len(v):
            cand = np.argpartition(-v, n - 1)[:n]
            thr = v[cand].min()
            cand = np.flatnonzero(v >= thr)
        else:
            cand = np.arange(len(v))
        order = np.lexsort((jitter[cand], -self.n_c[cand], -v[cand]))
        return cand[order][:n]

    @one_blas_thread
    def best(self, n: int = 1) -> list[Recommendation]:
        """Top ``n`` configurations by posterior mean, with ``confidence`` credible intervals."""
        n = self._check_n(n)
        if not self.enumerate:
            return super().best(n)
        if self.n_told == 0 and self._warm_n == 0:
            return self._fill(n, [])
        idx = self._ranked_indices(n)
        k, sd = self._shrink(self._s2)
        v = self.posterior_mean()
        z = self._z()
        wide = self._wide()
        shared = self._offset_var(idx)  # paired sampling: the questions all configurations shared
        out = []
        for i, extra in zip(idx, shared):
            coords = self.space.coords_of_index(int(i))
            act = self.design.active(coords)
            w = self._root[act].sum(axis=0)  # model variance x^T C x = |root.T x|^2
            model_var = float(w @ w)
            var = (1.0 - k[i]) ** 2 * model_var + float(sd[i]) ** 2 + float(extra)
            if wide is None:
                half = z * math.sqrt(max(var, 0.0))
                lo, hi = float(v[i]) - half, float(v[i]) + half
            else:  # the posterior is a two-Gaussian mixture: its central interval, by bisection
                w_one_minus_k, w_k_own, w_sd, prob = wide
                f_i = float(self._mu[act].sum())
                centres = np.array([[f_i * (1.0 - k[i]) + k[i] * (self.sum_c[i] / self.n_c[i] if self.n_c[i] else 0.0)],
                                    [f_i * w_one_minus_k[i] + w_k_own[i]]])
                sds = np.sqrt(np.maximum([[var], [w_one_minus_k[i] ** 2 * model_var + w_sd[i] ** 2]], 0.0))
                weights = np.array([[1.0 - prob[i]], [prob[i]]])
                tail = (1.0 - self.confidence) / 2
                lo = min(float(normal_mixture_quantile(weights, centres, sds, tail)[0]), float(v[i]))
                hi = max(float(normal_mixture_quantile(weights, centres, sds, 1.0 - tail)[0]), float(v[i]))
            out.append(Recommendation(self.space.config_from_coords(coords), float(v[i]), pull_count(self.n_c[i]),
                                      lo, hi))
        return out


class StructuredTopTwo(StructuredTS):
    """Top-two Thompson sampling (Russo 2016) on the structured model: best-arm identification."""

    name = "structured-tt"
    default_sampling = "paired"  # chosen on the tuning set: docs/strategies.md, "10% of grid calls"
    default_batch = 2  # chosen with batch_effects on the same tuning set: same docs, "Question-batch offsets"
    Options = StructuredTopTwoOptions
