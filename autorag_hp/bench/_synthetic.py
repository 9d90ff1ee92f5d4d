"""Synthetic per-question RAG grids of controlled difficulty, for benchmarks without LLM calls.

A surface is a complete grid (every configuration on every question) returned as a
:class:`~autorag_hp.bench.ReplayTable`, so it replays exactly like a real grid table.

Model (all on the logit scale of "the answer is correct"):

    logit p(c, q) = base + scale * (sum_k main_k[c_k] + sum_(k,l) inter_kl[c_k, c_l]) + d_q

main effects are smooth random curves over ordered knobs (top-k, chunk size, compression)
and random values for unordered ones (embedder); pairwise interactions are structured
(top-k x compression: compression helps long contexts and hurts short ones; chunk size x
top-k: too much context hurts) plus a random part. ``d_q`` is the question's difficulty.
Correctness is Bernoulli with common random numbers per question (``correlation``), so a
hard question tends to be missed by every configuration, as in real grids. A pull's token
cost is ``overhead + top_k * chunk_size * (1 - compression)`` (+ query-expansion tokens)
times a per-question log-normal factor; the reward is AutoRAG-HP's eq. 1,
``w * correct - (1 - w) * tokens / t_max`` with ``t_max`` the table's largest cost.

Difficulty follows the paper's buckets (AutoRAG-HP, Sec. 4): *easy* has a few
configurations clearly ahead (the five best by the additive effects get a bonus of 0.8 logits,
a sweet spot); *medium* has smaller effects, a smaller bonus and one degenerate knob
(query expansion); *hard* has small effects, no sweet spot and two degenerate knobs (chunk size, query expansion barely matter), so many configurations
sit within 0.01 of the best ("search space degeneracy").

*nonadditive* is built to break the additive + pairwise model of the ``structured-*``
strategies (an additive + pairwise least-squares fit explains about 78% of its true means'
variance, against 88-97% for the three buckets above): on top of medium-sized main and pairwise
effects it has a pure three-way embedder x chunk size x top-k interaction, a threshold (a drop
of 1 logit when the retrieved context, top-k x chunk size x (1 - compression), is in the top
quarter: a context window), a plateau (gains above the 90th percentile are cut to 30%), and two
"needles": single configurations whose knob values predict a below-median value, set 0.25 logits
above the best and 0.05 below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
from scipy import special, stats

from autorag_hp._seeds import generator
from autorag_hp._validation import check_int, check_number
from autorag_hp.bench._table import ReplayTable
from autorag_hp.objective import check_w, reward
from autorag_hp.space import SearchSpace

__all__ = ["DIFFICULTIES", "DEFAULT_PARAMS", "make_surface", "make_proxy"]

Difficulty = Literal["easy", "medium", "hard", "nonadditive"]
DIFFICULTIES: tuple[str, ...] = ("easy", "medium", "hard", "nonadditive")

DEFAULT_PARAMS: dict[str, list[Any]] = {
    "embedder": ["bm25", "minilm", "bge-base", "e5-large"],
    "chunk_size": [128, 256, 512, 1024],
    "top_k": [1, 3, 5, 10],
    "compression": [0.0, 0.3, 0.6],
    "query_expansion": [False, True],
}
"""384 configurations: embedder x chunk size x top-k x compression ratio x query expansion."""


@dataclass(frozen=True)
class _Level:
    scale: float  # multiplies every knob effect (logit units)
    degenerate: tuple[str, ...]  # knobs whose effects are shrunk to ``degenerate_factor``
    degenerate_factor: float
    lead: int = 0  # this many configurations (the best by latent quality) get ``lead_bonus`` on top
    lead_bonus: float = 0.0
    # Structure that an additive + pairwise model cannot express (all in logit units):
    three_way: float = 0.0  # sd of a pure embedder x chunk size x top-k interaction (no lower-order part)
    window: float = 0.0  # drop when the retrieved context exceeds a window (a threshold on three knobs)
    plateau: float = 1.0  # above the 90th percentile, gains are multiplied by this (saturation)
    needles: tuple[float, ...] = ()  # single configurations set this far above the best (negative:
    # below it), each chosen among those whose knob values predict a below-median value


_LEVELS: dict[str, _Level] = {
    "easy": _Level(0.7, (), 1.0, lead=5, lead_bonus=0.8),
    "medium": _Level(0.45, ("query_expansion",), 0.05, lead=5, lead_bonus=0.25),
    "hard": _Level(0.3, ("embedder", "query_expansion"), 0.05),
    "nonadditive": _Level(0.45, (), 1.0, three_way=0.35, window=1.0, plateau=0.3, needles=(0.25, -0.05)),
}

# Relative importance of each knob's main effect, and the interacting pairs with their weight.
_IMPORTANCE = {"embedder": 0.8, "chunk_size": 0.5, "top_k": 0.9, "compression": 0.4, "query_expansion": 0.25}
_PAIRS = {("top_k", "compression"): 0.5, ("chunk_size", "top_k"): 0.45, ("embedder", "chunk_size"): 0.25}


def _positions(values: Sequence[Any]) -> np.ndarray:
    """Values mapped to [-1, 1] by rank (for smooth effects over ordered knobs)."""
    k = len(values)
    return np.linspace(-1.0, 1.0, k) if k > 1 else np.zeros(1)


def _is_ordered(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _effects(space: SearchSpace, level: _Level, rng: np.random.Generator) -> tuple[dict, dict]:
    """Main-effect vectors and interaction matrices, centred, in logit units before ``scale``."""
    main: dict[str, np.ndarray] = {}
    for name in space.names:
        vals = space.values(name)
        imp = _IMPORTANCE.get(name, 0.5)
        if _is_ordered(vals):
            x = _positions(vals)
            eff = rng.normal(0, 1) * x + rng.normal(0, 1) * (x**2 - np.mean(x**2)) + 0.3 * rng.normal(size=len(x))
        else:
            eff = rng.normal(size=len(vals))
        eff = eff - eff.mean()
        sd = eff.std() or 1.0
        eff = imp * eff / sd
        if name in level.degenerate:
            eff = eff * level.degenerate_factor
        main[name] = eff
    inter: dict[tuple[str, str], np.ndarray] = {}
    for (a, b), weight in _PAIRS.items():
        if a not in space.names or b not in space.names:
            continue
        xa, xb = _positions(space.values(a)), _positions(space.values(b))
        if (a, b) == ("top_k", "compression"):
            m = np.outer(xa, xb)  # compression helps long contexts, hurts short ones
        elif (a, b) == ("chunk_size", "top_k"):
            m = -np.outer(xa, xb)  # big chunks x many chunks: lost in the middle
        else:
            m = np.zeros((len(xa), len(xb)))
        m = m + 0.5 * rng.normal(size=m.shape)
        m = m - m.mean(axis=0, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean()
        sd = m.std() or 1.0
        m = weight * m / sd
        if a in level.degenerate or b in level.degenerate:
            m = m * level.degenerate_factor
        inter[(a, b)] = m
    return main, inter


def _grid_coords(space: SearchSpace) -> np.ndarray:
    """(n_configs, n_params) value positions, in the space's mixed-radix order."""
    grids = np.meshgrid(*[np.arange(s) for s in space.sizes], indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1)


def _tokens(space: SearchSpace, coords: np.ndarray) -> np.ndarray:
    """Mean prompt tokens of each configuration (overhead + retrieved context + expansion)."""
    n = len(coords)
    cfg = {name: np.asarray(space.values(name), dtype=object)[coords[:, j]] for j, name in enumerate(space.names)}
    k = np.asarray(cfg["top_k"], dtype=float) if "top_k" in cfg else np.full(n, 3.0)
    chunk = np.asarray(cfg["chunk_size"], dtype=float) if "chunk_size" in cfg else np.full(n, 256.0)
    comp = np.asarray(cfg["compression"], dtype=float) if "compression" in cfg else np.zeros(n)
    qe = np.asarray(cfg["query_expansion"], dtype=float) if "query_expansion" in cfg else np.zeros(n)
    return 200.0 + k * chunk * (1.0 - comp) + 150.0 * qe


def _latent(space: SearchSpace, coords: np.ndarray, main: Mapping, inter: Mapping) -> np.ndarray:
    pos = {name: j for j, name in enumerate(space.names)}
    f = np.zeros(len(coords))
    for name, eff in main.items():
        f += eff[coords[:, pos[name]]]
    for (a, b), m in inter.items():
        f += m[coords[:, pos[a]], coords[:, pos[b]]]
    return f


def _pure_three_way(sizes: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """A random tensor with every one- and two-way marginal zero (ANOVA: only the 3-way term), sd 1."""
    t = rng.normal(size=tuple(sizes))
    for axis in range(3):
        t = t - t.mean(axis=axis, keepdims=True)  # double-centring along every axis leaves the 3-way part
    return t / (t.std() or 1.0)


def _non_additive(space: SearchSpace, coords: np.ndarray, f: np.ndarray, level: _Level,
                  rng: np.random.Generator) -> np.ndarray:
    """Add what an additive + pairwise model misses: a three-way interaction, a context-window
    threshold, a plateau above the 90th percentile and "needle" configurations."""
    f = f.copy()
    names = [n for n in ("embedder", "chunk_size", "top_k") if n in space.names]
    if level.three_way and len(names) == 3:
        pos = [space.names.index(n) for n in names]
        t = _pure_three_way([space.sizes[j] for j in pos], rng)
        f += level.three_way * t[tuple(coords[:, j] for j in pos)]
    if level.window:  # retrieved context over the window: the answer is lost in the middle
        context = _tokens(space, coords) - 200.0
        f -= level.window * (context > np.quantile(context, 0.75))
    if level.plateau != 1.0:
        q = np.quantile(f, 0.9)
        f = np.where(f > q, q + level.plateau * (f - q), f)
    top, low = f.max(), np.flatnonzero(f < np.median(f))
    for i, lift in zip(rng.choice(low, size=len(level.needles), replace=False), level.needles):
        f[int(i)] = top + lift
    return f


def _build(difficulty: str, *, fidelity: float = 1.0, proxy: bool = False, **options: Any) -> ReplayTable:
    unknown = sorted(set(options) - set(_SURFACE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown surface option(s) {unknown}; known: {list(_SURFACE_OPTIONS)}")
    o = {**_SURFACE_OPTIONS, **options}
    seed, n_questions, w, params = o["seed"], o["n_questions"], o["w"], o["params"]
    correlation, base_accuracy = o["correlation"], o["base_accuracy"]
    if difficulty not in _LEVELS:
        raise ValueError(f"difficulty must be one of {list(DIFFICULTIES)}, got {difficulty!r}")
    check_int("seed", seed, minimum=0)
    check_int("n_questions", n_questions, minimum=4)
    w = check_w(w)
    check_number("correlation", correlation, low=0.0, high=1.0, high_open=True)
    check_number("base_accuracy", base_accuracy, low=0.0, high=1.0, low_open=True, high_open=True)
    check_number("fidelity", fidelity, low=0.0, high=1.0)
    space = SearchSpace(dict(params) if params is not None else DEFAULT_PARAMS)
    level = _LEVELS[difficulty]
    code = DIFFICULTIES.index(difficulty)
    # The knob effects depend on (seed, difficulty) only, so a proxy shares them with its target.
    main, inter = _effects(space, level, generator("surface", int(seed), code))
    coords = _grid_coords(space)
    f = level.scale * _latent(space, coords, main, inter)
    if level.three_way or level.window or level.plateau != 1.0 or level.needles:
        f = _non_additive(space, coords, f, level, generator("surface-nonadditive", int(seed), code))
    if level.lead:  # "a few configurations clearly ahead" (a sweet spot the additive effects point to)
        f[np.argsort(-f, kind="stable")[: level.lead]] += level.lead_bonus
    stream = 1 if proxy else 0
    rng = generator("surface-draws", int(seed), code, tail=(stream, int(n_questions)))
    if proxy:  # a cheaper pipeline: correlated with the target, shifted down, partly reshuffled
        noise = rng.normal(size=len(f)) * (f.std() or 1.0)
        f = fidelity * f + math.sqrt(1.0 - fidelity**2) * noise - 0.3
    base = special.logit(base_accuracy)
    d_q = rng.normal(0.0, 1.2, size=n_questions)
    logits = base + f[:, None] + d_q[None, :]
    p = special.expit(logits)
    # Common random numbers: a question's shared draw makes configurations agree on it.
    # Configurations that differ only in degenerate knobs give the same answers (shared draw).
    z_q = rng.standard_normal(n_questions)
    live = [j for j, name in enumerate(space.names) if name not in level.degenerate]
    reduced = np.ravel_multi_index(tuple(coords[:, j] for j in live), tuple(space.sizes[j] for j in live)) if live \
        else np.zeros(len(f), dtype=int)
    e = rng.standard_normal((int(reduced.max()) + 1, n_questions))[reduced]
    u = stats.norm.cdf(correlation * z_q[None, :] + math.sqrt(1.0 - correlation**2) * e)
    correct = (u < p).astype(float)
    tokens = _tokens(space, coords)[:, None] * rng.lognormal(0.0, 0.3, size=(len(f), n_questions))
    t_max = float(tokens.max())
    outcomes = reward(correct, tokens, w=w, t_max=t_max)
    bounded = bool(((outcomes >= 0) & (outcomes <= 1)).all())
    qids = tuple(f"{'proxy' if proxy else 'q'}{i}" for i in range(n_questions))
    return ReplayTable(space, outcomes.mean(axis=1), outcomes, qids, bounded, n_questions)


_SURFACE_OPTIONS: dict[str, Any] = {"seed": 0, "n_questions": 50, "w": 0.9, "params": None, "correlation": 0.9,
                                     "base_accuracy": 0.35}


def make_surface(
    difficulty: Difficulty,
    *,
    seed: int = 0,
    n_questions: int = 50,
    w: float = 0.9,
    params: Mapping[str, Sequence[Any]] | None = None,
    correlation: float = 0.9,
    base_accuracy: float = 0.35,
) -> ReplayTable:
    """A per-question grid of the given difficulty, deterministic in ``seed``.

    ``params`` defaults to :data:`DEFAULT_PARAMS` (384 configurations; knobs named
    ``top_k``, ``chunk_size``, ``compression``, ``query_expansion`` get their token cost and
    structured interactions, others random effects). ``w`` weighs correctness against token
    cost (``w=1``: the reward is accuracy alone). ``correlation`` in [0, 1): how strongly
    configurations agree on which questions they get right.
    """
    return _build(difficulty, seed=seed, n_questions=n_questions, w=w, params=params, correlation=correlation,
                  base_accuracy=base_accuracy)


def make_proxy(difficulty: Difficulty, *, fidelity: float = 0.8, **options: Any) -> ReplayTable:
    """A cheaper proxy of ``make_surface(difficulty, seed=seed, ...)`` (e.g. a smaller embedder).

    The proxy's knob effects correlate with the target's at about ``fidelity`` (1: the same
    surface on fresh questions) and its accuracy is lower overall; its questions are drawn
    independently of the target's. ``options`` are :func:`make_surface`'s (``seed``,
    ``n_questions``, ``w``, ``params``, ``correlation``, ``base_accuracy``).
    """
    return _build(difficulty, fidelity=fidelity, proxy=True, **options)
