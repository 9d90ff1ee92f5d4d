"""What a tuning loop evaluates: a configuration in, an :class:`Outcome` out."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from autorag_hp._seeds import generator

__all__ = ["Outcome", "Objective", "check_reward", "reward", "check_w", "check_t_max", "SAMPLING_MODES",
           "check_sampling", "paired_questions", "paired_population", "PairedSampling"]


@dataclass(frozen=True)
class Outcome:
    """The result of one pull: a scalar reward plus optional per-question details.

    ``calls`` is how many question evaluations (LLM calls) the pull spent; budgets and
    the share of grid search's calls are counted in these units.
    """

    reward: float
    calls: int = 1
    details: Sequence[Mapping[str, Any]] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Objective(Protocol):
    """Scores a configuration. ``pull`` is the 0-based pull number.

    Objectives that sample questions must derive their randomness from ``pull`` (and
    their own seed), never from a shared stream, so that a resumed or parallel run
    evaluates exactly what an uninterrupted sequential run would.
    """

    def __call__(self, config: Mapping[str, Any], pull: int) -> Outcome: ...


def check_reward(reward: Any, *, name: str = "reward") -> float:
    """Return ``reward`` as a float, or raise ValueError if it is not a finite real number."""
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) and not hasattr(reward, "__float__"):
        raise ValueError(f"{name} must be a finite real number, got {reward!r}")
    try:
        value = float(reward)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite real number, got {reward!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {reward!r}")
    return value


def check_w(w: Any, *, name: str = "w") -> float:
    """The quality weight of :func:`reward` as a float; it must lie in [0, 1]."""
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) <= 1.0:
        raise ValueError(f"{name} must be a number with 0 <= w <= 1, got {w!r}")
    return float(w)


def check_t_max(t_max: Any, *, name: str = "t_max") -> float:
    """The token normaliser of :func:`reward` as a float; it must be a positive finite number."""
    if isinstance(t_max, bool) or not isinstance(t_max, (int, float)) or not math.isfinite(t_max) or t_max <= 0:
        raise ValueError(f"{name} must be a positive number of tokens, got {t_max!r}")
    return float(t_max)


def reward(quality: Any, tokens: Any, *, w: float, t_max: float) -> Any:
    """``w * quality - (1 - w) * tokens / t_max`` (AutoRAG-HP, arXiv 2406.19251, eq. 1).

    Works on floats and on numpy arrays alike; ``w`` and ``t_max`` are checked with
    :func:`check_w` and :func:`check_t_max`.
    """
    w = check_w(w)
    t_max = check_t_max(t_max)
    return w * quality - (1.0 - w) * tokens / t_max


# How an objective picks the questions of a pull: "iid" draws them afresh from (seed, pull);
# "paired" gives the k-th pull of every configuration the same questions (common random numbers).
SAMPLING_MODES = ("iid", "paired")


def check_sampling(mode: Any, *, name: str = "sampling") -> str:
    """The question-sampling mode; it must be one of :data:`SAMPLING_MODES`."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, SAMPLING_MODES))}, got {mode!r}")
    return mode


def paired_questions(n: int, batch: int, *, seed: int, ordinal: int) -> np.ndarray:
    """Question indices of a configuration's ``ordinal``-th pull (0-based) with ``sampling="paired"``.

    Every configuration walks the same seeded sequence of questions: epoch ``e`` is a
    permutation of the ``n`` questions drawn from ``(seed, e)``, cut to a whole number of
    batches, and pull ``k`` takes the ``k``-th batch of it. Two configurations compared
    after the same number of pulls were scored on the same questions, so the difference of
    their means carries no question-sampling noise (common random numbers, as in
    simulation optimisation). The indices depend only on ``(seed, ordinal)``, so resumed
    and parallel runs see what a sequential run would.
    """
    batch = min(batch, n)
    per = (n // batch) * batch  # a batch never spans two epochs, so it has no repeated question
    epoch, pos = divmod(int(ordinal) * batch, per)
    order = generator("paired-questions", seed, epoch).permutation(n)
    return order[pos:pos + batch]


def paired_population(strategy_class: type, options: Mapping[str, Any], *, sampling: str, n_questions: int,
                      batch: int) -> dict[str, Any]:
    """The ``population`` option to pass a strategy whose options have one (the structured
    strategies) when it is ``"auto"`` (given or by default): ``n_questions / batch`` pulls per
    pass of :func:`paired_questions` under ``sampling="paired"``, 0 (off) under ``"iid"`` or with a
    heavy-tailed residual (``residual_tail`` > 0). ``{}`` for a strategy without the option or a
    value the user set; Study and the bench replay call this one helper."""
    fields = getattr(getattr(strategy_class, "Options", None), "__dataclass_fields__", {})
    if "population" not in fields:
        return {}
    value = options.get("population", fields["population"].default)
    if value != "auto":
        return {}
    tail = options.get("residual_tail", fields["residual_tail"].default if "residual_tail" in fields else 0)
    if sampling != "paired" or tail:
        return {"population": 0}
    return {"population": int(n_questions) / max(1, min(int(batch), int(n_questions)))}


class PairedSampling:
    """What an objective that samples questions needs for ``sampling="paired"``: the tuner
    hands it each pull's ordinal among its configuration's pulls (``with_ordinals``, a copy
    that remembers them), and :meth:`paired_indices` turns a pull into its questions."""

    sampling: str = "iid"
    ordinals: Mapping[int, int] = {}

    def with_ordinals(self, ordinals: Mapping[int, int]):
        """A copy that knows, for pull ``p``, that it is its configuration's ``ordinals[p]``-th
        pull (0-based; :func:`~autorag_hp.tuner.tune` passes these)."""
        out = copy.copy(self)
        out.ordinals = {**self.ordinals, **{int(p): int(k) for p, k in ordinals.items()}}
        return out

    def paired_indices(self, n: int, batch: int, *, seed: int, pull: int) -> np.ndarray:
        """:func:`paired_questions` of ``pull``'s ordinal; ValueError if the tuner did not pass it."""
        if int(pull) not in self.ordinals:
            raise ValueError(f"sampling='paired' needs the configuration's pull ordinal of pull {pull} "
                             "(tune() passes it through with_ordinals)")
        return paired_questions(n, batch, seed=seed, ordinal=self.ordinals[int(pull)])
