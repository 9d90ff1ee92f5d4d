"""Dataset loaders: SQuAD JSON, JSON lines + corpus, Hugging Face local files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autorag_hp.pipeline import (
    Passage,
    QADataset,
    Question,
    load_dataset,
    load_default_dataset,
    load_hf,
    load_jsonl,
    load_squad,
)

SQUAD = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "squad2-dev-5-articles.json"
needs_squad = pytest.mark.skipif(not SQUAD.is_file(), reason=f"SQuAD subset not found at {SQUAD}")


@needs_squad
def test_squad_subset_loads_answerable_questions():
    ds = load_squad(SQUAD)
    assert len(ds.corpus) == 173 and len(ds.questions) == 705
    assert all(q.answers and len(q.gold_passages) == 1 for q in ds.questions)
    assert load_dataset(SQUAD).fingerprint == ds.fingerprint


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_with_corpus(tmp_path):
    _write(tmp_path / "corpus.jsonl", '{"id": "p1", "text": "Paris is in France."}\n{"id": "p2", "text": "Rome."}\n')
    _write(tmp_path / "questions.jsonl",
           '{"id": "q1", "question": "Where is Paris?", "answers": ["France"], "gold_passages": ["p1"]}\n\n'
           '{"question": "Capital of Italy?", "answers": "Rome"}\n')
    ds = load_jsonl(tmp_path / "questions.jsonl")
    assert [q.id for q in ds.questions] == ["q1", "q3"] and ds.questions[1].answers == ("Rome",)
    assert load_dataset(tmp_path).fingerprint == ds.fingerprint  # a folder works too


def test_hf_local_files(tmp_path):
    rows = [
        {"id": "a", "title": "T", "context": "Paris is in France.", "question": "Where is Paris?",
         "answers": {"text": ["France"], "answer_start": [12]}},
        {"id": "b", "title": "T", "context": "Paris is in France.", "question": "What is in France?",
         "answers": {"text": ["Paris"], "answer_start": [0]}},
        {"id": "c", "title": "T", "context": "Nothing here.", "question": "Unanswerable?",
         "answers": {"text": [], "answer_start": []}},
    ]
    path = _write(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    ds = load_hf(path)
    assert len(ds.corpus) == 2 and [q.id for q in ds.questions] == ["a", "b"]
    assert ds.questions[0].gold_passages == ds.questions[1].gold_passages


def test_default_dataset_ships_in_the_package():
    ds = load_default_dataset()
    assert len(ds.corpus) >= 20 and len(ds.questions) >= 100
    assert load_dataset("default").fingerprint == ds.fingerprint


def test_malformed_json_names_file_and_line(tmp_path):
    p = _write(tmp_path / "bad.json", '{"data": [\n  {"title": "x",\n   "paragraphs": [}\n]}')
    with pytest.raises(ValueError, match=r"bad\.json:3: malformed JSON"):
        load_squad(p)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    _write(tmp_path / "corpus.jsonl", '{"id": "p1", "text": "x"}\n')
    p = _write(tmp_path / "questions.jsonl", '{"question": "a?", "answers": ["x"]}\n{"question": oops}\n')
    with pytest.raises(ValueError, match=r"questions\.jsonl:2: malformed JSON line"):
        load_jsonl(p)


@pytest.mark.parametrize(
    "line,match",
    [
        ('{"answers": ["x"]}', r"questions\.jsonl:1: missing field 'question'"),
        ('{"question": "a?"}', r"questions\.jsonl:1: missing field 'answers'"),
        ('{"question": "a?", "answers": []}', r"questions\.jsonl:1: the question has no answer"),
        ('{"question": "a?", "answers": ["  "]}', r"questions\.jsonl:1: the question has no answer"),
        ('{"question": 3, "answers": ["x"]}', r"field 'question' must be str"),
        ('[1, 2]', r"questions\.jsonl:1: each line must be a JSON object"),
        ('{"question": "a?", "answers": ["x"], "gold_passages": ["zzz"]}', "gold passage 'zzz'.*not in the corpus"),
    ],
)
def test_bad_question_records(tmp_path, line, match):
    _write(tmp_path / "corpus.jsonl", '{"id": "p1", "text": "x"}\n')
    p = _write(tmp_path / "questions.jsonl", line + "\n")
    with pytest.raises(ValueError, match=match):
        load_jsonl(p)


def test_empty_corpus_and_missing_fields(tmp_path):
    _write(tmp_path / "corpus.jsonl", "\n")
    q = _write(tmp_path / "questions.jsonl", '{"question": "a?", "answers": ["x"]}\n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl: the corpus is empty"):
        load_jsonl(q)
    _write(tmp_path / "corpus.jsonl", '{"id": "p1"}\n')
    with pytest.raises(ValueError, match=r"corpus\.jsonl:1: missing field 'text'"):
        load_jsonl(q)
    p = _write(tmp_path / "s.json", json.dumps({"data": [{"paragraphs": [{"qas": []}]}]}))
    with pytest.raises(ValueError, match=r"data\[0\]\.paragraphs\[0\]: missing field 'context'"):
        load_squad(p)
    p = _write(tmp_path / "s.json", json.dumps({"data": [{"paragraphs": [
        {"context": "c", "qas": [{"id": "1", "question": "q?", "answers": [], "is_impossible": False}]}]}]}))
    with pytest.raises(ValueError, match=r"qas\[0\]: the question has no answer"):
        load_squad(p)


def test_dataset_validation():
    with pytest.raises(ValueError, match="corpus must hold at least one passage"):
        QADataset("d", (), (Question("q", "a?", ("x",)),))
    with pytest.raises(ValueError, match="passage ids must be unique, got 'p' twice"):
        QADataset("d", (Passage("p", "x"), Passage("p", "y")), (Question("q", "a?", ("x",)),))
    with pytest.raises(ValueError, match="question 'q' has no answer"):
        QADataset("d", (Passage("p", "x"),), (Question("q", "a?", ()),))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("/nonexistent/file.json")
    with pytest.raises(ValueError, match="format must be one of"):
        load_dataset(__file__, format="xml")
