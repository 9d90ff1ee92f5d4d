"""`autorag-hp tune`: the real command on the embedded default (small budget), the run
folder it writes, resume after an interruption, generators, and bad options."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from autorag_hp.cli import main
from autorag_hp.cli._tune import parse_budget

sys.path.insert(0, str(Path(__file__).parent))
from _chat_server import ChatServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _pulls(path: Path) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("type") == "pull"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The real command, as a user runs it, on the default set with 2% of grid's calls."""
    out = tmp_path_factory.mktemp("runs") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "autorag_hp", "tune", "--budget", "0.02", "--out", str(out), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.slow
def test_default_run_prints_best_and_writes_the_run_folder(default_run):
    out, stdout = default_run
    assert "best configurations (structured-tt, mean reward with 95% interval):" in stdout
    assert "grid search's best:" in stdout and "simple regret" in stdout and f"run folder: {out}" in stdout
    assert {p.name for p in out.iterdir()} >= {
        "run.json", "journal.jsonl", "grid.csv", "grid.json", "regret.csv", "summary.json", "regret.png", "pulls.png",
    }
    summary = json.loads((out / "summary.json").read_text())
    n_cfg, n_q = summary["space"]["configurations"], summary["dataset"]["questions"]
    assert summary["grid_calls"] == n_cfg * n_q and summary["budget_calls"] == int(0.02 * n_cfg * n_q)
    # structured-tt's default_batch: 2 questions per pull (docs/strategies.md, "Question-batch offsets")
    assert summary["calls_used"] == summary["budget_calls"] and summary["pulls"] == summary["calls_used"] // 2
    assert len(summary["best"]) == 5 and all(b["ci_low"] <= b["mean"] <= b["ci_high"] for b in summary["best"])
    assert 0 <= summary["regret"]["simple_regret"] and 0 <= summary["regret"]["recall@5"] <= 1

    grid = _read_csv(out / "grid.csv")
    assert len(grid) == n_cfg * n_q
    regret = _read_csv(out / "regret.csv")
    assert len(regret) == summary["pulls"] == len(_pulls(out / "journal.jsonl"))
    # The regret log agrees with the grid: true mean = the grid's mean reward of that configuration.
    by_cfg: dict[str, list[float]] = {}
    for row in grid:
        by_cfg.setdefault(row["config_index"], []).append(float(row["reward"]))
    for row in regret[:20]:
        assert float(row["true_mean"]) == pytest.approx(sum(by_cfg[row["config_index"]]) / n_q)
        assert float(row["regret"]) >= -1e-12
    cum = [float(r["cumulative_regret"]) for r in regret]
    assert cum == sorted(cum)
    assert float(regret[-1]["calls_share"]) == pytest.approx(summary["calls_share"])
    assert (out / "regret.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_resume_after_interruption_matches_the_uninterrupted_run(default_run, tmp_path, capsys):
    full, _ = default_run
    lines = (full / "journal.jsonl").read_text().splitlines(keepends=True)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "run.json").write_text((full / "run.json").read_text())
    # "Crash" after 30 pulls, mid-way through writing the 31st record.
    (cut / "journal.jsonl").write_text("".join(lines[:31]) + lines[31][:40])
    with pytest.warns(UserWarning, match="ignoring a torn last record"):
        assert main(["tune", "--resume", str(cut), "--quiet", "--no-plots"]) == 0
    key = [(p["pull"], p["config"], p["reward"]) for p in _pulls(full / "journal.jsonl")]
    assert [(p["pull"], p["config"], p["reward"]) for p in _pulls(cut / "journal.jsonl")] == key
    assert json.loads((cut / "summary.json").read_text())["best"] == json.loads((full / "summary.json").read_text())["best"]
    assert "resumed" in json.loads((cut / "run.json").read_text())

    # A larger budget extends the run; other settings must match the saved ones.
    assert main(["tune", "--resume", str(cut), "--budget", "0.025", "--quiet", "--no-plots"]) == 0
    assert len(_pulls(cut / "journal.jsonl")) > len(key)
    capsys.readouterr()
    assert main(["tune", "--resume", str(cut), "--strategy", "random", "--quiet"]) == 2
    assert "--strategy: the run in" in capsys.readouterr().err


def test_parse_budget():
    assert parse_budget("0.2") == ("share", 0.2) and parse_budget("20%") == ("share", 0.2)
    assert parse_budget("1") == ("share", 1.0) and parse_budget("5000") == ("calls", 5000.0)
    for bad in ("0", "abc", "1.5", "-3", "150%"):
        with pytest.raises(ValueError, match="--budget"):
            parse_budget(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--budget", "0"], "--budget as a share of grid's calls must be in (0, 1], got '0'"),
        (["--budget", "lots"], "--budget must be a share like 0.2 or 20% or a number of calls"),
        (["--budget", "3", "--batch", "4"], "--budget gives 3 calls, fewer than one pull of --batch 4 questions"),
        (["--batch", "0"], "--batch must be a positive integer, got 0"),
        (["--parallel", "-2"], "--parallel must be a positive integer, got -2"),
        (["--w", "1.5"], "--w must be a number with 0 <= w <= 1, got 1.5"),
        (["--metric", "bleu"], "--metric must be one of"),
        (["--metric", "f1"], "--metric f1 scores generated answers: give --generator"),
        (["--strategy", "nope"], "--strategy must be one of"),
        (["--generator", "gpt5"], "--generator must be one of"),
        (["-G", "model=x"], "--generator-option needs --generator"),
        (["--generator", "openai", "-G", "novel=1"], "generator 'openai' does not take option(s) ['novel']"),
        (["--data", "/nonexistent/set.json"], "does not exist"),
        (["--resume", "/nonexistent/run"], "is not a run folder"),
    ],
)
def test_bad_options_fail_clearly_and_write_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["tune", *argv, "--out", str(out), "--quiet"] if "--resume" not in argv else ["tune", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_bad_space_and_existing_out_folder(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text('[params]\nembedder = ["bm25", "no-such-embedder"]\ntop_k = [1, 2]\n')
    out = tmp_path / "out"
    assert main(["tune", "--space", str(space), "--out", str(out), "--quiet"]) == 2
    assert "embedder='no-such-embedder'" in capsys.readouterr().err and not out.exists()
    out.mkdir()
    (out / "something").write_text("x")
    assert main(["tune", "--out", str(out), "--quiet"]) == 2
    assert "already exists and is not an empty folder; use --resume" in capsys.readouterr().err


def test_small_space_with_an_openai_generator_and_em(tmp_path, capsys):
    """--generator openai against a loopback server: answers are journaled and scored."""
    space = tmp_path / "space.toml"
    space.write_text('[params]\nembedder = ["bm25"]\ntop_k = [1, 3]\nchunk_size = [64]\n')
    with ChatServer(mode="echo", lifetime_s=60) as srv:
        code = main(["tune", "--space", str(space), "--generator", "openai", "-G", f"base_url={srv.base_url}",
                     "-G", "model=echo", "-G", f"cache_dir={tmp_path / 'cache'}", "--metric", "em",
                     "--budget", "16", "--out", str(tmp_path / "run"), "--quiet", "--no-plots"])
        assert code == 0, capsys.readouterr().err
        assert srv.requests > 0
    pulls = _pulls(tmp_path / "run" / "journal.jsonl")
    # 16 calls in pulls of structured-tt's default 2 questions
    assert len(pulls) == 8 and all(d["answer"] == "Paris" and d["em"] is not None for p in pulls for d in p["details"])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "grid" not in summary and summary["generator"].startswith("openai:")


def test_generator_down_fails_clearly_and_leaves_a_resumable_journal(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    space = tmp_path / "space.toml"
    space.write_text('[params]\nembedder = ["bm25"]\ntop_k = [1, 3]\n')
    run = tmp_path / "run"
    code = main(["tune", "--space", str(space), "--generator", "openai", "-G", f"base_url=http://127.0.0.1:{port}/v1",
                 "-G", "model=m", "-G", 'retry={"max_retries": 1, "backoff_s": 0.01}', "-G", "use_cache=false",
                 "--metric", "f1", "--budget", "16", "--out", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert code == 3
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in err and "connection refused" in err
    assert f"--resume {run}" in err
    assert _pulls(run / "journal.jsonl") == []  # the header only: nothing half-written
    assert not (run / "summary.json").exists()


def test_list_strategies(capsys):
    assert main(["tune", "--list-strategies"]) == 0
    assert "hier-ucb" in capsys.readouterr().out.split()
