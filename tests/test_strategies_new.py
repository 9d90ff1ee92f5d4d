"""Behaviour specific to the structured strategies (issue #5) and the synthetic surfaces."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from autorag_hp.space import SearchSpace
from autorag_hp.strategies import SpaceExhausted, make_strategy
from autorag_hp.strategies.structured import StructuredTS, _Design
from autorag_hp.tuner import tune

NAMES = ["structured-ts", "structured-tt"]


def small_space() -> SearchSpace:
    return SearchSpace({"top_k": [1, 3, 5, 10], "compression": [0.0, 0.3, 0.6], "embedder": ["bm25", "minilm", "e5"]})


def additive_truth(space: SearchSpace) -> np.ndarray:
    """An additive surface with a top_k x compression interaction; unique best at (10, 0.3, e5)."""
    k = np.array([0.0, 0.05, 0.1, 0.12])
    comp = np.array([0.0, 0.02, -0.03])
    emb = np.array([0.0, 0.04, 0.08])
    inter = np.zeros((4, 3))
    inter[3, 1] = 0.03
    out = np.empty(len(space))
    for i in range(len(space)):
        a, b, c = space.coords_of_index(i)
        out[i] = 0.4 + k[a] + comp[b] + emb[c] + inter[a, b]
    return out


def run(name: str, space: SearchSpace, truth: np.ndarray, pulls: int, seed: int = 0, noise: float = 0.1, **opts):
    s = make_strategy(name, space, seed=seed, **opts)
    rng = np.random.default_rng([seed, 99])
    for _ in range(pulls):
        c = s.ask()
        s.tell(c, float(truth[space.index(c)] + noise * rng.standard_normal()))
    return s


# -- the model ----------------------------------------------------------------------------------
def test_design_interactions_options():
    names, sizes = ("a", "b", "c"), (3, 4, 2)
    assert _Design(names, sizes, "none").pairs == []
    assert _Design(names, sizes, "all").pairs == [(0, 1), (0, 2), (1, 2)]
    assert _Design(names, sizes, "c*a").pairs == [(0, 2)]
    with pytest.raises(ValueError, match="interactions"):
        _Design(names, sizes, "a*zzz")
    d = _Design(names, sizes, "all")
    assert d.d == 1 + 9 + 12 + 6 + 8 + 1


def test_score_all_matches_feature_sum():
    space = small_space()
    s = run("structured-ts", space, additive_truth(space), 40)
    beta = s._sample_beta(np.random.default_rng(1))
    f = s.design.score_all(beta)
    for i in (0, 7, len(space) - 1):
        assert f[i] == pytest.approx(beta[s.design.active(space.coords_of_index(i))].sum())


def test_rank_one_updates_match_a_fresh_factorisation():
    space = small_space()
    # a fixed residual variance tau^2: each configuration's mean counts n / (s2 + n tau^2) in the
    # regression (the residual marginalised out), not n / s2 (its pulls would count twice)
    s = run("structured-ts", space, additive_truth(space), 120, residual_eb=False, residual_scale=0.05)
    t2 = 0.05 ** 2
    # the rank-one path uses the noise variance of the last factorisation: compare at that variance
    prec = np.diag(s.prior_prec)
    b = np.zeros(s.design.d)
    for i in np.flatnonzero(s.n_c):
        x = np.zeros(s.design.d)
        x[s.design.active(space.coords_of_index(int(i)))] = 1.0
        w = s.n_c[i] / (s._s2 + s.n_c[i] * t2)
        prec += w * np.outer(x, x)
        b += w * (s.sum_c[i] / s.n_c[i]) * x
    cov = np.linalg.inv(prec)
    assert np.allclose(s._mu, cov @ b, atol=1e-8)
    assert np.allclose(s._root @ s._root.T, cov, atol=1e-8)
    # ... and with tau^2 -> 0 every pull counts n / s2 (the plain regression on the pulls)
    s0 = run("structured-ts", space, additive_truth(space), 120, residual_eb=False, residual_scale=0.0)
    cov0 = np.linalg.inv(s0.gram / s0._s2 + np.diag(s0.prior_prec))
    assert np.allclose(s0._mu, cov0 @ (s0.xty / s0._s2), atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_finds_the_best_configuration_by_sharing_information(name):
    space = small_space()
    truth = additive_truth(space)
    s = run(name, space, truth, 150)
    assert space.index(s.best(1)[0].config) == int(np.argmax(truth))
    # recommendations come from the posterior mean, sorted, with intervals around it
    recs = s.best(5)
    assert [r.mean for r in recs] == sorted((r.mean for r in recs), reverse=True)
    assert all(r.ci_low < r.mean < r.ci_high for r in recs)


def test_recommends_an_unpulled_configuration_the_model_supports():
    space = SearchSpace({"a": list(range(6)), "b": list(range(6))})
    truth = np.array([0.1 * (i // 6) + 0.1 * (i % 6) for i in range(36)])
    s = make_strategy("structured-ts", space, seed=0, interactions="none", residual_scale=0.0)
    best = space.index({"a": 5, "b": 5})
    for i in range(36):
        if i != best:
            s.tell(space.config(i), float(truth[i]))
    assert space.index(s.best(1)[0].config) == best
    assert s.best(1)[0].pulls == 0


def test_top_two_spreads_pulls_beyond_the_leader():
    space = small_space()
    truth = additive_truth(space)
    ts = run("structured-ts", space, truth, 300, noise=0.05)
    tt = run("structured-tt", space, truth, 300, noise=0.05)
    best = int(np.argmax(truth))
    assert tt.n_c[best] < ts.n_c[best]
    assert tt.n_c[best] >= 0.1 * 300


def test_best_does_not_consume_the_generator_or_move_asks():
    space = small_space()
    s = run("structured-tt", space, additive_truth(space), 60)
    twin = copy.deepcopy(s)
    s.best(5)
    s.stop_confidence()
    s.should_stop()
    assert [s.ask() for _ in range(5)] == [twin.ask() for _ in range(5)]


def test_tell_outside_the_space_leaves_the_model_unchanged():
    space = small_space()
    s = run("structured-ts", space, additive_truth(space), 30)
    mu, gram = s._mu.copy(), s.gram.copy()
    with pytest.raises(ValueError):
        s.tell({"top_k": 2, "compression": 0.0, "embedder": "e5"}, 0.5)
    with pytest.raises(ValueError):
        s.tell(space.config(0), float("nan"))
    assert np.array_equal(mu, s._mu) and np.array_equal(gram, s.gram)


# -- options ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    ({"prior_scale": 0}, "prior_scale must be a finite number > 0, got 0"),
    ({"leader_prob": 0.0}, r"leader_prob must lie in \(0, 1\]"),
    ({"stop_level": 1.0}, r"stop_level must lie in \[0.5, 1\)"),
    ({"top_m": 0}, "top_m must be a positive integer"),
    ({"stop": "yes"}, "stop must be true or false"),
    ({"interactions": ""}, "interactions must be"),
    ({"warm_start": 3}, "warm_start must be"),
    ({"residual_tail": 1.0}, r"residual_tail must lie in \[0, 1\), got 1.0"),
    ({"residual_wide": -0.1}, "residual_wide must be a finite number > 0, got -0.1"),
])
def test_options_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        make_strategy("structured-ts", small_space(), **bad)


def test_describe_is_json_serialisable():
    d = make_strategy("structured-tt", small_space(), seed=3).describe()
    assert json.loads(json.dumps(d)) == d
    assert d["options"]["leader_prob"] == 0.5 and d["options"]["top_m"] == 5


# -- stopping rule ------------------------------------------------------------------------------
def test_stopping_rule_stops_the_tune_loop_with_a_clear_reason():
    space = small_space()
    truth = additive_truth(space)
    s = make_strategy("structured-tt", space, seed=0, stop=True, stop_min_pulls=20, stop_every=5)

    def objective(config, pull):
        rng = np.random.default_rng([7, pull])
        return float(truth[space.index(config)] + 0.05 * rng.standard_normal())

    res = tune(s, objective, max_pulls=5000)
    assert res.stop_reason.startswith("exhausted: stopping rule")
    assert "stop_epsilon=0.01" in res.stop_reason
    assert len(res.records) < 5000
    assert s.stop_confidence() >= 0.95 and s.should_stop()
    assert truth.max() - truth[space.index(s.best(1)[0].config)] <= 0.01
    with pytest.raises(SpaceExhausted, match="stopping rule"):
        s.ask()


def test_stopping_rule_pulls_every_unpulled_configuration_before_it_stops():
    space = small_space()
    truth = additive_truth(space)

    def drive(stop: bool, pulls: int):
        s = make_strategy("structured-tt", space, seed=0, stop=stop, stop_min_pulls=10, stop_every=1)
        rng = np.random.default_rng(5)
        asked, unpulled_when_met = [], None
        try:
            for _ in range(pulls):
                c = s.ask()
                asked.append((space.index(c), s.pending[space.coords(c)][-1]))
                s.tell(c, float(truth[space.index(c)] + 0.01 * rng.standard_normal()))
                if unpulled_when_met is None and (s.n_c == 0).any() and s.stop_confidence() >= 0.95:
                    unpulled_when_met = (len(asked), np.flatnonzero(s.n_c == 0), s.posterior_mean())
                    assert not s.should_stop()  # the criterion holds, but not for configurations never seen
        except SpaceExhausted:
            pass
        return s, asked, unpulled_when_met

    s, asked, met = drive(True, 3000)
    assert met is not None  # the posterior criterion holds while configurations are still unpulled
    t, unpulled, mean = met
    # the rule does not fire then: the next pulls are exactly the unpulled configurations,
    # highest posterior mean first, tagged "verify"; it stops only once every one was seen
    sweep = asked[t:t + len(unpulled)]
    assert [i for i, _ in sweep] == sorted(unpulled.tolist(), key=lambda i: -mean[i])
    assert {tag for _, tag in sweep} == {"verify"}
    assert (s.n_c > 0).all() and s.should_stop()
    # before the criterion first holds, stop=True proposes exactly what stop=False does
    assert drive(False, t)[1] == asked[:t]


def test_paired_stopping_draws_share_knob_question_errors_until_every_question_is_seen():
    space = small_space()
    truth = additive_truth(space)
    s = run("structured-tt", space, truth, 40, noise=0.05, population=5.0)
    assert (s.n_c >= 5).any() and (s.n_c == 0).any() and ((s.n_c > 0) & (s.n_c < 5)).any()
    e = s._knob_question_draws(np.random.default_rng(0), 4000)
    n = np.clip(s.n_c, 1, 5)  # the unpulled carry the first batch's error: the model speaks from it
    np.testing.assert_allclose(e.std(axis=0), np.sqrt(s.noise_var() * (1 / n - 1 / 5)), rtol=0.08, atol=1e-12)
    # shared by configurations with the same knob values: two with the same n that share 2 of 3
    # values correlate at about 2/3, two that share none not at all
    zero = [i for i in range(len(space)) if s.n_c[i] == 0]
    share = lambda i, j: sum(a == b for a, b in zip(space.coords_of_index(i), space.coords_of_index(j)))
    two = next((i, j) for i in zero for j in zero if share(i, j) == 2)
    none = next((i, j) for i in zero for j in zero if share(i, j) == 0)
    assert abs(np.corrcoef(e[:, two[0]], e[:, two[1]])[0, 1] - 2 / 3) < 0.05
    assert abs(np.corrcoef(e[:, none[0]], e[:, none[1]])[0, 1]) < 0.05


def test_stop_confidence_grows_with_data():
    space = small_space()
    truth = additive_truth(space)
    early = run("structured-tt", space, truth, 20).stop_confidence()
    late = run("structured-tt", space, truth, 400).stop_confidence()
    assert late > early
    assert 0.0 <= early <= 1.0


# -- transfer -----------------------------------------------------------------------------------
def test_warm_start_from_a_shifted_proxy_helps(tmp_path):
    space = small_space()
    truth = additive_truth(space)
    proxy = truth - 0.2  # a cheaper pipeline: uniformly worse, same knob effects
    rng = np.random.default_rng(5)
    records = [{"config": space.config(i), "reward": float(proxy[i] + 0.1 * rng.standard_normal())}
               for i in range(len(space)) for _ in range(3)]
    cold = run("structured-ts", space, truth, 12)
    warm = run("structured-ts", space, truth, 12, warm_start=records, warm_weight=0.5)
    best = int(np.argmax(truth))
    assert space.index(warm.best(1)[0].config) == best
    assert abs(warm.posterior_mean()[best] - truth[best]) < 0.1  # the proxy's offset is absorbed
    assert warm.n_told == cold.n_told == 12  # proxy observations are not target pulls
    # the same records from a journal file
    path = tmp_path / "proxy.jsonl"
    lines = [{"type": "header", "strategy": "x", "options": {}, "seed": 0, "space": space.to_dict()}]
    lines += [{"type": "pull", "pull": i, "round": i, "round_size": 1, **r} for i, r in enumerate(records)]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    from_file = run("structured-ts", space, truth, 12, warm_start=str(path), warm_weight=0.5)
    assert np.allclose(from_file._mu, warm._mu)


def test_warm_start_rejects_configs_outside_the_space():
    with pytest.raises(ValueError, match="warm_start: record 0"):
        make_strategy("structured-ts", small_space(), warm_start=[{"config": {"top_k": 2}, "reward": 0.1}])
    with pytest.raises(ValueError, match="reward must be a finite number"):
        make_strategy("structured-ts", small_space(),
                      warm_start=[{"config": small_space().config(0), "reward": float("inf")}])


# -- scale ----------------------------------------------------------------------------------------
def test_ten_thousand_configurations_stay_cheap():
    space = SearchSpace({f"p{j}": list(range(10)) for j in range(4)})
    s = make_strategy("structured-tt", space, seed=0)
    assert s.design.d <= 330
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = s.ask()
        s.tell(c, float(rng.random()))
    assert len(s.best(3)) == 3


def test_huge_space_uses_coordinate_ascent():
    space = SearchSpace({f"p{j}": list(range(8)) for j in range(7)})  # 2,097,152 configurations
    s = make_strategy("structured-ts", space, seed=0, interactions="none")
    assert not s.enumerate
    rng = np.random.default_rng(0)
    for _ in range(30):
        c = s.ask()
        s.tell(c, float(c["p0"] / 8 + 0.1 * rng.random()))
    assert len(s.best(2)) == 2


def test_structured_is_a_strategy():
    assert isinstance(make_strategy("structured-tt", small_space()), StructuredTS)


# -- heavy-tailed residual (residual_tail) ------------------------------------------------------
def _needle_strategy(**opts):
    """Every configuration of the additive surface pulled twice, plus one 'needle' (1, 0.6, bm25)
    (predicted far below the best) pulled 6 times at +0.45 over its additive value."""
    space = small_space()
    truth = additive_truth(space)
    needle = space.index({"top_k": 1, "compression": 0.6, "embedder": "bm25"})
    truth = truth.copy()
    truth[needle] += 0.45
    s = make_strategy("structured-tt", space, seed=0, **opts)
    rng = np.random.default_rng(5)
    for _ in range(2):
        for i in range(len(space)):
            s.tell(space.config(i), float(truth[i] + 0.1 * rng.standard_normal()))
    for _ in range(4):
        s.tell(space.config(needle), float(truth[needle] + 0.1 * rng.standard_normal()))
    return s, space, truth, needle


def test_heavy_tailed_residual_lets_a_needle_overrule_the_model():
    own = {}
    for tail in (0.0, 0.05):
        s, space, truth, needle = _needle_strategy(residual_tail=tail)
        n, total = s.n_c[needle], s.sum_c[needle]
        own[tail] = (s.posterior_mean()[needle], total / n)
        rec = next(r for r in s.best(len(space)) if r.config == space.config(needle))
        if tail:
            # the wide component explains the needle: its value is (almost) its own mean, and the
            # interval (of a two-Gaussian posterior) contains its true mean
            assert s._wide()[3][needle] > 0.9
            assert s.best(1)[0] == rec
            assert rec.ci_low < truth[needle] < rec.ci_high
        else:  # one Gaussian residual shrinks it toward the model: its interval misses
            assert rec.ci_high < truth[needle]
    (v0, m0), (v1, m1) = own[0.0], own[0.05]
    assert m0 == m1 and m1 - v1 < 0.05 < m0 - v0


def test_heavy_tailed_residual_off_leaves_draws_and_results_unchanged():
    space = small_space()
    truth = additive_truth(space)
    a = run("structured-tt", space, truth, 60, residual_tail=0.0)
    b = run("structured-tt", space, truth, 60, residual_tail=0.0, residual_wide=0.5)
    assert a.best(5) == b.best(5) and np.array_equal(a._mu, b._mu)


def test_heavy_tailed_residual_keeps_model_variances_exact_through_rank_one_updates():
    # h_c = x_c^T C x_c of every pulled configuration is tracked through each tell's rank-one
    # update instead of being recomputed; it must equal the direct computation
    space = small_space()
    truth = additive_truth(space)
    s = run("structured-tt", space, truth, 80, residual_tail=0.05)
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(20):
        s._wide()  # tracks every pulled configuration
        c = s.ask()
        s.tell(c, float(truth[space.index(c)] + 0.1 * rng.standard_normal()))
        if s._lev_m:  # no refactor since: the tracked values went through the rank-one update
            pulled = np.flatnonzero(s.n_c)
            tracked = s._lev_pos[pulled] >= 0
            r = np.asarray(s._design_matrix(pulled[tracked]) @ s._root)
            direct = np.einsum("ij,ij->i", r, r)
            np.testing.assert_allclose(s._lev_h[s._lev_pos[pulled[tracked]]], direct, rtol=1e-9, atol=1e-15)
            checked += 1
    assert checked >= 10


# -- finite population (paired sampling) ----------------------------------------------------------
def test_population_off_leaves_results_bit_identical():
    space = small_space()
    truth = additive_truth(space)
    a = run("structured-tt", space, truth, 60)
    b = run("structured-tt", space, truth, 60, population=0)
    assert a.best(5) == b.best(5) and np.array_equal(a._mu, b._mu) and np.array_equal(a._root, b._root)
    # ... and equal to the committed tuning-set run (evals/results/ten_percent_tuning_synthetic.json,
    # structured-tt:residual_tail=0@paired/b4, medium surface, seed 1000), made before the option existed
    from autorag_hp.bench import make_surface, run_one

    # (structured-tt:residual_tail=0@paired/b4 then; with population="auto" the default, population=0 now);
    # iid sampling leaves the default off
    for spec, sampling, want in (("structured-tt:residual_tail=0:population=0", "paired",
                                  [0.021244066412156593, 0.0023593018123586607]),
                                 ("structured-tt:residual_tail=0", "iid", [0.0015854506960498727] * 2)):
        r = run_one(make_surface("medium", seed=1000), spec, 1000, budget=0.2, batch=4, checkpoints=1,
                    at_budgets=(0.1, 0.2), sampling=sampling)
        assert [a["simple_regret"] for a in r["at_budgets"]] == want


@pytest.mark.parametrize("bad,match", [
    ({"population": -1}, r"population must be 0 \(off\), a number >= 1 .* got -1"),
    ({"population": 0.5}, r"population must be 0 \(off\), a number >= 1 .* got 0.5"),
    ({"population": float("nan")}, r"population must be 0 \(off\), a number >= 1 .* got nan"),
    ({"population": "all"}, r"population must be 0 \(off\), a number >= 1 .* or 'auto', got 'all'"),
    ({"population": 5, "residual_tail": 0.05}, "population=5 needs residual_tail=0 .* got residual_tail=0.05"),
])
def test_population_is_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        make_strategy("structured-tt", small_space(), **bad)


def test_population_keeps_the_rank_one_posterior_exact():
    # with population P a configuration's mean counts n / (s2 f(n) + n tau^2), f = max(1 - min(n, P)/P, 1e-3)
    space = small_space()
    p = 4
    s = run("structured-ts", space, additive_truth(space), 120, residual_eb=False, residual_scale=0.05, population=p)
    t2 = 0.05 ** 2

    def expected():
        prec = np.diag(s.prior_prec)
        b = np.zeros(s.design.d)
        for i in np.flatnonzero(s.n_c):
            x = np.zeros(s.design.d)
            x[s.design.active(space.coords_of_index(int(i)))] = 1.0
            n = s.n_c[i]
            w = n / (s._s2 * max(1 - min(n, p) / p, 1e-3) + n * t2)
            prec += w * np.outer(x, x)
            b += w * (s.sum_c[i] / n) * x
        cov = np.linalg.inv(prec)
        return cov @ b, cov

    mu, cov = expected()  # the rank-one path: at the noise variance of the last factorisation
    assert np.allclose(s._mu, mu, atol=1e-7) and np.allclose(s._root @ s._root.T, cov, atol=1e-8)
    s._factor()  # a fresh factorisation (at the current noise variance) agrees too
    mu, cov = expected()
    assert np.allclose(s._mu, mu, atol=1e-7) and np.allclose(s._root @ s._root.T, cov, atol=1e-8)


def test_population_trusts_a_fully_seen_configuration_and_proposes_it_no_more():
    space = small_space()
    truth = additive_truth(space)
    p = 3
    s = run("structured-tt", space, truth, 80, population=p)  # 36 configurations x 3 pulls > 80
    assert s.n_c.max() <= p  # a configuration that saw every question is not proposed while others remain
    done = np.flatnonzero(s.n_c >= p)
    assert len(done)
    k, sd = s._shrink(s._s2)
    assert np.all(k[done] > 0.95) and np.all(sd[done] < 0.01)  # its own mean is (nearly) exact
    recs = s.best(3)
    assert all(r.ci_low <= r.mean <= r.ci_high for r in recs)


def test_population_survives_state_and_load():
    space = small_space()
    truth = additive_truth(space)
    a = run("structured-tt", space, truth, 40, population=4)
    b = make_strategy("structured-tt", space, seed=0, population=4)
    b.load(json.loads(json.dumps(a.state())))
    assert b.describe()["options"]["population"] == 4
    rng = np.random.default_rng(5)
    for _ in range(20):
        ca, cb = a.ask(), b.ask()
        assert ca == cb
        r = float(truth[space.index(ca)] + 0.1 * rng.standard_normal())
        a.tell(ca, r)
        b.tell(cb, r)
    assert a.best(3) == b.best(3)


def test_paired_population_helper():
    from autorag_hp.objective import paired_population
    from autorag_hp.strategies import strategy_class

    tt, hier = strategy_class("structured-tt"), strategy_class("hier-ucb")
    kw = {"n_questions": 50, "batch": 4}
    assert paired_population(tt, {"population": "auto"}, sampling="paired", **kw) == {"population": 12.5}
    assert paired_population(tt, {"population": "auto"}, sampling="iid", **kw) == {"population": 0}
    assert paired_population(tt, {"population": "auto", "residual_tail": 0.05}, sampling="paired", **kw) == \
        {"population": 0}
    assert paired_population(tt, {"population": 7}, sampling="paired", **kw) == {}  # the user's value stays
    assert paired_population(hier, {}, sampling="paired", **kw) == {}
    default = tt.Options().population
    assert paired_population(tt, {}, sampling="paired", **kw) == ({"population": 12.5} if default == "auto" else {})


def test_population_counts_the_questions_a_pass_leaves_out():
    # N = 50 questions, 4 per pull: a pass is 12 whole pulls covering 48 questions, so after 12 pulls
    # the own mean's variance keeps the factor (N - 48) / N = 0.04 (not the floor), and after 3 pulls
    # (N - 12) / N; a configuration is not proposed again once it has had 12 pulls.
    space = small_space()
    s = make_strategy("structured-tt", space, seed=0, population=50 / 4)
    assert s._own_s2(1.0, 12) == pytest.approx(2 / 50)
    assert s._own_s2(1.0, 3) == pytest.approx(38 / 50)
    assert s._own_s2(1.0, 20) == pytest.approx(1e-3)
    t = make_strategy("structured-tt", space, seed=0, population=12)
    assert t._own_s2(1.0, 12) == pytest.approx(1e-3)  # N a multiple of the batch: the pass is exact


# -- question-batch offsets (batch_effects, paired sampling) ---------------------------------------
def _paired_run(pulls: int, *, per: int = 8, seed: int = 0, **opts):
    """A strategy fed the two-way rewards of paired sampling: every configuration's k-th pull gets
    the k-th batch's shared offset (one pass of ``per`` batches, summing to zero) plus noise."""
    space = small_space()
    truth = additive_truth(space)
    rng = np.random.default_rng([seed, 7])
    offsets = rng.normal(0.0, 0.1, per)
    offsets -= offsets.mean()
    s = make_strategy("structured-tt", space, seed=seed, population=per, **opts)
    told = []
    for _ in range(pulls):
        c = s.ask()
        i = space.index(c)
        k = int(s.n_c[i])
        r = float(truth[i] + offsets[k] + 0.02 * rng.standard_normal())
        s.tell(c, r)
        told.append((c, k, r))
    return s, told, offsets, truth


def test_batch_effects_recover_the_offsets_and_keep_a_full_pass_exact():
    s, told, offsets, _ = _paired_run(150, batch_effects=True, residual_eb=False)
    seen = len(s._delta)
    assert seen >= 4
    assert np.max(np.abs(s._delta - offsets[:seen])) < 0.03  # offsets of spread 0.1, noise 0.02
    raw = np.zeros(len(s.n_c))
    for c, _, r in told:
        raw[s.space.index(c)] += r
    full = np.flatnonzero(s.n_c == 8)
    assert len(full)  # a configuration that saw the whole pass keeps its raw (exact) mean
    np.testing.assert_allclose(s.sum_c[full], raw[full], atol=1e-9)
    part = np.flatnonzero((s.n_c > 0) & (s.n_c < 8))
    cum = np.concatenate([[0.0], np.cumsum(s._delta)])
    np.testing.assert_allclose(s.sum_c[part], raw[part] - cum[s.n_c[part].astype(int)], atol=1e-9)


def test_batch_effects_model_equals_one_fed_the_adjusted_rewards():
    # after an estimate every sum the model keeps is what a model without the option would hold
    # had it been told each reward less its batch's final offset (150 tells: the last estimate is
    # at the last tell)
    s, told, _, _ = _paired_run(150, batch_effects=True, residual_eb=False)
    ref = make_strategy("structured-tt", small_space(), seed=0, population=8, batch_effects=False, residual_eb=False)
    for c, k, r in told:
        ref.tell(c, r - float(s._delta[k]))
    for name in ("n_c", "sum_c", "xty", "gram"):
        np.testing.assert_allclose(getattr(s, name), getattr(ref, name), atol=1e-9, err_msg=name)
    assert s._ss_within == pytest.approx(ref._ss_within, abs=1e-9) and s._tot == pytest.approx(ref._tot, abs=1e-9)
    s._factor()
    ref._factor()
    np.testing.assert_allclose(s._mu, ref._mu, atol=1e-8)
    assert [r.config for r in s.best(5)] == [r.config for r in ref.best(5)]


def test_batch_effects_need_paired_population_and_are_validated():
    space = small_space()
    truth = additive_truth(space)
    # no population (iid sampling): the option changes nothing
    a = run("structured-tt", space, truth, 60, population=0, batch_effects=True)
    b = run("structured-tt", space, truth, 60, population=0, batch_effects=False)
    assert a.best(5) == b.best(5) and np.array_equal(a._mu, b._mu) and len(a._delta) == 0
    with pytest.raises(ValueError, match="batch_effects must be true or false, got 'yes'"):
        make_strategy("structured-tt", space, batch_effects="yes")


def test_batch_effects_off_reproduce_the_committed_paired_run():
    # evals/results/ten_percent_tuning_synthetic_fpc.json, structured-tt:residual_tail=0:population=auto@paired/b4,
    # medium surface, seed 1000, made before the option existed
    from autorag_hp.bench import make_surface, run_one

    r = run_one(make_surface("medium", seed=1000), "structured-tt:batch_effects=false", 1000, budget=0.2, batch=4,
                checkpoints=1, at_budgets=(0.1, 0.2), sampling="paired")
    assert [a["simple_regret"] for a in r["at_budgets"]] == [0.07466925704734872, 0.0015854506960498727]


def test_batch_effects_survive_state_and_load():
    s, _, _, truth = _paired_run(45, batch_effects=True)
    b = make_strategy("structured-tt", s.space, seed=0, population=8, batch_effects=True)
    b.load(json.loads(json.dumps(s.state())))
    np.testing.assert_array_equal(b._delta, s._delta)
    rng = np.random.default_rng(5)
    for _ in range(25):  # through two more estimates
        ca, cb = s.ask(), b.ask()
        assert ca == cb
        r = float(truth[s.space.index(ca)] + 0.1 * rng.standard_normal())
        s.tell(ca, r)
        b.tell(cb, r)
    assert s.best(3) == b.best(3) and np.array_equal(s._delta, b._delta)
    off = make_strategy("structured-tt", s.space, seed=0, population=8, batch_effects=False)
    off.load(json.loads(json.dumps(s.state())))  # the extra keys are ignored without the option
    with pytest.raises(ValueError, match="saved without batch_effects"):
        make_strategy("structured-tt", s.space, seed=0, population=8, batch_effects=True).load(
            json.loads(json.dumps(off.state())))


# -- shared question offsets under paired sampling (the intervals only) -----------------------------
def run_paired(offset_sd: float, *, pulls: int = 150, p: int = 8, seed: int = 0, batch_effects: bool = False):
    """structured-tt fed like paired sampling: a configuration's k-th pull has the k-th batch's shared
    offset d_k (one pass = p ordinals whose offsets sum to zero) plus its own noise (sd 0.03); by
    default with the raw rewards in the model (``batch_effects=False``)."""
    space = small_space()
    truth = additive_truth(space)
    rng = np.random.default_rng([seed, 7])
    d = rng.standard_normal(3 * p) * offset_sd
    for e in range(3):
        d[e * p:(e + 1) * p] -= d[e * p:(e + 1) * p].mean()
    s = make_strategy("structured-tt", space, seed=seed, population=p, batch_effects=batch_effects)
    noise = np.random.default_rng([seed, 8])
    for _ in range(pulls):
        c = s.ask()
        i = space.index(c)
        s.tell(c, float(truth[i] + d[int(s.n_c[i])] + 0.03 * noise.standard_normal()))
    return s, d[:p]


def test_shared_offset_variance_is_estimated_from_same_ordinal_pulls():
    s, d = run_paired(0.1)
    est = s._question_offset()
    assert 0.3 * d.var(ddof=1) < est < 3 * d.var(ddof=1)
    quiet, _ = run_paired(0.0)
    assert quiet._question_offset() < 0.1 * est
    # iid (population 0) and a state saved before the per-ordinal sums existed: no term
    assert run("structured-tt", small_space(), additive_truth(small_space()), 60)._question_offset() == 0.0
    state = s.state()
    del state["own"]["ord_sum"]
    old = make_strategy("structured-tt", small_space(), seed=0, population=8, batch_effects=False)
    old.load(state)
    assert old._question_offset() == 0.0 and np.all(old._offset_var(np.arange(3)) == 0.0)


def test_mean_weights_are_the_linear_response_of_the_posterior_mean():
    s, _ = run_paired(0.1)
    s._factor()
    s._blend_key = None
    v0 = s.posterior_mean()
    idx = np.argsort(-v0)[:3]
    pulled, L = s._mean_weights(idx)
    eps = 0.05  # the value is linear in the means: any step gives the slope
    for j in (0, len(pulled) // 2, len(pulled) - 1, int(np.searchsorted(pulled, idx[0]))):
        c = pulled[j]
        act = s.design.active(s.space.coords_of_index(int(c)))
        s.sum_c[c] += eps * s.n_c[c]  # its mean moves by eps (its pulls' rewards too)
        s.xty[act] += eps * s.n_c[c]
        s._factor()
        s._blend_key = None
        v1 = s.posterior_mean()
        s.sum_c[c] -= eps * s.n_c[c]
        s.xty[act] -= eps * s.n_c[c]
        assert np.allclose((v1[idx] - v0[idx]) / eps, L[:, j], rtol=1e-6, atol=1e-9)


def test_shared_offset_widens_the_intervals_and_leaves_the_ranking_alone():
    s, _ = run_paired(0.1, pulls=40)
    with_term = s.best(5)
    extra = s._offset_var(np.array([s.space.index(r.config) for r in with_term]))
    assert np.all(np.isfinite(extra)) and np.all(extra >= 0) and extra.max() > 1e-4
    saved = s._ord_sum.copy()
    s._ord_sum[:] = 0.0  # the sums no longer cover the pulls: the term is left out
    s._qo_cache = None
    without = s.best(5)
    s._ord_sum, s._qo_cache = saved, None
    assert [(r.config, r.mean, r.pulls) for r in with_term] == [(r.config, r.mean, r.pulls) for r in without]
    for a, b in zip(with_term, without):
        assert np.isfinite(a.ci_low) and np.isfinite(a.ci_high)
        assert a.ci_low <= b.ci_low <= b.ci_high <= a.ci_high
    assert sum(a.ci_high - a.ci_low > b.ci_high - b.ci_low + 1e-6 for a, b in zip(with_term, without)) >= 3
    quiet, _ = run_paired(0.0, pulls=40)
    q = quiet.best(5)
    assert np.max(quiet._offset_var(np.array([quiet.space.index(r.config) for r in q]))) < 0.1 * extra.max()
    # a configuration that saw a whole pass saw every question: no offset left in its own mean
    late, _ = run_paired(0.1, pulls=80)
    idx = np.array([late.space.index(r.config) for r in late.best(5)])
    full = late.n_c[idx] >= 8
    assert full.any() and np.all(late._offset_var(idx)[full] < 1e-8)


def test_offset_gains_agree_with_the_mean_weights_and_enter_the_stopping_draws():
    s, _ = run_paired(0.1, pulls=40)
    g = s._offset_gains()  # (K, configurations)
    idx = np.argsort(-s.posterior_mean())[:4]
    pulled, L = s._mean_weights(idx)
    n = s.n_c[pulled]
    K = g.shape[0]
    from_l = np.array([[np.sum(row * (n > k) / n) for k in range(K)] for row in L])
    assert np.allclose(g[:, idx].T, from_l, atol=1e-12)
    B = s._offset_draws()  # z @ B: the offsets' joint draw; its covariance through the gains
    p = 8
    cov = s._question_offset() * (np.eye(K) - np.ones((K, K)) / p)  # K <= p: one pass
    assert np.allclose(B.T @ B, g.T @ cov @ g, atol=1e-12)
    # without population nothing is added to the stopping rule's draws, which stay as they were
    iid = run("structured-tt", small_space(), additive_truth(small_space()), 60, stop_min_pulls=10)
    assert iid._offset_draws() is None


def test_batch_effects_default_reproduces_the_committed_tuning_run():
    # evals/results/ten_percent_tuning_synthetic_fx.json, the arm the rule chose (tune's default):
    # structured-tt:residual_tail=0:population=auto:batch_effects=true@paired/b2, nonadditive surface, seed 1001
    from autorag_hp.bench import make_surface, run_one

    r = run_one(make_surface("nonadditive", seed=1001), "structured-tt", 1001, budget=0.2, batch=2, checkpoints=1,
                at_budgets=(0.1, 0.2), sampling="paired")
    got = [(a["simple_regret"], a["recall@5"]) for a in r["at_budgets"]]
    assert got == [(0.03478181736194763, 0.2), (0.016412072913754017, 0.6)]


def test_with_batch_effects_the_offsets_posterior_covariance_widens_the_intervals():
    s, _ = run_paired(0.1, pulls=40, batch_effects=True)
    assert s._fx and s._delta_cov.shape == (len(s._delta), len(s._delta)) and len(s._delta) >= 2
    assert np.allclose(s._delta_cov, s._delta_cov.T) and np.linalg.eigvalsh(s._delta_cov).min() > -1e-12
    recs = s.best(5)
    idx = np.array([s.space.index(r.config) for r in recs])
    extra = s._offset_var(idx)
    assert np.all(np.isfinite(extra)) and np.all(extra >= 0) and extra.max() > 1e-5
    saved = s._delta_cov
    s._delta_cov = np.zeros_like(saved)  # offsets known exactly: nothing to add
    assert np.all(s._offset_var(idx) == 0.0) and s._offset_draws() is None
    plain = s.best(5)
    s._delta_cov = saved
    assert [(r.config, r.mean) for r in recs] == [(r.config, r.mean) for r in plain]
    assert all(a.ci_low <= b.ci_low and b.ci_high <= a.ci_high for a, b in zip(recs, plain))
    # the covariance survives state and load, so a resumed run reports the same intervals
    b = make_strategy("structured-tt", small_space(), seed=0, population=8, batch_effects=True)
    b.load(json.loads(json.dumps(s.state())))
    assert np.allclose(b._delta_cov, s._delta_cov) and b._delta_s2d == s._delta_s2d
    assert b.best(5) == recs


@pytest.mark.parametrize("population, level_var", [(12.5, "positive"), (12, "zero")])
def test_batch_effects_pass_leaves_out_the_questions_batch_does_not_divide(population, level_var):
    # N = 50 questions, 4 per pull: a pass is 12 whole batches (48 questions) and P = 12.5, so the 12
    # offsets of a completed pass are NOT known to sum to zero (the 2 left-out questions carry half a
    # batch's share of the prior); with N = 48 (P = 12) they are. The sum's posterior variance says which.
    space = small_space()
    truth = additive_truth(space)
    rng = np.random.default_rng(11)
    offsets = rng.normal(0.0, 0.1, 12)
    offsets -= offsets.mean()
    s = make_strategy("structured-tt", space, seed=0, population=population)
    for _ in range(300):
        c = s.ask()
        i = space.index(c)
        s.tell(c, float(truth[i] + offsets[int(s.n_c[i]) % 12] + 0.02 * rng.standard_normal()))
    assert s.n_c.max() >= 12 and len(s._delta) >= 12
    ones = np.ones(12)
    var_sum = float(ones @ s._delta_cov[:12, :12] @ ones)
    if level_var == "positive":
        assert var_sum > 0.1 * (population - 12) * s._delta_s2d > 0
    else:
        assert abs(var_sum) < 1e-10
