"""Pareto sets with intervals, best(w) without new calls, and the pareto-ts strategy."""

from __future__ import annotations

import numpy as np
import pytest

from autorag_hp.objective import Outcome, reward
from autorag_hp.pareto import ParetoSet, check_objectives, pareto_mask, pareto_recall
from autorag_hp.space import SearchSpace
from autorag_hp.strategies import make_strategy
from autorag_hp.tuner import tune

SPACE = SearchSpace({"top_k": [1, 2, 4, 8], "chunk": [32, 64, 128], "embedder": ["a", "b"]})


def _truth():
    """Quality rises with context and saturates; embedder b is better; tokens = top_k * chunk."""
    q = np.empty(len(SPACE))
    t = np.empty(len(SPACE))
    for i in range(len(SPACE)):
        c = SPACE.config(i)
        ctx = c["top_k"] * c["chunk"]
        q[i] = (0.95 if c["embedder"] == "b" else 0.8) * (1 - np.exp(-ctx / 150))
        t[i] = ctx + 10
    return q, t


def test_pareto_mask_keeps_non_dominated_rows_and_ties():
    v = np.array([[0.9, 100], [0.8, 50], [0.7, 60], [0.9, 100], [0.95, 400], [0.5, 50]])
    assert pareto_mask(v, [1, -1]).tolist() == [True, True, False, True, True, False]
    assert pareto_mask(v[:, :1], [1]).tolist() == [False, False, False, False, True, False]
    with pytest.raises(ValueError, match="one column per sense"):
        pareto_mask(v, [1])


@pytest.mark.parametrize("limit", [None, 0])  # None: every pair at once; 0: the large-table path
def test_pareto_mask_agrees_with_the_definition_on_random_tables(monkeypatch, limit):
    """Both of pareto_mask's paths give, row by row, "no other row is at least as good on every
    objective and better on one", on tables with many exact ties and 1-3 objectives."""
    import autorag_hp.pareto as pareto

    if limit is not None:
        monkeypatch.setattr(pareto, "_BROADCAST_LIMIT", limit)
    rng = np.random.default_rng(7)
    for trial in range(60):
        n, m = int(rng.integers(1, 120)), int(rng.integers(1, 4))
        v = rng.integers(0, 5, size=(n, m)).astype(float) if trial % 2 else rng.random((n, m))
        senses = [int(x) for x in rng.choice([-1, 1], size=m)]
        g = v * np.asarray(senses)
        expect = [not any((g[j] >= g[i]).all() and (g[j] > g[i]).any() for j in range(n)) for i in range(n)]
        assert pareto.pareto_mask(v, senses).tolist() == expect, (trial, n, m)


def test_check_objectives():
    assert check_objectives("quality,tokens") == ("quality", "tokens")
    assert check_objectives(["quality", "tokens", "latency"]) == ("quality", "tokens", "latency")
    for bad in ("tokens,quality", "quality", "quality,cost", "quality,tokens,tokens"):
        with pytest.raises(ValueError, match=r"objectives must list 'quality' first"):
            check_objectives(bad)


def _records():
    rng = np.random.default_rng(0)
    q, t = _truth()
    out = {}
    for i in range(len(SPACE)):
        n = 30
        out[i] = [{"quality": float(rng.random() < q[i]), "prompt_tokens": t[i] + int(rng.integers(-3, 4)),
                   "latency_s": 0.01 * t[i] / 100 + 0.001 * rng.random()} for _ in range(n)]
    return out


def test_pareto_set_from_records_front_intervals_and_best():
    recs = _records()
    ps = ParetoSet.from_records(recs, space=SPACE, objectives="quality,tokens", t_max=1034.0)
    assert len(ps) == len(SPACE)
    i = 5
    qs = np.array([r["quality"] for r in recs[i]])
    p = next(x for x in ps.plausible if x.index == i) if any(x.index == i for x in ps.plausible) else None
    row = int(np.flatnonzero(ps.indices == i)[0])
    assert ps.means[row, 0] == pytest.approx(qs.mean())
    half = 1.959964 * qs.std(ddof=1) / np.sqrt(len(qs))
    assert ps.low[row, 0] == pytest.approx(qs.mean() - half, rel=1e-4) and ps.counts[row] == 30
    front = ps.front
    costs = [f.mean["tokens"] for f in front]
    quals = [f.mean["quality"] for f in front]
    assert costs == sorted(costs) and quals == sorted(quals)  # a front rises with cost
    for f in front:  # nothing dominates a front member on the means
        assert not np.any((ps.means[:, 0] >= f.mean["quality"]) & (ps.means[:, 1] <= f.mean["tokens"])
                          & ((ps.means[:, 0] > f.mean["quality"]) | (ps.means[:, 1] < f.mean["tokens"])))
    assert {f.index for f in front} <= {x.index for x in ps.plausible}
    assert len(ps.plausible) > len(front)  # 30 noisy questions cannot rule out every near-front configuration
    if p is not None:
        assert p.ci["quality"][0] <= p.mean["quality"] <= p.ci["quality"][1]
    # best(w) for any w from the same numbers: w=1 is the best quality, w=0 the fewest tokens.
    assert ps.best(1.0).mean["quality"] == ps.means[:, 0].max()
    assert ps.best(0.0).mean["tokens"] == ps.means[:, 1].min()
    for w in (0.1, 0.5, 0.9):
        r = reward(ps.means[:, 0], ps.means[:, 1], w=w, t_max=1034.0)
        assert ps.best(w).index == int(ps.indices[np.argmax(r)])
        assert ps.best(w).index in {f.index for f in front}  # a scalarised optimum is on the front
    assert [x.index for x in ps.rank(0.5, n=3)][0] == ps.best(0.5).index
    three = ParetoSet.from_records(recs, space=SPACE, objectives="quality,tokens,latency", t_max=1034.0)
    assert len(three.front) >= len(front)  # a third objective can only add non-dominated points
    with pytest.raises(ValueError, match="t_max must be given"):
        ParetoSet.from_records(recs, space=SPACE).best(0.5)
    with pytest.raises(ValueError, match=r"records\[0\]: every record needs a number in 'prompt_tokens'"):
        ParetoSet.from_records({0: [{"quality": 1.0}]}, space=SPACE)


def test_pareto_recall_counts_ties_within_tolerance():
    truth = np.array([[0.5, 100.0], [0.9, 405.0], [0.903, 402.0], [0.2, 500.0]])
    senses = [1, -1]
    assert pareto_mask(truth, senses).tolist() == [True, False, True, False]
    assert pareto_recall([0, 2], truth, senses, scale=(1, 1000)) == 1.0
    assert pareto_recall([0, 1], truth, senses, scale=(1, 1000)) == 1.0  # 1 ties 2 within 0.005
    assert pareto_recall([0, 1], truth, senses, scale=(1, 1000), tol=0.001) == 0.5
    assert pareto_recall([3], truth, senses, scale=(1, 1000)) == 0.0


def test_pareto_benchmark_precision_charges_for_off_front_members():
    """The benchmark's precision (share of a run's front that are grid-front configurations or
    ties of one) falls when off-front configurations are added, where recall cannot."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "pareto_benchmark.py"
    spec = importlib.util.spec_from_file_location("pareto_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    truth = np.array([[0.5, 100.0], [0.9, 405.0], [0.903, 402.0], [0.2, 500.0], [0.4, 300.0]])
    assert bench._precision([0, 2], truth, 1000.0, 0.005) == 1.0
    assert bench._precision([0, 1], truth, 1000.0, 0.005) == 1.0  # 1 ties the front's 2
    assert bench._precision([0, 1], truth, 1000.0, 0.001) == 0.5
    assert bench._precision([0, 2, 3, 4], truth, 1000.0, 0.005) == 0.5
    assert pareto_recall([0, 2, 3, 4], truth, [1, -1], scale=(1, 1000)) == 1.0
    assert bench._precision([], truth, 1000.0, 0.005) == 0.0


def _run(spec, seed, pulls=260, noise=0.05):
    q, t = _truth()
    s = make_strategy(spec, SPACE, seed=seed, t_max=1034.0)
    rng = np.random.default_rng(seed)
    for _ in range(pulls):
        cfg = s.ask()
        i = SPACE.index(cfg)
        s.tell_objectives(cfg, quality=q[i] + noise * rng.standard_normal(), tokens=t[i] + rng.integers(-2, 3))
    return s, q, t


def test_pareto_ts_finds_the_front_and_answers_best_w():
    recalls = []
    for seed in range(3):
        s, q, t = _run("pareto-ts", seed)
        ps = s.pareto_set()
        recalls.append(pareto_recall([p.index for p in ps.front], np.column_stack([q, t]), [1, -1],
                                     scale=(1, 1034.0), tol=0.01))
        tok = ps.means[:, 1]
        assert np.allclose(tok, t, rtol=0.05)  # the log-token model learns the product structure
        for w in (0.1, 0.5, 0.9):
            r = reward(q, t, w=w, t_max=1034.0)
            pick = SPACE.index(s.best(1, w=w)[0].config)
            assert r.max() - r[pick] <= 0.02, (seed, w)
    assert np.mean(recalls) >= 0.8
    pulls = s.quality.n_c
    front = np.flatnonzero(pareto_mask(np.column_stack([q, t]), [1, -1]))
    assert pulls[front].sum() > 0.5 * pulls.sum()  # the run spends its pulls along the front


def test_pareto_ts_population_moves_on_from_fully_seen_configurations():
    """population P: a configuration whose floor(P) pulls covered every question is not
    proposed while others remain, in the scalarised pulls and in the identification pulls alike;
    its own mean then carries (almost) no noise in either model."""
    for spec in ("pareto-ts:population=2", "pareto-ts:population=2:psi_prob=1.0"):
        s, q, t = _run(spec, seed=4, pulls=2 * len(SPACE))
        assert s.quality.n_c.tolist() == [2.0] * len(SPACE), spec  # 48 pulls, 24 configurations, 2 each
        assert s.cost._population == s.quality._population == 2.0
        s.ask()  # every configuration is fully seen: it proposes again rather than stopping
    off = make_strategy("pareto-ts", SPACE)  # "auto" made directly (no Study, no replay): off
    assert off.options.population == "auto" and off.quality._population == 0
    with pytest.raises(ValueError, match="population=2 needs residual_tail=0"):
        make_strategy("pareto-ts:population=2:residual_tail=0.02", SPACE)


def test_pareto_ts_identification_pulls_and_front_probability():
    """psi_prob=1 without hull pulls: every pull after the space-filling ones is an APE-style
    identification pull (tag "psi"); front_probability gives per-configuration shares in [0, 1],
    higher on the true front than far behind it once the models have learned."""
    s, q, t = _run("pareto-ts:psi_prob=1.0:hull_prob=0", seed=5, pulls=200)
    assert s.quality.n_told == 200
    proposal = s.propose()
    assert proposal.tag == "psi"
    p = s.front_probability(128, eps=0.0)
    assert p.shape == (len(SPACE),) and np.all((p >= 0) & (p <= 1))
    front = pareto_mask(np.column_stack([q, t]), [1, -1])
    dominated_far = np.array([not f and any(q[j] > q[i] + 0.1 and t[j] <= t[i] for j in range(len(SPACE)))
                              for i, f in enumerate(front)])
    # (embedders a and b cost the same tokens, so a dominated one still wins some draws on sampled tokens)
    assert p[front].mean() > 0.5 > 2 * p[dominated_far].mean()
    recall = pareto_recall([x.index for x in s.pareto_set().front], np.column_stack([q, t]), [1, -1],
                           scale=(1, 1034.0), tol=0.01)
    assert recall >= 0.8
    for bad, msg in (("psi_prob=1.5", r"psi_prob must lie in \[0, 1\], got 1.5"),
                     ("psi_draws=0", "psi_draws must be a positive"),
                     ("psi_eps=-0.1", r"psi_eps must lie in \[0, 1\), got -0.1")):
        with pytest.raises(ValueError, match=msg):
            make_strategy(f"pareto-ts:{bad}", SPACE)
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\), got 2"):
        s.front_probability(8, eps=2)


def _propose_and_tell(s, pulls: int, *, seed: int, check) -> list:
    """``pulls`` proposals of ``s`` on _truth() (quality plus noise of sd 0.05), each committed,
    handed to ``check(tag, index)`` before it is told; returns the tags."""
    q, t = _truth()
    rng = np.random.default_rng(seed)
    tags = []
    for _ in range(pulls):
        proposal = s.propose()
        s.commit(proposal)
        i = SPACE.index_of_coords(proposal.coords)
        check(proposal.tag, i)
        tags.append(proposal.tag)
        s.tell_objectives(SPACE.config(i), quality=q[i] + 0.05 * rng.standard_normal(), tokens=t[i], tag=proposal.tag)
    return tags


def test_pareto_ts_hull_pulls_play_the_least_pulled_best_w_answer_until_it_is_fully_seen():
    """hull_prob=1: every pull after the space-filling ones plays, among the configurations that
    best(w) ranks first for some w and that have not seen every question, the least-pulled one
    (tag "hull"); with population P such a configuration is not played again once seen P times.
    (No focus pulls, and hull_tol=0: every hull member is pulled until fully seen.)"""
    s = make_strategy("pareto-ts:hull_prob=1.0:population=3:focus_prob=0:hull_tol=0", SPACE, seed=2, t_max=1034.0)

    def check(tag, i):
        if tag != "init":
            mq, mt = s._quality_mean(), s._tokens()[0]
            answers = {int(np.argmax(w * mq - (1 - w) * mt / s.t_max)) for w in np.linspace(0, 1, 101)}
            open_ = [c for c in answers if s.quality.n_c[c] < 3]
            if tag == "hull":
                assert i in open_ and s.quality.n_c[i] == min(s.quality.n_c[c] for c in open_)
            else:  # another rule only once every best(w) answer has seen all its questions
                assert not open_, (tag, open_)

    tags = _propose_and_tell(s, 60, seed=2, check=check)
    assert tags[:4] == ["init"] * 4 and tags.count("hull") >= 20
    assert s.quality.n_c.max() <= 3  # nobody past its population while others remain
    with pytest.raises(ValueError, match=r"hull_prob must lie in \[0, 1\], got -0.5"):
        make_strategy("pareto-ts:hull_prob=-0.5", SPACE)


def test_pareto_ts_options_scalar_tell_and_tuner_details():
    with pytest.raises(ValueError, match=r"w_low <= w_high must hold"):
        make_strategy("pareto-ts:w_low=0.8:w_high=0.2", SPACE)
    with pytest.raises(ValueError, match="scalarisation must be 'chebyshev' or 'linear', got 'x'"):
        make_strategy("pareto-ts:scalarisation=x", SPACE)
    s = make_strategy("pareto-ts", SPACE, seed=1)
    cfg = s.ask()
    s.tell(cfg, 0.7)  # a scalar reward teaches the quality model only
    assert s.quality.n_told == 1 and s.cost.n_told == 0
    with pytest.raises(ValueError, match="tokens must be >= 0"):
        s.tell_objectives(s.ask(), quality=0.5, tokens=-1)

    q, t = _truth()

    def objective(config, pull):
        i = SPACE.index(config)
        details = [{"quality": float(q[i]), "prompt_tokens": int(t[i]), "latency_s": 0.0} for _ in range(4)]
        return Outcome(reward=reward(q[i], t[i], w=0.9, t_max=1034.0), calls=4, details=details)

    s = make_strategy("pareto-ts", SPACE, seed=2, t_max=1034.0)
    res = tune(s, objective, budget_calls=4 * 60, calls_per_pull=4)
    assert len(res.records) == 60 and s.cost.n_told == 60  # the tuner passed the per-question records
    assert t[SPACE.index(s.best(1, w=0.0)[0].config)] == t.min()  # w=0: the fewest tokens (either embedder)


# --------------------------------------------------------------------------- a Study and the CLI

N_DOCS = 12
DOCS = {f"d{i}": f"passage {i} says answer{i}" for i in range(N_DOCS)}


def _stack(config, questions):
    """A toy retrieval stack: more context finds the answer more often and costs more tokens."""
    out = []
    for q in questions:
        i = int(q.split()[-1])
        picked = [f"d{(i + j * config['shift']) % N_DOCS}" for j in range(config["top_k"])]
        out.append({"contexts": [DOCS[d] for d in picked], "prompt_tokens": 10 * config["top_k"]})
    return out


@pytest.mark.parametrize("strategy", ["random", "pareto-ts"])
def test_study_result_best_w_and_pareto_without_new_calls(tmp_path, strategy):
    from autorag_hp import Study
    from autorag_hp.cli._objectives import report_front
    from autorag_hp.pipeline import FunctionPipeline, Question

    questions = [Question(f"q{i}", f"what is {i}", (f"answer{i}",)) for i in range(N_DOCS)]
    space = SearchSpace({"top_k": [1, 2, 3, 4], "shift": [0, 1, 2, 5, 7]})
    calls = [0]

    def stack(config, qs):
        calls[0] += len(qs)
        return _stack(config, qs)

    study = Study(FunctionPipeline(stack, batch=True, fingerprint="pareto-toy"), questions, space,
                  strategy=strategy, budget=80, batch=4, cache=False, run_dir=tmp_path / "run", plots=False, w=0.7)
    result = study.run()
    before = calls[0]
    ps = result.pareto()
    assert ps.objectives == ("quality", "tokens") and len(ps.front) >= 1
    three = result.pareto("quality,tokens,latency")
    assert three.objectives == ("quality", "tokens", "latency")
    cheap, rich = result.best(w=0.0)[0], result.best(w=1.0)[0]
    assert cheap.config["top_k"] <= rich.config["top_k"]
    assert result.best(2, w=0.7)[0].config == result.best(w=0.7)[0].config
    if strategy == "pareto-ts":  # it scalarises on the study's reward scale and w, not on its own
        t_max = result.summary["reward"]["t_max"]
        assert result.strategy.t_max == t_max and result.strategy.options.w == 0.7
        assert result.best(3) == result.best(3, w=0.7)
        mean, sd = result.strategy.scalarised(0.7, t_max=t_max)
        lower = mean - result.strategy.options.best_lcb * sd  # best(w) ranks by the lower bound
        assert result.best(w=0.7)[0].mean == pytest.approx(float(mean[np.argmax(lower)]))
    payload = report_front(result, "quality,tokens", tmp_path / "run", plots=True)
    assert (tmp_path / "run" / "pareto.json").is_file() and (tmp_path / "run" / "pareto.png").is_file()
    assert len(payload["grid_front"]) >= 1 and payload["front"][0]["mean"]["tokens"] <= payload["front"][-1]["mean"]["tokens"]
    assert calls[0] == before  # none of it asked the stack again


def test_pareto_ts_in_a_paired_study_sees_common_questions(tmp_path):
    """sampling="paired": the k-th pull of every configuration asks the same questions
    (:func:`~autorag_hp.objective.paired_questions`), and pareto-ts is told both objectives."""
    from autorag_hp import Study
    from autorag_hp.objective import paired_questions
    from autorag_hp.pipeline import FunctionPipeline, Question

    questions = [Question(f"q{i}", f"what is {i}", (f"answer{i}",)) for i in range(N_DOCS)]
    space = SearchSpace({"top_k": [1, 2, 3, 4], "shift": [0, 1, 2, 5, 7]})
    asked: dict[tuple, list[tuple[str, ...]]] = {}

    def stack(config, qs):
        if len(qs) == 4:  # a pull (the one-question probe before the run is not one)
            asked.setdefault(tuple(sorted(config.items())), []).append(tuple(qs))
        return _stack(config, qs)

    result = Study(FunctionPipeline(stack, batch=True, fingerprint="pareto-paired"), questions, space,
                   strategy="pareto-ts", budget=120, batch=4, sampling="paired", seed=3, cache=False,
                   run_dir=tmp_path / "run", plots=False).run()
    assert result.strategy.cost.n_told == 30  # every pull told quality and tokens
    # population="auto" resolved by the Study: 12 questions / batch 4 = 3 pulls per pass, both models
    assert result.strategy.quality._population == result.strategy.cost._population == 3.0
    assert max(len(p) for p in asked.values()) <= 3  # a fully seen configuration is not asked again
    texts = [q.text for q in questions]
    for pulls in asked.values():
        for k, qs in enumerate(pulls):
            assert set(qs) == {texts[j] for j in paired_questions(N_DOCS, 4, seed=3, ordinal=k)}
    assert max(len(p) for p in asked.values()) >= 2  # some configuration was pulled again, on new questions


def test_pareto_ts_covariate_quality_model_exact_means_and_per_question_values():
    """The default quality model (quality_model="covariate"), replayed on the embedded default
    grid as the pareto benchmark does (per-question values, paired questions): a configuration
    whose pulls saw every question has its exact mean (the finite-population correction, with
    no floor, leaves its own mean all the weight) and a zero sd, and its mean tokens; the picks,
    best(w) and the front read this model; quality_model="structured" reads the structured model; bad
    per-question values are refused with the field named."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from pareto_benchmark import TABLES, _arrays, _run_pareto

    lg, quality, tokens = _arrays(TABLES["default"])
    s = _run_pareto(lg, quality, tokens, 3, 30, int(0.2 * quality.size), sampling="paired")["strategy"]
    assert s.options.quality_model == "covariate" and s.quality._population == 4.0
    full = np.flatnonzero(s.quality.n_c >= 4)
    assert len(full) >= 3
    mean, sd = s._posterior(s.quality)
    assert np.allclose(mean[full], quality[full].mean(axis=1), rtol=0, atol=1e-12)  # exact, not shrunk
    assert sd[full].max() == 0.0 and sd[s.quality.n_c == 0].min() > 0.002
    # tokens: the arithmetic mean of what it saw (the geometric mean of its pulls' was 2e-3 off)
    assert np.allclose(s._token_mean()[full], tokens[full].mean(axis=1), rtol=1e-3)
    assert np.array_equal(s._tokens()[0], s._token_mean())
    assert np.array_equal(s._quality_mean(), mean) and not np.allclose(mean, s.quality.posterior_mean())
    assert np.array_equal(s.pareto_set().means[:, 0], mean)
    structured = _run_pareto(lg, quality, tokens, 3, 30, int(0.2 * quality.size), "pareto-ts:quality_model=structured",
                             sampling="paired")["strategy"]
    assert np.array_equal(structured._quality_mean(), structured.quality.posterior_mean())

    cfg = s.ask()
    for bad, msg in (([], "quality must be a finite number or a non-empty 1-D sequence"),
                     ([0.5, float("nan")], "quality must be a finite number or a non-empty 1-D sequence"),
                     ([[0.5]], "quality must be a finite number or a non-empty 1-D sequence")):
        with pytest.raises(ValueError, match=msg):
            s.tell_objectives(cfg, quality=bad, tokens=100.0)
    with pytest.raises(ValueError, match="tokens must be >= 0"):
        s.tell_objectives(cfg, quality=[0.5, 1.0], tokens=[100.0, -1.0])
    n = s.n_told
    s.tell_objectives(cfg, quality=[0.0, 1.0, 1.0, 1.0], tokens=[100.0, 120.0, 80.0, 100.0])
    assert s.n_told == n + 1 and s._covariate.nv[lg.space.index(cfg)] >= 4
    with pytest.raises(ValueError, match="quality_model must be 'covariate' or 'structured', got 'x'"):
        make_strategy("pareto-ts:quality_model=x", SPACE)
    with pytest.raises(ValueError, match="covariate_scale must be a number > 0, got 0"):
        make_strategy("pareto-ts:covariate_scale=0", SPACE)


def test_pareto_ts_posterior_sd_in_blocks_of_configurations(monkeypatch):
    """The posterior sds of both quality models and of the cost model are computed over blocks
    of configurations (row_norms2, so that 250,000 configurations never need the whole
    (configurations, features, columns) gather): blocks of 7 give the sds of one block, and the
    helper agrees with the direct gather on random input."""
    from autorag_hp.strategies import structured

    q, t = _truth()
    runs = []
    for spec in ("pareto-ts", "pareto-ts:quality_model=structured"):
        s = make_strategy(spec, SPACE, seed=1, t_max=1100.0)
        rng = np.random.default_rng(0)
        for _ in range(30):
            p = s.propose()
            s.commit(p)
            i = SPACE.index_of_coords(p.coords)
            s.tell_objectives(SPACE.config(i), quality=(rng.random(4) < q[i]).astype(float),
                              tokens=t[i] + rng.normal(0, 5, 4).clip(-5, 5), tag=p.tag)
        runs.append(s)
    whole = [(s._posterior(s.quality)[1], s._posterior(s.cost)[1]) for s in runs]
    monkeypatch.setattr(structured, "_ROW_CHUNK", 7)
    for s, (sq, st) in zip(runs, whole):
        assert np.allclose(s._posterior(s.quality)[1], sq, rtol=1e-12, atol=0)
        assert np.allclose(s._posterior(s.cost)[1], st, rtol=1e-12, atol=0)
        assert sq.min() > 0 and st.min() > 0
    rng = np.random.default_rng(1)
    m, rows = rng.normal(size=(9, 5)), rng.integers(0, 9, (20, 3))
    x, m_x = rng.normal(size=(20, 2)), rng.normal(size=(2, 5))
    z = m[rows].sum(axis=1) + x @ m_x
    assert np.allclose(structured.row_norms2(m, rows, x, m_x), (z * z).sum(axis=1), rtol=1e-12)
    assert np.allclose(structured.row_norms2(m, rows), (m[rows].sum(axis=1) ** 2).sum(axis=1), rtol=1e-12)


def _one_lucky_pull(spec: str, n_right: int):
    """A pareto-ts run on SPACE with population 3: every configuration with more than 500 tokens
    pulled 3 times (fully seen), the others twice, except x (top_k=8, chunk=128, b), pulled once
    and right on all its ``n_right`` questions. Returns (strategy, x)."""
    q, t = _truth()
    x = SPACE.index({"top_k": 8, "chunk": 128, "embedder": "b"})
    s = make_strategy(spec, SPACE, seed=0, t_max=1100.0, population=3)
    rng = np.random.default_rng(0)
    for i in range(len(SPACE)):
        for _ in range(1 if i == x else 2 if t[i] < 500 else 3):
            vals = np.ones(n_right) if i == x else (rng.random(8) < q[i]).astype(float)
            s.tell_objectives(SPACE.config(i), quality=vals, tokens=np.full(len(vals), t[i]))
    return s, x


def test_pareto_ts_hull_pulls_read_optimistic_quality():
    """hull_ucb: a hull pull plays the least-pulled configuration, not fully seen, that ranks
    first for some w by its quality's posterior mean plus hull_ucb sds. A partly seen
    configuration estimated below a fully seen one (sd 0) of higher quality stays on that hull
    while its upper bound is above, and is pulled; with hull_ucb=0 (the best(w) answers) it is
    not. Negative values are refused."""
    picks = {}
    for kappa in (0.0, 0.5):
        s, x = _one_lucky_pull(f"pareto-ts:hull_ucb={kappa}", 16)
        mq, sd = s._posterior(s.quality)
        mt, done = s._token_mean(), s._exhausted()
        hull = {int(np.argmax(reward(mq + kappa * sd, mt, w=float(w), t_max=1100.0))) for w in np.linspace(0, 1, 101)}
        top = int(np.argmax(np.where(done, mq, -np.inf)))  # the best fully seen configuration
        assert sd[top] == 0.0 and mq[x] < mq[top] < mq[x] + 0.5 * sd[x]
        free = [c for c in hull if not done[c]]
        assert s._hull_pick() == min(free, key=lambda c: (s.quality.n_c[c], c))
        picks[kappa] = (s._hull_pick(), x in hull)
    assert picks[0.0][0] != x and not picks[0.0][1]
    assert picks[0.5] == (x, True)
    with pytest.raises(ValueError, match="hull_ucb must be a number >= 0, got -1"):
        make_strategy("pareto-ts:hull_ucb=-1", SPACE)


def test_pareto_ts_best_ranks_by_the_lower_credible_bound():
    """best(n, w) ranks by the reward's posterior mean less best_lcb sds: a configuration pulled
    once, right on all 24 questions, has the higher mean but not the higher lower bound than
    one seen on every question (sd 0); best_lcb=0 ranks by the mean. The recommendation still
    reports the mean and its interval. Negative values are refused."""
    picks = {}
    for lcb in (0.0, 1.0):
        s, x = _one_lucky_pull(f"pareto-ts:best_lcb={lcb}", 24)
        mean, sd = s.scalarised(1.0)
        top = int(np.argmax(np.where(s._exhausted(), mean, -np.inf)))  # the best fully seen configuration
        assert sd[top] == 0.0 and mean[x] - sd[x] < mean[top] < mean[x] == mean.max()
        rec = s.best(1, w=1.0)[0]
        picks[lcb] = SPACE.index(rec.config)
        assert rec.mean == pytest.approx(mean[picks[lcb]]) and rec.ci_low <= rec.mean <= rec.ci_high
    assert picks[0.0] == x and picks[1.0] == top
    with pytest.raises(ValueError, match="best_lcb must be a number >= 0, got -1"):
        make_strategy("pareto-ts:best_lcb=-1", SPACE)


def test_pareto_ts_hull_tol_leaves_hull_members_resolved_for_their_weights():
    """hull_tol: a hull pull skips a member whose quality sd, times the largest of the 101 weights
    it ranks first for, is at most hull_tol (best(w) needs a cheap configuration's quality only to
    w times its sd); nothing left: None, and the pull goes to another rule."""
    picks = {}
    for tol in (0.0, 0.01, 0.05):
        s, _ = _one_lucky_pull(f"pareto-ts:hull_tol={tol}", 16)
        mq, sd = s._posterior(s.quality)
        mt, done = s._token_mean(), s._exhausted()
        ws = np.linspace(0, 1, 101)
        first = np.array([np.argmax(reward(mq, mt, w=float(w), t_max=1100.0)) for w in ws])
        open_ = [c for c in np.unique(first) if not done[c] and ws[first == c].max() * sd[c] > tol]
        picks[tol] = s._hull_pick()
        assert picks[tol] == (min(open_, key=lambda c: (s.quality.n_c[c], c)) if open_ else None)
    assert picks[0.0] is not None and picks[0.01] not in (None, picks[0.0]) and picks[0.05] is None
    with pytest.raises(ValueError, match="hull_tol must be a number >= 0, got -1"):
        make_strategy("pareto-ts:hull_tol=-1", SPACE)


def test_pareto_ts_focus_pulls_play_top_two_sampling_at_the_runs_w():
    """focus_prob=1: after the space-filling pulls every pull is top-two Thompson sampling on the
    reward at the ``w`` option (tag "focus"): the pulls gather on that w's best configurations,
    and with population never on a configuration that has seen every question."""
    q, t = _truth()
    for w in (0.1, 0.9):
        top3 = np.argsort(-reward(q, t, w=w, t_max=1034.0))[:3]
        for population in ("", ":population=3"):
            s = make_strategy(f"pareto-ts:focus_prob=1.0:w={w}{population}", SPACE, seed=3, t_max=1034.0)

            def check(tag, i):
                done = s._exhausted()
                assert done is None or not done[i]

            tags = _propose_and_tell(s, 60, seed=3, check=check)
            assert set(tags) == {"init", "focus"} and tags.count("focus") >= 50
            if population:
                assert s.quality.n_c.max() == 3 and s._exhausted() is not None
            else:
                assert int(np.argmax(s.quality.n_c)) in top3
        assert set(top3).isdisjoint(np.argsort(-reward(q, t, w=1.0 - w, t_max=1034.0))[:3])
    with pytest.raises(ValueError, match=r"focus_prob must lie in \[0, 1\], got 2"):
        make_strategy("pareto-ts:focus_prob=2", SPACE)
