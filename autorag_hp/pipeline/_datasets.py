"""QA evaluation sets: a corpus of passages and answerable questions.

Loaders (``load_dataset`` picks one from the source, or ``format=`` names it):

* ``squad``: SQuAD 1.1/2.0 JSON; each paragraph is a passage (id ``<article>-<paragraph>``)
  and the gold passage of its questions; unanswerable 2.0 questions are skipped.
* ``jsonl``: questions as JSON lines ``{"id", "question", "answers", "gold_passages"}``
  plus a corpus file of JSON lines ``{"id", "text", "title"}``; a folder holding
  ``questions.jsonl`` and ``corpus.jsonl`` also works (the embedded default set is one).
* ``hf``: Hugging Face ``datasets`` in SQuAD columns: a folder from ``save_to_disk``,
  local data files (``.json``, ``.jsonl``, ``.parquet``, ``.csv``) or a hub name (online,
  or offline from the local ``datasets`` cache).

Every problem raises ValueError naming the file, the line or record, and the rule.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from autorag_hp._registry import Registry
from autorag_hp._validation import check_positive_int
from autorag_hp.pipeline._cache import content_hash
from autorag_hp.pipeline._protocol import Passage, Question

__all__ = [
    "QADataset",
    "load_dataset",
    "load_squad",
    "load_jsonl",
    "load_hf",
    "register_loader",
]


def _check_items(dataset: str, items: Sequence[Any], cls: type, plural: str, singular: str) -> set[str]:
    """Each item is a ``cls`` with a unique id and non-empty text; returns the ids."""
    ids: set[str] = set()
    for x in items:
        if not isinstance(x, cls):
            raise ValueError(f"dataset {dataset!r}: {plural} must be {cls.__name__}, got {type(x).__name__}")
        if x.id in ids:
            raise ValueError(f"dataset {dataset!r}: {singular} ids must be unique, got {x.id!r} twice")
        if not x.text.strip():
            raise ValueError(f"dataset {dataset!r}: {singular} {x.id!r} has empty text")
        ids.add(x.id)
    return ids


def dataset_fingerprint(questions: Sequence["Question"], corpus: Sequence["Passage"] = ()) -> str:
    """Content hash of a corpus (may be empty) and its questions: what the caches key on."""
    parts: list[str] = []
    for p in corpus:
        parts += [p.id, p.title, p.text]
    for q in questions:
        parts += [q.id, q.text, "\x1f".join(q.answers), "\x1f".join(q.gold_passages)]
    return content_hash(*parts)


@dataclass(frozen=True)
class QADataset:
    """A corpus and the questions asked of it; validated on construction."""

    name: str
    corpus: tuple[Passage, ...]
    questions: tuple[Question, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "corpus", tuple(self.corpus))
        object.__setattr__(self, "questions", tuple(self.questions))
        if not self.corpus:
            raise ValueError(f"dataset {self.name!r}: the corpus must hold at least one passage, got none")
        ids = _check_items(self.name, self.corpus, Passage, "corpus items", "passage")
        if not self.questions:
            raise ValueError(f"dataset {self.name!r}: there must be at least one question, got none")
        _check_items(self.name, self.questions, Question, "questions", "question")
        for q in self.questions:
            if not any(a.strip() for a in q.answers):
                raise ValueError(f"dataset {self.name!r}: question {q.id!r} has no answer; every question needs one")
            unknown = [g for g in q.gold_passages if g not in ids]
            if unknown:
                raise ValueError(
                    f"dataset {self.name!r}: question {q.id!r} names gold passage {unknown[0]!r}, which is not in the corpus"
                )

    def __len__(self) -> int:
        return len(self.questions)

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of corpus and questions."""
        return dataset_fingerprint(self.questions, self.corpus)

    def sample(self, n: int, *, seed: int = 0) -> "QADataset":
        """A dataset with ``n`` questions drawn without replacement (same corpus)."""
        check_positive_int("n", n)
        rng = np.random.default_rng(seed)
        idx = sorted(rng.choice(len(self.questions), size=min(n, len(self.questions)), replace=False).tolist())
        return QADataset(f"{self.name}[{n}]", self.corpus, tuple(self.questions[i] for i in idx))


# --------------------------------------------------------------------------- helpers
def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        f = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: malformed JSON line ({exc.msg}, column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise ValueError(f"{path}:{lineno}: each line must be a JSON object, got {type(rec).__name__}")
            yield lineno, rec


def _field(rec: Mapping[str, Any], name: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    if name not in rec:
        raise ValueError(f"{where}: missing field {name!r}")
    value = rec[name]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{where}: field {name!r} must be {names}, got {value!r}")
    return value


def _answers(value: Any, where: str) -> tuple[str, ...]:
    """Answers as a string, a list of strings, SQuAD dicts, or {"text": [...]}."""
    if isinstance(value, str):
        out = [value]
    elif isinstance(value, Mapping) and "text" in value:
        t = value["text"]
        out = [t] if isinstance(t, str) else list(t)
    elif isinstance(value, (list, tuple)):
        out = [a["text"] if isinstance(a, Mapping) and "text" in a else a for a in value]
    else:
        raise ValueError(f"{where}: field 'answers' must be a string, a list of strings or SQuAD answers, got {value!r}")
    if not all(isinstance(a, str) for a in out):
        raise ValueError(f"{where}: every answer must be a string, got {out!r}")
    out = [a for a in out if a.strip()]
    if not out:
        raise ValueError(f"{where}: the question has no answer; every question needs at least one")
    return tuple(dict.fromkeys(out))


# --------------------------------------------------------------------------- loaders
def load_squad(path: str | Path, *, name: str | None = None) -> QADataset:
    """SQuAD-format JSON; unanswerable (SQuAD 2.0 ``is_impossible``) questions are skipped."""
    path = Path(path)
    data = _read_json(path)
    articles = _field(data, "data", f"{path}", list) if isinstance(data, Mapping) else None
    if articles is None:
        raise ValueError(f"{path}: the top level must be an object with a 'data' list, got {type(data).__name__}")
    corpus: list[Passage] = []
    questions: list[Question] = []
    for ai, art in enumerate(articles):
        where_a = f"{path}: data[{ai}]"
        if not isinstance(art, Mapping):
            raise ValueError(f"{where_a}: must be an object, got {art!r}")
        title = art.get("title", "")
        for pi, para in enumerate(_field(art, "paragraphs", where_a, list)):
            where_p = f"{where_a}.paragraphs[{pi}]"
            if not isinstance(para, Mapping):
                raise ValueError(f"{where_p}: must be an object, got {para!r}")
            pid = f"{ai}-{pi}"
            corpus.append(Passage(id=pid, text=_field(para, "context", where_p), title=str(title)))
            for qi, qa in enumerate(_field(para, "qas", where_p, list)):
                where_q = f"{where_p}.qas[{qi}]"
                if not isinstance(qa, Mapping):
                    raise ValueError(f"{where_q}: must be an object, got {qa!r}")
                if qa.get("is_impossible", False):
                    continue
                questions.append(
                    Question(
                        id=str(_field(qa, "id", where_q, (str, int))),
                        text=_field(qa, "question", where_q),
                        answers=_answers(_field(qa, "answers", where_q, (list, dict, str)), where_q),
                        gold_passages=(pid,),
                    )
                )
    return QADataset(name or path.stem, tuple(corpus), tuple(questions))


def _load_corpus(path: Path) -> list[Passage]:
    if path.suffix == ".json":
        data = _read_json(path)
        if not isinstance(data, list):
            raise ValueError(f"{path}: a JSON corpus must be a list of passages, got {type(data).__name__}")
        records: Iterable[tuple[str, Any]] = ((f"{path}: item {i}", r) for i, r in enumerate(data))
    else:
        records = ((f"{path}:{ln}", r) for ln, r in _read_jsonl(path))
    out = []
    for where, r in records:
        if not isinstance(r, Mapping):
            raise ValueError(f"{where}: must be an object, got {r!r}")
        out.append(Passage(id=str(_field(r, "id", where, (str, int))), text=_field(r, "text", where), title=str(r.get("title", ""))))
    if not out:
        raise ValueError(f"{path}: the corpus is empty; it must hold at least one passage")
    return out


def load_jsonl(questions: str | Path, corpus: str | Path | None = None, *, name: str | None = None) -> QADataset:
    """Questions in JSON lines plus a corpus file; ``questions`` may be a folder holding both."""
    qpath = Path(questions)
    if qpath.is_dir():
        corpus = corpus if corpus is not None else qpath / "corpus.jsonl"
        name = name or qpath.name
        qpath = qpath / "questions.jsonl"
    if corpus is None:
        sibling = qpath.with_name("corpus.jsonl")
        if not sibling.is_file():
            raise ValueError(f"corpus must be given for {qpath} (no corpus.jsonl beside it)")
        corpus = sibling
    passages = _load_corpus(Path(corpus))
    qs: list[Question] = []
    for ln, r in _read_jsonl(qpath):
        where = f"{qpath}:{ln}"
        gold = r.get("gold_passages", r.get("gold_passage_ids", []))
        if isinstance(gold, (str, int)):
            gold = [gold]
        if not isinstance(gold, list):
            raise ValueError(f"{where}: field 'gold_passages' must be a list of passage ids, got {gold!r}")
        qs.append(
            Question(
                id=str(r.get("id", f"q{ln}")),
                text=_field(r, "question", where),
                answers=_answers(_field(r, "answers", where, (list, dict, str)), where),
                gold_passages=tuple(str(g) for g in gold),
            )
        )
    if not qs:
        raise ValueError(f"{qpath}: holds no questions; it must hold at least one")
    return QADataset(name or qpath.stem, tuple(passages), tuple(qs))


def load_hf(
    source: str | Path,
    *,
    split: str | None = None,
    name: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> QADataset:
    """A Hugging Face ``datasets`` dataset in SQuAD columns (id, title, context, question, answers).

    ``columns`` renames, e.g. ``{"question": "query", "context": "passage"}``.
    Contexts become passages (deduplicated by text); rows without answers are skipped.
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover
        raise ValueError("format 'hf' needs the optional package datasets") from exc
    cols = {"id": "id", "title": "title", "context": "context", "question": "question", "answers": "answers"}
    cols.update(columns or {})
    p = Path(source)
    builders = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
    if p.is_dir():
        ds: Any = datasets.load_from_disk(str(p))
    elif p.is_file():
        if p.suffix not in builders:
            raise ValueError(f"source {str(p)!r}: hf data files must end in {sorted(builders)}")
        ds = datasets.load_dataset(builders[p.suffix], data_files=str(p))
    else:
        ds = datasets.load_dataset(str(source))
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            split = next((s for s in ("validation", "test", "train") if s in ds), next(iter(ds)))
        if split not in ds:
            raise ValueError(f"split must be one of {list(ds)}, got {split!r}")
        ds = ds[split]
    missing = [c for k, c in cols.items() if k in ("context", "question", "answers") and c not in ds.column_names]
    if missing:
        raise ValueError(f"{source}: missing column {missing[0]!r}; columns are {ds.column_names}")
    passages: dict[str, Passage] = {}
    qs: list[Question] = []
    for i, row in enumerate(ds):
        where = f"{source}: row {i}"
        ctx = row[cols["context"]]
        if not isinstance(ctx, str) or not ctx.strip():
            raise ValueError(f"{where}: column {cols['context']!r} must be non-empty text, got {ctx!r}")
        key = content_hash(ctx)
        if key not in passages:
            passages[key] = Passage(id=f"p{len(passages)}", text=ctx, title=str(row.get(cols["title"], "") or ""))
        try:
            answers = _answers(row[cols["answers"]], where)
        except ValueError:
            continue  # unanswerable rows (SQuAD 2.0 style) are skipped
        qs.append(
            Question(
                id=str(row.get(cols["id"], i)),
                text=row[cols["question"]],
                answers=answers,
                gold_passages=(passages[key].id,),
            )
        )
    return QADataset(name or p.stem or str(source), tuple(passages.values()), tuple(qs))


_LOADERS: Registry[Callable[..., QADataset]] = Registry("format", {"squad": load_squad, "jsonl": load_jsonl,
                                                                  "hf": load_hf})


def register_loader(fmt: str, loader: Callable[..., QADataset], *, replace: bool = False) -> None:
    """Make ``load_dataset(source, format=fmt)`` call ``loader(source, **kwargs)``; a format
    already registered is refused unless ``replace=True``."""
    _LOADERS.register(fmt, loader, replace=replace)


def _guess_format(source: Path) -> str:
    if source.is_dir():
        if (source / "questions.jsonl").is_file():
            return "jsonl"
        if (source / "dataset_info.json").is_file() or (source / "dataset_dict.json").is_file():
            return "hf"
        raise ValueError(f"source {str(source)!r}: a folder must hold questions.jsonl + corpus.jsonl or a saved HF dataset")
    if source.suffix == ".json":
        return "squad"
    if source.suffix == ".jsonl":
        return "jsonl"
    if source.suffix in (".parquet", ".csv", ".arrow"):
        return "hf"
    raise ValueError(f"source {str(source)!r}: cannot tell its format from the name; pass format=...")


def load_dataset(
    source: str | Path,
    *,
    format: Literal["squad", "jsonl", "hf"] | str | None = None,
    **kwargs: Any,
) -> QADataset:
    """Load an evaluation set; ``"default"`` is the embedded default set."""
    if str(source) == "default" and format is None:
        from autorag_hp.pipeline._default import load_default_dataset

        return load_default_dataset()
    p = Path(source)
    if format is None:
        if not p.exists():
            raise FileNotFoundError(f"dataset {str(source)!r} does not exist (pass format='hf' for a hub name)")
        format = _guess_format(p)
    if not isinstance(format, str) or format not in _LOADERS:
        raise ValueError(f"format must be one of {sorted(_LOADERS)}, got {format!r}")
    return _LOADERS.get(format)(source, **kwargs)


