"""The embedded default evaluation set and its search space (no network needed).

The set is *generated* (``evals/make_default_eval.py``): profiles of fictional
organisations, each fact stated once, with questions that name the organisation but
paraphrase the fact. It ships in ``autorag_hp/data/default_eval/`` and its space in
``autorag_hp/data/default_space.toml`` (a copy of ``pipelines/default_space.toml``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from autorag_hp.pipeline._datasets import QADataset, load_jsonl
from autorag_hp.space import SearchSpace

__all__ = ["load_default_dataset", "default_space", "default_dataset_path", "default_space_path"]


def default_dataset_path() -> Path:
    """Folder of the embedded default set (``questions.jsonl`` + ``corpus.jsonl``)."""
    return Path(str(resources.files("autorag_hp") / "data" / "default_eval"))


def default_space_path() -> Path:
    return Path(str(resources.files("autorag_hp") / "data" / "default_space.toml"))


def load_default_dataset() -> QADataset:
    """The embedded default evaluation set."""
    return load_jsonl(default_dataset_path(), name="default")


def default_space() -> SearchSpace:
    """The reference pipeline's default search space (for the default set)."""
    return SearchSpace.from_file(str(default_space_path()))
