"""Named random streams: every seeded generator in the package is derived here from a seed and a stream name.

Each stream has a fixed salt, so two components given the same seed never share draws, and
a stream's numbers do not change when another stream is added. The salts are the values
the package has always used, so results are the same as before they were gathered here.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["STREAMS", "generator"]

STREAMS: dict[str, int] = {
    "tie-break": 0xBE57,  # strategies' tie-breaking generator (per told observation)
    "stopping": 0x5709,  # structured strategies: the stopping rule's posterior draws
    "questions": 0x5EED,  # replayed objectives: the questions (or noise) a pull samples
    "paired-questions": 0x9A1D,  # questions="paired": the shared question order of every configuration
    "surface": 0xE55,  # synthetic surfaces: knob effects
    "surface-draws": 0x9E5,  # synthetic surfaces: question difficulty, correctness and token draws
    "surface-nonadditive": 0xA0D,  # synthetic surfaces: three-way terms and needles (non-additive family)
}


def generator(stream: str, *keys: int, tail: Sequence[int] = ()) -> np.random.Generator:
    """``np.random.default_rng([*keys, salt(stream), *tail])``: a generator of the named stream."""
    try:
        salt = STREAMS[stream]
    except KeyError:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}") from None
    return np.random.default_rng([*(int(k) for k in keys), salt, *(int(t) for t in tail)])
