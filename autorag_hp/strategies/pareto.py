"""Pareto-set identification on two structured models (quality, cost), and best(w) for every w.

Two structured Bayesian models (:class:`~autorag_hp.strategies.structured.StructuredTS`'s
additive-plus-pairwise ANOVA model) learn, over knob values, a configuration's mean quality
and its log prompt tokens (tokens are close to a product of knob effects, chunk size x top-k
x compression, so their logarithm is close to additive). After a short space-filling start,
each pull is one of (by default, chosen on seeds 100-119: docs/metrics.md):

* a **hull pull** (``hull_prob=0.5`` of the pulls): the least-pulled configuration, among those
  not yet fully seen, that ``best(w)`` answers for some ``w`` (the upper convex hull of the
  posterior means). Under paired sampling such a configuration is pulled until it has seen
  every question, so the answers of ``best(w)``, which hinge on gaps of 0.001-0.003 between
  neighbours, are read from exact means;
* otherwise a **Pareto-set identification pull** (``psi_prob=1.0`` of the rest), after APE
  (Kone, Kaufmann & Richert 2023): the configuration off the front of posterior means most
  likely to be Pareto-optimal, or the configuration whose estimate hides it, the less pulled
  of the two (:meth:`ParetoTS._psi_pick`);
* with ``psi_prob`` below 1, the rest are Thompson sampling on a random scalarisation: a weight
  ``l`` uniform on ``[w_low, w_high]``, one posterior sample of both models, the argmax of the
  sampled reward ``l * quality - (1 - l) * tokens / t_max`` (Paria, Kandasamy & Póczos 2019,
  "A Flexible Framework for Multi-Objective Bayesian Optimization using Random Scalarizations",
  UAI), top-two (``leader_prob=0.3``); ``scalarisation="chebyshev"`` plays
  ``min(l * quality', (1 - l) * cheapness')`` on values rescaled to [0, 1] instead. This was the
  default before: it found less of the front (0.665 against 0.769 on SQuAD, 0.862 against 0.919
  on the default grid, seeds 0-9, docs/metrics.md).

Tell it both objectives with :meth:`ParetoTS.tell_objectives`; a plain ``tell(config,
reward)`` teaches the quality model only. :meth:`ParetoTS.pareto_set` gives the front of the
posterior means (with credible intervals), and ``best(n, w=...)`` answers for any ``w``
without new pulls. Give it paired question sampling (``sampling="paired"`` of the objective,
:func:`autorag_hp.objective.paired_questions`): the front is a set of comparisons between
configurations, and on the default and SQuAD grids it raised the front's recall by 0.06-0.08
(docs/metrics.md). Under paired sampling (``population="auto"``, resolved by Study and the bench
replay) both models know that a configuration's first N / batch pulls see disjoint questions, so
a fully seen configuration has exact means and no rule pulls it again while others remain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from autorag_hp._seeds import generator
from autorag_hp._threads import one_blas_thread
from autorag_hp._validation import check_number, check_positive_int
from autorag_hp.objective import check_reward, check_t_max, check_w, reward
from autorag_hp.pareto import pareto_mask
from autorag_hp.strategies._base import Coords, Proposal, Recommendation, Strategy, argmax_random, pull_count
from autorag_hp.strategies.structured import StructuredTS, StructuredTSOptions

__all__ = ["ParetoTS", "ParetoTSOptions"]


@dataclass(frozen=True)
class ParetoTSOptions(StructuredTSOptions):
    """The structured model's options (shared by both models; see :mod:`.structured`), plus:
    ``w_low``/``w_high``: the range of the per-pull scalarisation weight; ``w``: the weight
    ``best(n)`` ranks by when none is given; ``t_max``: the token scale of the reward
    (``w * quality - (1 - w) * tokens / t_max``; None: the largest pull mean told so far);
    ``scalarisation``: "linear" or "chebyshev"; ``residual_scale`` (the quality model's
    floor on a configuration's deviation from the additive model) defaults to 0.05 here, not
    0.02: the grids' quality fronts have configurations the additive model misses by 0.1 or
    more, and a wider residual lets their own pulls count; ``leader_prob`` (a model option) below 1 plays
    top-two sampling on the scalarised draws, as ``structured-tt`` (0.3 here: with ``population``
    it won on seeds 100-119, docs/metrics.md); ``population`` (both models; "auto": Study and the
    bench replay set it to N / batch under paired sampling, as for ``structured-tt``): a
    configuration whose pulls have seen every question has exact means and is not proposed
    again while others remain; ``front_prob``: the chance that a pull instead
    plays a uniform pick from the sampled Pareto front (Pareto Thompson sampling, Yahyaa &
    Manderick 2015, "Thompson Sampling for Multi-Objective Multi-Armed Bandits Problem");
    ``hull_prob``: the chance that a pull plays the least-pulled configuration, not yet fully
    seen, that ``best(w)`` ranks first for some ``w`` (:meth:`ParetoTS._hull_pick`);
    ``psi_prob``: the chance that a pull that is not a hull pull plays the Pareto-set
    identification rule (:meth:`ParetoTS._psi_pick`, after APE, Kone et al. 2023), its front
    probabilities from ``psi_draws`` joint posterior draws, ``psi_eps`` the quality (and tokens /
    t_max) gap under which two configurations are a tie (the recall metric's 0.005); the rest are
    scalarised pulls. ``hull_prob=0.5``, ``psi_prob=1.0`` (no scalarised pulls) won on seeds
    100-119 against the scalarised pulls alone (``hull_prob=0``, ``psi_prob=0``, the defaults
    before): a higher recall of the front on both grids, and no ``best(w)`` regret more than
    0.001 worse (docs/metrics.md);
    ``cost_prior_scale``/``cost_interaction_scale``/``cost_residual_scale``: the cost model's
    prior standard deviations, in log-token units (the model options above are quality's)."""

    w_low: float = 0.0
    w_high: float = 1.0
    w: float = 0.9
    t_max: float | None = None
    scalarisation: str = "linear"
    residual_scale: float = 0.05
    front_prob: float = 0.0
    leader_prob: float = 0.3
    population: int | str = "auto"
    psi_prob: float = 1.0
    hull_prob: float = 0.5
    psi_draws: int = 32
    psi_eps: float = 0.005
    cost_prior_scale: float = 1.0
    cost_interaction_scale: float = 0.3
    cost_residual_scale: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_w(self.w_low, name="w_low")
        check_w(self.w_high, name="w_high")
        check_w(self.w, name="w")
        if self.w_low > self.w_high:
            raise ValueError(f"w_low <= w_high must hold, got (w_low={self.w_low}, w_high={self.w_high})")
        if self.t_max is not None:
            check_t_max(self.t_max)
        if self.scalarisation not in ("chebyshev", "linear"):
            raise ValueError(f"scalarisation must be 'chebyshev' or 'linear', got {self.scalarisation!r}")
        for f in ("front_prob", "psi_prob", "hull_prob"):
            check_number(f, getattr(self, f), low=0.0, high=1.0)
        check_positive_int("psi_draws", self.psi_draws)
        check_number("psi_eps", self.psi_eps, low=0.0, high=1.0, high_open=True)
        if self.stop or self.warm_start is not None:
            raise ValueError("pareto-ts supports neither stop nor warm_start")


class ParetoTS(Strategy):
    """Thompson sampling on random scalarisations of a quality and a cost model."""

    name = "pareto-ts"
    Options = ParetoTSOptions
    default_sampling = "paired"  # chosen on seeds 100-119: docs/metrics.md, "The front"

    def __init__(self, space, *, seed: int = 0, **options: Any) -> None:
        super().__init__(space, seed=seed, **options)
        o = self.options
        model = {f: getattr(o, f) for f in StructuredTSOptions.__dataclass_fields__}
        model["init"] = 0  # the space-filling plan is this strategy's own
        self.quality = StructuredTS(space, seed=seed, **model)
        self.cost = StructuredTS(space, seed=seed, **{**model, "prior_scale": o.cost_prior_scale,
                                                      "interaction_scale": o.cost_interaction_scale,
                                                      "residual_scale": o.cost_residual_scale})
        if not self.quality.enumerate:
            raise ValueError(f"pareto-ts needs a space of at most 250,000 configurations, got {len(space)}")
        n_init = o.init or max(space.sizes)
        perms = [self.rng.permutation(max(n_init, s)) % s for s in space.sizes]
        self._init_plan: list[Coords] = [tuple(int(p[i]) for p in perms) for i in range(n_init)]
        self._init_plan.reverse()
        self._told_cost: float | None = None
        # every configuration's coordinates, in index (mixed-radix) order, for the posterior sd
        self._all_coords = np.stack(np.unravel_index(np.arange(len(space)), space.sizes), axis=1)
        self._max_tokens = 0.0

    # -- ask ------------------------------------------------------------------------------
    def _draw(self, model: StructuredTS) -> np.ndarray:
        f = model.design.score_all(model._sample_beta(self.rng))
        tail = model.options.residual_tail > 0
        xi = self.rng.standard_normal(len(f)) if model._tau2 > 0 or tail else None
        return model._values(f, xi, self.rng.random(len(f)) if tail else None)

    def _exhausted(self) -> np.ndarray | None:
        """With ``population`` P: the configurations whose pulls have seen every question
        (n >= floor(P): their means are exact), which are not proposed while others remain;
        None without ``population`` or when every configuration is exhausted."""
        p = self.quality._population
        if not p:
            return None
        done = self.quality.n_c >= math.floor(p)
        return done if not done.all() else None

    @one_blas_thread
    def propose(self) -> Proposal:
        """The next space-filling first pull (tag "init"), then with ``hull_prob`` a hull pull
        (tag "hull"), else with ``psi_prob`` a Pareto-set identification pull (tag "psi"), else
        the argmax of a random scalarisation of one posterior draw of each model (tag: the weight
        drawn); with ``population``, never a configuration whose pulls have seen every question
        while others remain."""
        if self._init_plan:
            return Proposal(self._init_plan[-1], "init")
        if self.options.hull_prob and self.rng.random() < self.options.hull_prob:
            pick = self._hull_pick()
            if pick is not None:
                return Proposal(self.space.coords_of_index(pick), "hull")
        w = float(self.rng.uniform(self.options.w_low, self.options.w_high))
        q, log_t = self._draw(self.quality), self._draw(self.cost)
        done = self._exhausted()
        if self.options.psi_prob and self.rng.random() < self.options.psi_prob:
            return Proposal(self.space.coords_of_index(self._psi_pick(done)), "psi")
        if self.options.front_prob and self.rng.random() < self.options.front_prob:
            # Pareto Thompson sampling (Yahyaa & Manderick 2015): uniform over the sampled front.
            on_front = pareto_mask(np.column_stack([q, log_t]), [1, -1])
            if done is not None and (on_front & ~done).any():
                on_front &= ~done
            front = np.flatnonzero(on_front)
            pick = int(front[self.rng.integers(len(front))])
            return Proposal(self.space.coords_of_index(pick), round(w, 6))
        v = self._scalarise(w, q, log_t)
        if done is not None:
            v[done] = -np.inf
        leader = argmax_random(v, self.rng)
        if self.options.leader_prob < 1.0 and self.rng.random() >= self.options.leader_prob:
            # top-two (Russo 2016), as structured-tt: the argmax of a fresh draw, the leader masked out
            v = self._scalarise(w, self._draw(self.quality), self._draw(self.cost))
            if done is not None:
                v[done] = -np.inf
            if np.isfinite(np.delete(v, leader)).any():
                v[leader] = -np.inf
                leader = argmax_random(v, self.rng)
        return Proposal(self.space.coords_of_index(leader), round(w, 6))

    def _draws(self, model: StructuredTS, k: int) -> np.ndarray:
        """(k, configurations) joint posterior draws of ``model``'s values."""
        f = model.design.score_many(model._sample_beta(self.rng, k))
        tail = model.options.residual_tail > 0
        xi = self.rng.standard_normal(f.shape) if model._tau2 > 0 or tail else None
        return model._values(f, xi, self.rng.random(f.shape) if tail else None)

    @one_blas_thread
    def front_probability(self, draws: int | None = None, *, eps: float | None = None) -> np.ndarray:
        """Per configuration, the share of ``draws`` joint posterior draws of both models (default
        the ``psi_draws`` option) in which no configuration that costs no more tokens beats its
        quality by more than ``eps`` (default ``psi_eps``; 0: plain Pareto optimality). Draws from
        the strategy's own generator."""
        k = self.options.psi_draws if draws is None else check_positive_int("draws", draws)
        eps = self.options.psi_eps if eps is None else check_number("eps", eps, low=0.0, high=1.0, high_open=True)
        q, t = self._draws(self.quality, k), self._draws(self.cost, k)
        order = np.lexsort((-q, t))  # per draw: cheapest first, better quality first among equals
        qs = np.take_along_axis(q, order, axis=1)
        before = np.concatenate([np.full((k, 1), -np.inf), np.maximum.accumulate(qs, axis=1)[:, :-1]], axis=1)
        ok = np.zeros(q.shape, dtype=bool)
        np.put_along_axis(ok, order, before <= qs + eps, axis=1)
        return ok.mean(axis=0)

    def _psi_pick(self, done: np.ndarray | None) -> int:
        """A Pareto-set identification pull, after APE (Kone, Kaufmann & Richert 2023, "Adaptive
        algorithms for relaxed Pareto set identification", NeurIPS: pull the less explored of the
        arm most at risk of misclassification and its closest competitor), with posterior draws
        for confidence boxes (cf. Auer, Chiang, Ortner & Drugan 2016): the configuration off the
        front of posterior means most likely to be Pareto-optimal (``front_probability``) with no
        tie (within ``psi_eps`` in quality and in tokens / t_max) on that front, and the
        configuration whose estimate dominates it with the highest estimated quality; the less
        pulled of the two. Nothing ambiguous left: the least-pulled member of the front."""
        p = self.front_probability()
        eq, et = self.quality.posterior_mean(), self._tokens()[0]
        on = pareto_mask(np.column_stack([eq, et]), [1, -1])
        eps = self.options.psi_eps
        front = np.flatnonzero(on)
        free = np.ones(len(p), dtype=bool) if done is None else ~done
        n = self.quality.n_c
        for c in np.argsort(-p, kind="stable"):
            if on[c] or p[c] <= 0:
                continue
            if np.any((np.abs(eq[front] - eq[c]) <= eps) & (np.abs(et[front] - et[c]) <= eps * self.t_max)):
                continue  # a tie of it is on the front
            dom = np.flatnonzero((eq >= eq[c]) & (et <= et[c]) & free)
            dom = dom[dom != c]
            cand = ([int(c)] if free[c] else []) + ([int(dom[np.argmax(eq[dom])])] if len(dom) else [])
            if cand:
                return min(cand, key=lambda i: (n[i], i))
        left = np.flatnonzero(on & free)
        if not len(left):
            left = np.flatnonzero(free)
        return int(left[np.argmin(n[left])])

    def _hull_pick(self) -> int | None:
        """The least-pulled configuration, among those not yet fully seen, that ``best(1, w=l)``
        ranks first for some ``l`` of 101 weights evenly spaced on [``w_low``, ``w_high``] (the
        upper convex hull of the posterior means in (tokens, quality)); None when every one of
        them is fully seen (or nothing is told yet)."""
        if self.quality.n_told == 0:
            return None
        mq, mt, t_max = self.quality.posterior_mean(), self._tokens()[0], self.t_max
        hull = np.unique([np.argmax(reward(mq, mt, w=float(w), t_max=t_max))
                          for w in np.linspace(self.options.w_low, self.options.w_high, 101)])
        done = self._exhausted()
        if done is not None:
            hull = hull[~done[hull]]
        if not len(hull):
            return None
        return int(hull[np.argmin(self.quality.n_c[hull])])

    def _scalarise(self, w: float, q: np.ndarray, log_t: np.ndarray) -> np.ndarray:
        if self.options.scalarisation == "linear":
            return w * q - (1.0 - w) * np.exp(log_t) / self.t_max
        return np.minimum(w * _unit(q), (1.0 - w) * _unit(-log_t))

    def _commit(self, coords: Coords, tag) -> None:
        if tag == "init" and self._init_plan and self._init_plan[-1] == coords:
            self._init_plan.pop()

    # -- tell -----------------------------------------------------------------------------
    def tell_objectives(self, config: Mapping[str, Any], *, quality: float, tokens: float, tag: Any = None) -> None:
        """Report a pull's mean quality and mean prompt tokens (answers the oldest pending ask
        of ``config``, or the one committed with ``tag``)."""
        q = check_reward(quality, name="quality")
        t = check_reward(tokens, name="tokens")
        if t < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        self._max_tokens = max(self._max_tokens, t)
        self._told_cost = math.log(max(t, 1.0))  # the cost model learns log tokens
        try:
            if tag is None:
                self.tell(config, q)
            else:
                self.tell(config, q, tag=tag)
        finally:
            self._told_cost = None

    def tell_details(self, config: Mapping[str, Any], reward: float, details: Any) -> None:
        """What the tuner calls with a pull's per-question records: their mean ``quality`` and
        ``prompt_tokens`` (:func:`autorag_hp.pipeline.score_result` rows); records without
        them fall back to ``tell(config, reward)``."""
        try:
            q = float(np.mean([d["quality"] for d in details]))
            t = float(np.mean([d["prompt_tokens"] for d in details]))
        except (KeyError, TypeError, ValueError):
            self.tell(config, reward)
            return
        self.tell_objectives(config, quality=q, tokens=t)

    def _update(self, coords: Coords, reward: float, tag) -> None:
        config = self.space.config_from_coords(coords)
        self.quality.observe(config, reward)
        if self._told_cost is not None:
            self.cost.observe(config, self._told_cost)

    # -- recommend ------------------------------------------------------------------------
    def _posterior(self, model: StructuredTS) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of every configuration's value under ``model``."""
        mean = model.posterior_mean()
        k, sd_res = model._shrink(model._s2)
        rows = model.design.active_rows(self._all_coords)
        w = model._root[rows].sum(axis=1)  # (configs, d): root^T x per configuration
        var = (1.0 - k) ** 2 * np.einsum("ij,ij->i", w, w) + sd_res ** 2
        return mean, np.sqrt(np.maximum(var, 0.0))

    def _tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior median of each configuration's tokens, and its sd (delta method)."""
        m, sd = self._posterior(self.cost)
        if self.cost.n_told == 0:
            return np.zeros_like(m), np.zeros_like(sd)
        t = np.exp(m)
        return t, t * sd

    @property
    def t_max(self) -> float:
        """The reward's token scale: the ``t_max`` option, else the largest pull mean told so far."""
        return self.options.t_max if self.options.t_max is not None else max(self._max_tokens, 1.0)

    @one_blas_thread
    def scalarised(self, w: float, *, t_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of ``w * quality - (1 - w) * tokens / t_max`` per configuration
        (the two models' errors taken as independent)."""
        w = check_w(w)
        t_max = self.t_max if t_max is None else check_t_max(t_max)
        mq, sq = self._posterior(self.quality)
        mt, st = self._tokens()
        c = (1.0 - w) / t_max
        return w * mq - c * mt, np.sqrt((w * sq) ** 2 + (c * st) ** 2)

    @one_blas_thread
    def best(self, n: int = 1, *, w: float | None = None, t_max: float | None = None) -> list[Recommendation]:
        """Top ``n`` configurations by the posterior mean of the reward at weight ``w``
        (default: the ``w`` option) and token scale ``t_max`` (default :attr:`t_max`), with
        credible intervals; any ``w``, no new pulls."""
        n = self._check_n(n)
        if self.n_told == 0:
            return self._fill(n, [])
        w = self.options.w if w is None else w
        mean, sd = self.scalarised(w, t_max=t_max)
        jitter = generator("tie-break", self.seed, self.n_told).random(len(mean))
        order = np.lexsort((jitter, -self.quality.n_c, -mean))[:n]
        z = self._z()
        return [Recommendation(self.space.config(int(i)), float(mean[i]), pull_count(self.quality.n_c[i]),
                               float(mean[i] - z * sd[i]), float(mean[i] + z * sd[i])) for i in order]

    @one_blas_thread
    def pareto_set(self, *, confidence: float | None = None):
        """The posterior-mean :class:`~autorag_hp.pareto.ParetoSet` over (quality, tokens) of
        every configuration, with credible intervals (tokens in the caller's units)."""
        from autorag_hp.pareto import ParetoSet

        conf = self.confidence if confidence is None else confidence
        z = self._z() if confidence is None else _z(conf)
        mq, sq = self._posterior(self.quality)
        mt, st = self._tokens()
        return ParetoSet.from_means(np.column_stack([mq, mt]), space=self.space,
                                    half_widths=z * np.column_stack([sq, st]),
                                    counts=self.quality.n_c.astype(int), t_max=self.t_max, confidence=conf)


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` rescaled to [0, 1] over its own range (all zeros when it is flat)."""
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def _z(confidence: float) -> float:
    import statistics

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


