"""Pareto-set identification on a quality and a cost model, and best(w) for every w.

A structured Bayesian model (:class:`~autorag_hp.strategies.structured.StructuredTS`'s
additive-plus-pairwise ANOVA model) learns, over knob values, a configuration's log prompt
tokens (tokens are close to a product of knob effects, chunk size x top-k x compression, so
their logarithm is close to additive). Quality is learnt by the same one-hot main and pairwise
effects plus a linear spline of that cost model's posterior mean log tokens
(``quality_model="covariate"``, :class:`_TokenCovariateQuality`: on the SQuAD grid quality is
largely a function of how much context the prompt carries), with each configuration's own
question variance from the per-question values; ``quality_model="structured"`` is the
structured model alone (the default before issue #13's fifth session). After a short
space-filling start, each pull is one of (by default, chosen on seeds 100-119 and, since issue
#13's seventh session, 100-139: docs/metrics.md):

* a **focus pull** (``focus_prob=0.1`` of the pulls): top-two Thompson sampling on the reward at
  the run's own weight, the ``w`` option (Study passes its ``w``, 0.9 by default), as a
  dedicated ``structured-tt`` run would pull: the configurations that compete for the answer
  the user asked for get the pulls that tell them apart, gaps of 0.001-0.003 that the front's
  tie rule (0.005) does not resolve;
* a **hull pull** (``hull_prob=0.7`` of the rest): the least-pulled configuration, among those
  not yet fully seen, that ``best(w)`` answers for some ``w`` (the upper convex hull of the
  posterior means), unless its quality's posterior sd, times the largest such ``w``, is at most
  ``hull_tol=0.001`` (a configuration that answers only for small ``w`` needs its quality to
  that ``w``'s precision only). Under paired sampling such a configuration is pulled until it
  has seen every question or is that precise, so the answers of ``best(w)``, which hinge on
  gaps of 0.001-0.003 between neighbours, are read from (near) exact means;
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

Tell it both objectives with :meth:`ParetoTS.tell_objectives` (per-question values, as the
tuner does through :meth:`ParetoTS.tell_details`, or pull means); a plain ``tell(config,
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
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import linalg

from autorag_hp._seeds import generator
from autorag_hp._threads import one_blas_thread
from autorag_hp._validation import check_number, check_positive_int
from autorag_hp.objective import check_reward, check_t_max, check_w, reward
from autorag_hp.pareto import pareto_mask
from autorag_hp.strategies._base import Coords, Proposal, Recommendation, Strategy, argmax_random, pull_count
from autorag_hp.strategies.structured import StructuredTS, StructuredTSOptions, row_norms2

__all__ = ["ParetoTS", "ParetoTSOptions"]


@dataclass(frozen=True)
class ParetoTSOptions(StructuredTSOptions):
    """The structured model's options (shared by both models; see :mod:`.structured`), plus:
    ``w_low``/``w_high``: the range of the per-pull scalarisation weight; ``w``: the weight
    ``best(n)`` ranks by when none is given and the focus pulls play (Study passes its ``w``);
    ``t_max``: the token scale of the reward (``w * quality - (1 - w) * tokens / t_max``; None:
    the largest pull mean told so far);
    ``scalarisation``: "linear" or "chebyshev"; ``quality_model``: "covariate" (main and
    pairwise effects plus a linear spline of the cost model's posterior mean log tokens, prior sd
    ``covariate_scale`` per spline coefficient: :class:`_TokenCovariateQuality`) or
    "structured" (the structured model alone, the default before issue #13's fifth session);
    ``prior_scale``/``interaction_scale``/``residual_scale`` are the quality model's prior
    standard deviations of a main effect, a pairwise effect and one configuration's deviation
    (0.3 / 0.1 / 0.03 here, for the covariate model, which keeps the deviation's scale fixed;
    the structured model's empirical Bayes takes 0.03 as its floor; with
    ``quality_model="structured"`` the defaults before were 0.1 / 0.05 / 0.05); ``leader_prob`` (a model option) below 1 plays
    top-two sampling on the scalarised draws, as ``structured-tt`` (0.3 here: with ``population``
    it won on seeds 100-119, docs/metrics.md); ``population`` (both models; "auto": Study and the
    bench replay set it to N / batch under paired sampling, as for ``structured-tt``): a
    configuration whose pulls have seen every question has exact means and is not proposed
    again while others remain; ``front_prob``: the chance that a pull instead
    plays a uniform pick from the sampled Pareto front (Pareto Thompson sampling, Yahyaa &
    Manderick 2015, "Thompson Sampling for Multi-Objective Multi-Armed Bandits Problem");
    ``hull_prob``: the chance that a pull plays the least-pulled configuration, not yet fully
    seen, that ranks first for some ``w`` by its optimistic reward, its quality's posterior mean
    plus ``hull_ucb`` posterior sds (:meth:`ParetoTS._hull_pick`; the default 0: the ``best(w)``
    answers. 0.5 won on seeds 100-139 and lost on the evaluation seeds 0-9, so it is not the
    default: docs/metrics.md);
    ``psi_prob``: the chance that a pull that is not a hull pull plays the Pareto-set
    identification rule (:meth:`ParetoTS._psi_pick`, after APE, Kone et al. 2023), its front
    probabilities from ``psi_draws`` joint posterior draws, ``psi_eps`` the quality (and tokens /
    t_max) gap under which two configurations are a tie (the recall metric's 0.005); the rest are
    scalarised pulls. ``hull_prob=0.5``, ``psi_prob=1.0`` (no scalarised pulls) won on seeds
    100-119 against the scalarised pulls alone (``hull_prob=0``, ``psi_prob=0``, the defaults
    before): a higher recall of the front on both grids, and no ``best(w)`` regret more than
    0.001 worse; with the covariate quality model ``hull_prob=0.7`` won (docs/metrics.md);
    ``best_lcb``: ``best(n, w)`` ranks by the reward's posterior mean less this many posterior
    sds (1, with the arithmetic-mean tokens of :meth:`ParetoTS._token_mean`, since issue #13's
    sixth session, chosen on seeds 100-139; 0: by the mean, as before);
    ``hull_tol``: a hull pull skips a member whose quality sd times the largest weight it answers
    for is at most this (0: only fully seen members are skipped, the default before issue #13's
    seventh session); ``focus_prob``: the chance that a pull, before any other rule, plays top-two
    Thompson sampling on the reward at ``w`` (tag "focus"; 0: none, as before). Both chosen on
    seeds 100-139 by the issue's two targets (docs/metrics.md): ``hull_tol`` frees pulls for the
    front, ``focus_prob`` spends some of them on ``best(w)`` at the run's ``w``;
    ``cost_prior_scale``/``cost_interaction_scale``/``cost_residual_scale``: the cost model's
    prior standard deviations, in log-token units (the model options above are quality's)."""

    w_low: float = 0.0
    w_high: float = 1.0
    w: float = 0.9
    t_max: float | None = None
    scalarisation: str = "linear"
    quality_model: str = "covariate"
    covariate_scale: float = 0.3
    prior_scale: float = 0.3
    interaction_scale: float = 0.1
    residual_scale: float = 0.03
    front_prob: float = 0.0
    leader_prob: float = 0.3
    population: int | str = "auto"
    psi_prob: float = 1.0
    hull_prob: float = 0.7
    hull_ucb: float = 0.0
    focus_prob: float = 0.1
    hull_tol: float = 0.001
    best_lcb: float = 1.0
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
        if self.quality_model not in ("covariate", "structured"):
            raise ValueError(f"quality_model must be 'covariate' or 'structured', got {self.quality_model!r}")
        check_number("covariate_scale", self.covariate_scale, low=0.0, low_open=True)
        check_number("hull_ucb", self.hull_ucb, low=0.0)
        check_number("hull_tol", self.hull_tol, low=0.0)
        check_number("best_lcb", self.best_lcb, low=0.0)
        for f in ("front_prob", "psi_prob", "hull_prob", "focus_prob"):
            check_number(f, getattr(self, f), low=0.0, high=1.0)
        check_positive_int("psi_draws", self.psi_draws)
        check_number("psi_eps", self.psi_eps, low=0.0, high=1.0, high_open=True)
        if self.stop or self.warm_start is not None:
            raise ValueError("pareto-ts supports neither stop nor warm_start")


class ParetoTS(Strategy):
    """Hull, Pareto-set identification and scalarised pulls on a quality and a cost model."""

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
        # every configuration's coordinates, in index (mixed-radix) order, for the posterior sd
        self._all_coords = np.stack(np.unravel_index(np.arange(len(space)), space.sizes), axis=1)
        self._max_tokens = 0.0
        self._token_sum = np.zeros(len(space))  # per configuration, the sum of its pulls' mean tokens
        self._told_t: float | None = None  # the pull being told: its mean tokens, at least 1
        self._told_values: np.ndarray | None = None
        self._covariate = None if o.quality_model == "structured" else _TokenCovariateQuality(
            self.quality.design, self._all_coords, prior_scale=o.prior_scale, interaction_scale=o.interaction_scale,
            residual_scale=o.residual_scale, covariate_scale=o.covariate_scale)
        self._fit_cache: tuple[int, _CovariateFit] | None = None

    # -- ask ------------------------------------------------------------------------------
    def _covariate_fit(self) -> "_CovariateFit":
        """The covariate quality model's posterior (refitted once per tell: the covariate is the
        cost model's current posterior mean log tokens)."""
        if self._fit_cache is None or self._fit_cache[0] != self.n_told:
            lt = self.cost.posterior_mean() if self.cost.n_told else None
            q = self.quality  # its sums are less the question-batch offsets with batch_effects
            # finite-population factor without the structured model's floor: exact means stay exact
            fit = self._covariate.fit(q.n_c, q.sum_c, lt, q.noise_var(), q._own_s2(1.0, q.n_c, floor=0.0))
            self._fit_cache = (self.n_told, fit)
        return self._fit_cache[1]

    def _quality_mean(self) -> np.ndarray:
        """Posterior mean quality of every configuration."""
        if self._covariate is not None:
            return self._covariate_fit().mean()
        return self.quality.posterior_mean()

    def _draw(self, model: StructuredTS) -> np.ndarray:
        if model is self.quality and self._covariate is not None:
            return self._covariate_fit().draws(self.rng, 1)[0]
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
        """The next space-filling first pull (tag "init"), then with ``focus_prob`` top-two
        sampling on the reward at ``w`` (tag "focus"), else with ``hull_prob`` a hull pull
        (tag "hull"), else with ``psi_prob`` a Pareto-set identification pull (tag "psi"), else
        the argmax of a random scalarisation of one posterior draw of each model (tag: the weight
        drawn); with ``population``, never a configuration whose pulls have seen every question
        while others remain."""
        if self._init_plan:
            return Proposal(self._init_plan[-1], "init")
        if self.options.focus_prob and self.rng.random() < self.options.focus_prob:
            w = self.options.w
            leader = self._scalarised_pick(w, self._draw(self.quality), self._draw(self.cost), self._exhausted())
            return Proposal(self.space.coords_of_index(leader), "focus")
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
        leader = self._scalarised_pick(w, q, log_t, done)
        return Proposal(self.space.coords_of_index(leader), round(w, 6))

    def _scalarised_pick(self, w: float, q: np.ndarray, log_t: np.ndarray, done: np.ndarray | None) -> int:
        """Top-two Thompson sampling (Russo 2016, as ``structured-tt``) on the scalarised draws
        ``q``, ``log_t`` at weight ``w``: their argmax, or with ``1 - leader_prob`` the argmax of
        a fresh draw with that leader masked out; never a configuration in ``done``."""
        v = self._scalarise(w, q, log_t)
        if done is not None:
            v[done] = -np.inf
        leader = argmax_random(v, self.rng)
        if self.options.leader_prob < 1.0 and self.rng.random() >= self.options.leader_prob:
            v = self._scalarise(w, self._draw(self.quality), self._draw(self.cost))
            if done is not None:
                v[done] = -np.inf
            if np.isfinite(np.delete(v, leader)).any():
                v[leader] = -np.inf
                leader = argmax_random(v, self.rng)
        return leader

    def _draws(self, model: StructuredTS, k: int) -> np.ndarray:
        """(k, configurations) joint posterior draws of ``model``'s values."""
        if model is self.quality and self._covariate is not None:
            return self._covariate_fit().draws(self.rng, k)
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
        eq, et = self._quality_mean(), self._token_mean()
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
        """The least-pulled configuration, among those not yet fully seen, that ranks first for
        some ``l`` of 101 weights evenly spaced on [``w_low``, ``w_high``] by the reward of its
        optimistic quality, the posterior mean plus ``hull_ucb`` posterior sds, and its tokens
        (:meth:`_token_mean`; the upper convex hull in (tokens, optimistic quality): with
        ``hull_ucb=0`` the configurations ``best(1, w=l)`` answers), and whose quality sd times
        the largest such ``l`` is above ``hull_tol``; None when no such one is left (or nothing
        is told yet). A fully seen configuration has sd 0, so a partly seen one whose estimate
        fell below it stays on the hull while its upper bound is above: the better
        configurations that the first, hard question batches put low are pulled again."""
        if self.quality.n_told == 0:
            return None
        o = self.options
        mq, mt, t_max = self._quality_mean(), self._token_mean(), self.t_max
        if o.hull_ucb:
            mq = mq + o.hull_ucb * self._posterior(self.quality)[1]
        ws = np.linspace(o.w_low, o.w_high, 101)
        first = np.array([np.argmax(reward(mq, mt, w=float(w), t_max=t_max)) for w in ws])
        hull = np.unique(first)
        done = self._exhausted()
        if done is not None:
            hull = hull[~done[hull]]
        if o.hull_tol and len(hull):
            w_top = np.array([ws[first == c].max() for c in hull])
            hull = hull[w_top * self._quality_sd(hull) > o.hull_tol]
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
    def tell_objectives(self, config: Mapping[str, Any], *, quality: float | Sequence[float],
                        tokens: float | Sequence[float], tag: Any = None) -> None:
        """Report a pull's quality and prompt tokens: each its mean over the pull's questions, or
        the per-question values (the covariate quality model then learns each configuration's own
        question variance). Answers the oldest pending ask of ``config``, or the one committed
        with ``tag``."""
        values = _per_question(quality, "quality")
        t_values = _per_question(tokens, "tokens")
        q = check_reward(quality, name="quality") if values is None else float(values.mean())
        t = check_reward(tokens, name="tokens") if t_values is None else float(t_values.mean())
        if t < 0 or (t_values is not None and (t_values < 0).any()):
            raise ValueError(f"tokens must be >= 0, got {tokens!r}")
        self._max_tokens = max(self._max_tokens, t)
        self._told_values = values
        self._told_t = max(t, 1.0)  # the cost model learns its log
        try:
            if tag is None:
                self.tell(config, q)
            else:
                self.tell(config, q, tag=tag)
        finally:
            self._told_values = self._told_t = None

    def tell_details(self, config: Mapping[str, Any], reward: float, details: Any) -> None:
        """What the tuner calls with a pull's per-question records: their ``quality`` and
        ``prompt_tokens`` (:func:`autorag_hp.pipeline.score_result` rows); records without
        them fall back to ``tell(config, reward)``."""
        try:
            q = [float(d["quality"]) for d in details]
            t = [float(d["prompt_tokens"]) for d in details]
        except (KeyError, TypeError, ValueError):
            self.tell(config, reward)
            return
        self.tell_objectives(config, quality=q, tokens=t)

    def _update(self, coords: Coords, reward: float, tag) -> None:
        config = self.space.config_from_coords(coords)
        c = self.space.index_of_coords(coords)
        self.quality.observe(config, reward)
        if self._told_t is not None:
            self.cost.observe(config, math.log(self._told_t))
            self._token_sum[c] += self._told_t
        if self._covariate is not None and self._told_values is not None:
            self._covariate.observe(c, self._told_values)

    # -- recommend ------------------------------------------------------------------------
    def _posterior(self, model: StructuredTS) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and sd of every configuration's value under ``model``."""
        if model is self.quality and self._covariate is not None:
            fit = self._covariate_fit()
            return fit.mean(), fit.sd()
        mean = model.posterior_mean()
        k, sd_res = model._shrink(model._s2)
        rows = model.design.active_rows(self._all_coords)
        var = (1.0 - k) ** 2 * row_norms2(model._root, rows) + sd_res ** 2  # |root^T x|^2 per configuration
        return mean, np.sqrt(np.maximum(var, 0.0))

    def _quality_sd(self, idx: np.ndarray) -> np.ndarray:
        """Posterior sd of the quality of the configurations ``idx`` (the covariate model
        computes only theirs)."""
        if self._covariate is not None:
            return self._covariate_fit().sd(idx)
        return self._posterior(self.quality)[1][idx]

    def _tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Each configuration's tokens (:meth:`_token_mean`) and their sd (delta method)."""
        m, sd = self._posterior(self.cost)
        if self.cost.n_told == 0:
            return np.zeros_like(m), np.zeros_like(sd)
        t = np.exp(m + self._jensen())
        return t, t * sd

    def _token_mean(self) -> np.ndarray:
        """Each configuration's tokens: ``exp`` of the cost model's posterior mean log tokens (a
        median), times, as far as the model weighs a configuration's own pulls, the ratio of the
        arithmetic to the geometric mean of those pulls' tokens; so a configuration whose pulls
        saw every question reads its mean tokens, not the geometric mean of its pulls' (0.05-0.6%
        lower on the two grids), and one never pulled reads the median."""
        if self.cost.n_told == 0:
            return np.zeros(len(self.space))
        return np.exp(self.cost.posterior_mean() + self._jensen())

    def _jensen(self) -> np.ndarray | float:
        """Per configuration, k_c log(arithmetic / geometric mean of its pulls' tokens), k_c the
        cost model's weight of its own mean (0 when unpulled; none with the cost model's batch
        offsets, whose sums are no longer the logs' own)."""
        c = self.cost
        if c._fx:
            return 0.0
        n = c.n_c
        pulled = n > 0
        gap = np.zeros(len(n))
        gap[pulled] = np.log(self._token_sum[pulled] / n[pulled]) - c.sum_c[pulled] / n[pulled]
        return c._shrink(c._s2)[0] * gap

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
        """Top ``n`` configurations at weight ``w`` (default: the ``w`` option) and token scale
        ``t_max`` (default :attr:`t_max`), ranked by the posterior mean of the reward less
        ``best_lcb`` posterior sds (a configuration pulled once cannot pass one seen on every
        question on one lucky batch), with the posterior mean and credible intervals; any ``w``,
        no new pulls."""
        n = self._check_n(n)
        if self.n_told == 0:
            return self._fill(n, [])
        w = self.options.w if w is None else w
        mean, sd = self.scalarised(w, t_max=t_max)
        jitter = generator("tie-break", self.seed, self.n_told).random(len(mean))
        rank = mean - self.options.best_lcb * sd  # the lower bound: a lucky, little-pulled estimate does not lead
        order = np.lexsort((jitter, -self.quality.n_c, -rank))[:n]
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


_KNOT_QUANTILES = (0.2, 0.4, 0.6, 0.8)  # the token spline's knots, as quantiles over the space
_NOISE_PRIOR_QUESTIONS = 10.0  # weight, in questions, of the pooled question variance in a configuration's own
_INTERCEPT_PRIOR = (0.5, 1.0)  # mean and sd of the quality model's intercept (quality on a 0-1 scale)


class _TokenCovariateQuality:
    """``pareto-ts``' quality model with ``quality_model="covariate"`` (the default).

    ``quality(c) = b + sum_k main_k[c_k] + sum_(k,l) pair_kl[c_k, c_l] + g(log tokens_c) + u_c + noise``:
    the structured model's one-hot main and pairwise effects (its :class:`_Design`, priors
    ``prior_scale`` and ``interaction_scale``), plus a linear spline ``g`` (prior sd
    ``covariate_scale`` per coefficient; knots at the 20/40/60/80% quantiles) of the cost model's
    posterior mean log prompt tokens: on the SQuAD grid quality is largely a function of how much
    context the prompt carries, which main and pairwise effects express only in part
    (top_k=8 x compression=0.25: true 0.70-0.85, predicted 0.34-0.60; docs/metrics.md). A
    configuration's own deviation ``u_c ~ N(0, residual_scale^2)`` is fixed, not estimated; its
    own mean's noise variance is its own question variance (from per-question values, shrunk to
    the pooled one with the weight of 10 questions; the quality StructuredTS's plug-in pull
    variance for pulls told as means only) over the questions seen, times the finite-population
    factor of paired sampling, without the structured model's floor: a configuration that saw
    every question keeps its own mean exactly, with sd 0. The token covariate moves as the
    cost model learns, so the regression is refitted after every tell from per-configuration
    sufficient statistics (a Cholesky solve of one feature per knob value, pair of values and
    spline column)."""

    def __init__(self, design, coords: np.ndarray, *, prior_scale: float, interaction_scale: float,
                 residual_scale: float, covariate_scale: float) -> None:
        self.design = design
        self.rows = design.active_rows(coords)  # (configurations, k): each one's one-hot features
        d0 = design.proxy  # every feature but the proxy offset (pareto-ts has no warm start)
        first_pair = design.pair_off[0] if design.pair_off else d0
        sd = np.full(d0, float(interaction_scale))
        sd[0], sd[1:first_pair] = _INTERCEPT_PRIOR[1], prior_scale
        self.sd = np.concatenate([sd, np.full(1 + len(_KNOT_QUANTILES), float(covariate_scale))])
        self.prior = np.zeros(len(self.sd))
        self.prior[0] = _INTERCEPT_PRIOR[0]
        self.r2 = float(residual_scale) ** 2
        m = len(coords)
        self.nv, self.sv, self.sqv = np.zeros(m), np.zeros(m), np.zeros(m)  # per-question values: n, sum, sum sq

    def observe(self, c: int, values: np.ndarray) -> None:
        """Configuration ``c``'s per-question values of one pull (for its question variance)."""
        self.nv[c] += len(values)
        self.sv[c] += float(values.sum())
        self.sqv[c] += float(values @ values)

    def _spline(self, log_tokens: np.ndarray | None) -> np.ndarray:
        if log_tokens is None:
            return np.zeros((len(self.nv), len(self.sd) - self.design.proxy))
        x = log_tokens - log_tokens.mean()
        knots = np.quantile(x, _KNOT_QUANTILES)
        return np.column_stack([x] + [np.maximum(x - k, 0.0) for k in knots])

    def fit(self, n: np.ndarray, sums: np.ndarray, log_tokens: np.ndarray | None, pull_var: float,
            fpc: np.ndarray | float) -> "_CovariateFit":
        """The posterior given each configuration's pulls ``n`` and the sum of their means, the
        cost model's posterior mean log tokens (None: no covariate yet), the plug-in variance of
        one pull and each configuration's finite-population factor."""
        d0 = self.design.proxy
        spline = self._spline(log_tokens)
        seen = np.flatnonzero(n)
        own = np.zeros(len(n))
        own[seen] = sums[seen] / n[seen]
        has = self.nv > 0
        e = np.full(len(n), np.inf)  # the noise variance of each configuration's own mean
        if has.any():
            qmean = self.sv[has] / self.nv[has]
            var_q = np.zeros(len(n))
            var_q[has] = np.maximum(self.sqv[has] / self.nv[has] - qmean ** 2, 0.0)
            pooled = max(float(np.sum(var_q * self.nv) / self.nv.sum()), 0.01)
            v = (var_q * self.nv + _NOISE_PRIOR_QUESTIONS * pooled) / (self.nv + _NOISE_PRIOR_QUESTIONS)
            e[has] = v[has] / self.nv[has]
        means_only = (n > 0) & ~has
        e[means_only] = pull_var / n[means_only]
        e[seen] *= np.broadcast_to(fpc, n.shape)[seen]
        x = np.zeros((len(seen), len(self.sd)))
        np.put_along_axis(x, self.rows[seen], 1.0, axis=1)
        x[:, d0:] = spline[seen]
        w = 1.0 / (self.r2 + e[seen])
        a = (x.T * w) @ x + np.diag(1.0 / self.sd ** 2)
        b = x.T @ (w * own[seen]) + self.prior / self.sd ** 2
        chol = linalg.cholesky(a, lower=True)
        mu = linalg.cho_solve((chol, True), b)
        k = np.zeros(len(n))  # the weight of a configuration's own mean
        k[seen] = self.r2 / (self.r2 + e[seen])
        cvar = np.full(len(n), self.r2)
        cvar[seen] = self.r2 * e[seen] / (self.r2 + e[seen])
        return _CovariateFit(self.design, self.rows, spline, chol, mu, k, cvar, own)


@dataclass
class _CovariateFit:
    """One posterior of :class:`_TokenCovariateQuality`: coefficients (``mu``, Cholesky factor
    ``chol`` of their precision), each configuration's own mean, its weight ``k`` in the blend
    and the blend's residual variance ``cvar``."""

    design: Any
    rows: np.ndarray
    spline: np.ndarray
    chol: np.ndarray
    mu: np.ndarray
    k: np.ndarray
    cvar: np.ndarray
    own: np.ndarray

    def _score(self, beta: np.ndarray) -> np.ndarray:
        """(s, configurations) model values of s coefficient vectors (s, features)."""
        d0 = self.design.proxy
        full = np.zeros((len(beta), self.design.d))
        full[:, :d0] = beta[:, :d0]
        return self.design.score_many(full) + beta[:, d0:] @ self.spline.T

    def mean(self) -> np.ndarray:
        f = self._score(self.mu[None, :])[0]
        return f + self.k * (self.own - f)

    def sd(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Posterior sd of every configuration's quality, or of the configurations ``idx``."""
        d0 = self.design.proxy
        sel = slice(None) if idx is None else idx
        linv = linalg.solve_triangular(self.chol, np.eye(len(self.mu)), lower=True).T  # (features, features)
        # |L^-1 x_c|^2 per configuration: one-hot features and spline columns
        norms = row_norms2(linv, self.rows[sel], self.spline[sel], linv[d0:])
        return np.sqrt((1.0 - self.k[sel]) ** 2 * norms + self.cvar[sel])

    def draws(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, configurations) joint posterior draws."""
        beta = self.mu[:, None] + linalg.solve_triangular(self.chol.T, rng.standard_normal((len(self.mu), n)),
                                                          lower=False)
        f = self._score(beta.T)
        xi = rng.standard_normal((f.shape[1], n)).T
        return f + self.k * (self.own - f) + np.sqrt(self.cvar) * xi


def _per_question(value: Any, name: str) -> np.ndarray | None:
    """``value`` as a non-empty 1-D array of finite per-question values, or None for a scalar."""
    if np.ndim(value) == 0:
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number or a sequence of them, got {value!r}") from None
    if arr.ndim != 1 or not len(arr) or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be a finite number or a non-empty 1-D sequence of finite numbers, "
                         f"got {value!r}")
    return arr


def _unit(v: np.ndarray) -> np.ndarray:
    """``v`` rescaled to [0, 1] over its own range (all zeros when it is flat)."""
    lo, hi = float(v.min()), float(v.max())
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def _z(confidence: float) -> float:
    import statistics

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


