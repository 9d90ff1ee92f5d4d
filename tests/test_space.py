import pytest

from autorag_hp import SearchSpace

PARAMS = {"top_k": [1, 3, 5, 7, 9], "chunk_size": [128, 256, 512], "embedder": ["bm25", "minilm"], "compression": [0.3, 0.5, 1.0]}


def test_size_roundtrip_and_lazy_enumeration():
    s = SearchSpace(PARAMS)
    assert len(s) == 90
    configs = list(s)
    assert len(configs) == 90 and len({s.key(c) for c in configs}) == 90
    for i, c in enumerate(configs):
        assert s.index(c) == i and s.config(i) == c


def test_huge_space_is_not_materialised():
    s = SearchSpace({f"p{i}": list(range(10)) for i in range(12)})
    assert len(s) == 10**12
    c = s.config(123456789012)
    assert s.index(c) == 123456789012


def test_numeric_values_match_across_types():
    s = SearchSpace(PARAMS)
    assert s.validate({"top_k": 3.0, "chunk_size": 256, "embedder": "bm25", "compression": 1})["compression"] == 1.0


def test_bool_and_int_are_distinct():
    s = SearchSpace({"flag": [True, False], "n": [0, 1]})
    assert s.validate({"flag": True, "n": 1}) == {"flag": True, "n": 1}
    with pytest.raises(ValueError, match="flag"):
        s.validate({"flag": 1, "n": 1})


@pytest.mark.parametrize("params,match", [
    ({}, "non-empty"),
    ({"a": []}, "'a'.*non-empty"),
    ({"a": [1, 1]}, "'a'.*duplicate value 1"),
    ({"a": [[1], [2]]}, "'a'.*hashable"),
    ({"a": [float("nan")]}, "'a'.*finite"),
    ({"a": "abc"}, "'a'.*list"),
    ({"a": [None]}, "'a'"),
])
def test_bad_space(params, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(params)


@pytest.mark.parametrize("config,match", [
    ({"top_k": 2, "chunk_size": 128, "embedder": "bm25", "compression": 0.3}, "'top_k'.*2"),
    ({"top_k": 1, "chunk_size": 128, "embedder": "bm25"}, "missing parameter 'compression'"),
    ({"top_k": 1, "chunk_size": 128, "embedder": "bm25", "compression": 0.3, "x": 1}, "unknown parameter 'x'"),
    ({"top_k": [1], "chunk_size": 128, "embedder": "bm25", "compression": 0.3}, "'top_k'"),
])
def test_bad_config(config, match):
    s = SearchSpace(PARAMS)
    with pytest.raises(ValueError, match=match):
        s.index(config)
    assert config not in s


def test_groups():
    s = SearchSpace(PARAMS, groups={"context": ["top_k", "compression"]})
    assert [g.name for g in s.groups] == ["context", "chunk_size", "embedder"]
    g = s.groups[0]
    assert g.size == 15 and g.arm(g.size - 1) == (9, 1.0)
    assert s.group_arm(g, {"top_k": 3, "compression": 0.5, "chunk_size": 128, "embedder": "bm25"}) == 4
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        SearchSpace(PARAMS, groups={"g": ["nope"]})
    with pytest.raises(ValueError, match="already in group"):
        SearchSpace(PARAMS, groups={"g": ["top_k"], "h": ["top_k", "embedder"]})


def test_files_roundtrip(tmp_path):
    s = SearchSpace(PARAMS, groups={"context": ["top_k", "compression"]})
    p = tmp_path / "space.toml"
    p.write_text('[params]\ntop_k = [1, 3, 5, 7, 9]\nchunk_size = [128, 256, 512]\nembedder = ["bm25", "minilm"]\n'
                 'compression = [0.3, 0.5, 1.0]\n[groups]\ncontext = ["top_k", "compression"]\n')
    assert SearchSpace.from_file(str(p)) == s
    assert SearchSpace.from_dict(s.to_dict()) == s
    with pytest.raises(FileNotFoundError):
        SearchSpace.from_file(str(tmp_path / "missing.toml"))
