"""Search space: named hyperparameters with finite value lists, enumerated lazily."""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["SearchSpace", "Group"]

_ALLOWED_TYPES = (bool, int, float, str)


class Group:
    """A set of parameters that the lower-level bandit tunes jointly.

    Its arms are the cartesian product of its parameters' values, indexed in
    mixed radix with the last parameter varying fastest.
    """

    def __init__(self, name: str, params: Sequence[str], values: Sequence[Sequence[Any]]):
        self.name = name
        self.params = tuple(params)
        self.values = tuple(tuple(v) for v in values)
        self.sizes = tuple(len(v) for v in self.values)
        self.size = math.prod(self.sizes)

    def arm(self, index: int) -> tuple[Any, ...]:
        """The parameter values of arm ``index``."""
        out = []
        for vals, size in zip(reversed(self.values), reversed(self.sizes)):
            index, r = divmod(index, size)
            out.append(vals[r])
        return tuple(reversed(out))

    def label(self, index: int) -> str:
        return ", ".join(f"{p}={v!r}" for p, v in zip(self.params, self.arm(index)))

    def __repr__(self) -> str:
        return f"Group({self.name!r}, params={list(self.params)}, size={self.size})"


class SearchSpace:
    """Named hyperparameters, each with a finite list of int, float, str or bool values.

    >>> space = SearchSpace({"top_k": [1, 3, 5], "embedder": ["bm25", "minilm"]})
    >>> len(space)
    6
    >>> space.config(space.index({"top_k": 3, "embedder": "minilm"}))
    {'top_k': 3, 'embedder': 'minilm'}

    ``groups`` joins parameters that the hierarchical strategies tune together,
    e.g. ``groups={"retrieval": ["top_k", "embedder"]}``; parameters not named in any
    group get a group of their own (the paper's default: one group per parameter).
    Configurations are never materialised: indexing is mixed radix, last parameter fastest.
    """

    def __init__(
        self,
        params: Mapping[str, Sequence[Any]],
        *,
        groups: Mapping[str, Sequence[str]] | None = None,
    ):
        if not isinstance(params, Mapping) or not params:
            raise ValueError(f"params must be a non-empty mapping of name -> values, got {params!r}")
        self._names: tuple[str, ...] = tuple(params)
        self._values: dict[str, tuple[Any, ...]] = {}
        self._lookup: dict[str, dict[Any, int]] = {}
        for name, values in params.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ValueError(
                    f"parameter {name!r}: values must be a list of int, float, str or bool, got {values!r}"
                )
            if len(values) == 0:
                raise ValueError(f"parameter {name!r}: values must be non-empty, got []")
            lookup: dict[Any, int] = {}
            for v in values:
                if not isinstance(v, Hashable) or not isinstance(v, _ALLOWED_TYPES):
                    raise ValueError(
                        f"parameter {name!r}: every value must be a hashable int, float, str or bool, got {v!r}"
                    )
                if isinstance(v, float) and not math.isfinite(v):
                    raise ValueError(f"parameter {name!r}: values must be finite, got {v!r}")
                key = _key(v)
                if key in lookup:
                    raise ValueError(f"parameter {name!r}: duplicate value {v!r}")
                lookup[key] = len(lookup)
            self._values[name] = tuple(values)
            self._lookup[name] = lookup
        self._sizes = tuple(len(self._values[n]) for n in self._names)
        self._size = math.prod(self._sizes)
        self.groups = self._make_groups(groups or {})

    # -- construction helpers -------------------------------------------------------------
    def _make_groups(self, groups: Mapping[str, Sequence[str]]) -> tuple[Group, ...]:
        seen: dict[str, str] = {}
        out: list[Group] = []
        for gname, members in groups.items():
            if isinstance(members, str) or not members:
                raise ValueError(f"group {gname!r}: members must be a non-empty list of parameter names, got {members!r}")
            for p in members:
                if p not in self._values:
                    raise ValueError(f"group {gname!r}: unknown parameter {p!r}; known: {list(self._names)}")
                if p in seen:
                    raise ValueError(f"group {gname!r}: parameter {p!r} is already in group {seen[p]!r}")
                seen[p] = gname
        grouped = {p for m in groups.values() for p in m}
        for name in self._names:  # keep parameter order: a group appears where its first member is
            if name in grouped:
                gname = seen[name]
                if all(g.name != gname for g in out):
                    members = [p for p in self._names if seen.get(p) == gname]
                    out.append(Group(gname, members, [self._values[p] for p in members]))
            else:
                out.append(Group(name, [name], [self._values[name]]))
        return tuple(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SearchSpace":
        """Build from ``{"params": {...}, "groups": {...}}`` or a plain ``{name: values}`` mapping."""
        if "params" in data and isinstance(data["params"], Mapping):
            return cls(data["params"], groups=data.get("groups"))
        return cls(data)

    @classmethod
    def from_file(cls, path: str) -> "SearchSpace":
        """Read a TOML, JSON or YAML file (``[params]`` table and optional ``[groups]``)."""
        from pathlib import Path

        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"search space file {str(p)!r} does not exist")
        text = p.read_text()
        if p.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif p.suffix == ".json":
            import json

            data = json.loads(text)
        elif p.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ValueError(f"search space file must end in .toml, .json or .yaml, got {str(p)!r}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"params": {n: list(v) for n, v in self._values.items()}}
        joint = {g.name: list(g.params) for g in self.groups if len(g.params) > 1 or g.name != g.params[0]}
        if joint:
            out["groups"] = joint
        return out

    # -- queries -------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def sizes(self) -> tuple[int, ...]:
        return self._sizes

    def values(self, name: str) -> tuple[Any, ...]:
        if name not in self._values:
            raise ValueError(f"unknown parameter {name!r}; known: {list(self._names)}")
        return self._values[name]

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for combo in itertools.product(*(self._values[n] for n in self._names)):
            yield dict(zip(self._names, combo))

    def __contains__(self, config: object) -> bool:
        try:
            self.validate(config)  # type: ignore[arg-type]
        except ValueError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={list(v)!r}" for n, v in self._values.items())
        return f"SearchSpace({inner}; size={self._size})"

    # -- mapping config <-> index ----------------------------------------------------------
    def value_index(self, name: str, value: Any) -> int:
        """Position of ``value`` in parameter ``name``'s list; ValueError if absent."""
        lookup = self._lookup.get(name)
        if lookup is None:
            raise ValueError(f"unknown parameter {name!r}; known: {list(self._names)}")
        try:
            return lookup[_key(value)]
        except (KeyError, TypeError):
            raise ValueError(
                f"parameter {name!r}: value {value!r} is not in the space; allowed: {list(self._values[name])}"
            ) from None

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``config`` as a plain dict in parameter order, or raise ValueError naming the problem."""
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a mapping of parameter -> value, got {config!r}")
        unknown = [k for k in config if k not in self._values]
        if unknown:
            raise ValueError(f"config has unknown parameter {unknown[0]!r}; known: {list(self._names)}")
        missing = [n for n in self._names if n not in config]
        if missing:
            raise ValueError(f"config is missing parameter {missing[0]!r}")
        for n in self._names:
            self.value_index(n, config[n])
        return {n: self._values[n][self.value_index(n, config[n])] for n in self._names}

    def coords(self, config: Mapping[str, Any]) -> tuple[int, ...]:
        """Per-parameter value positions of a configuration."""
        self.validate(config)
        return tuple(self.value_index(n, config[n]) for n in self._names)

    def config_from_coords(self, coords: Sequence[int]) -> dict[str, Any]:
        return {n: self._values[n][int(c)] for n, c in zip(self._names, coords)}

    def index(self, config: Mapping[str, Any]) -> int:
        """Mixed-radix index of a configuration in ``range(len(self))``."""
        idx = 0
        for c, size in zip(self.coords(config), self._sizes):
            idx = idx * size + c
        return idx

    def coords_of_index(self, index: int) -> tuple[int, ...]:
        if not isinstance(index, (int,)) and not hasattr(index, "__index__"):
            raise ValueError(f"index must be an integer, got {index!r}")
        index = int(index)
        if not 0 <= index < self._size:
            raise ValueError(f"index must satisfy 0 <= index < {self._size}, got {index}")
        out = []
        for size in reversed(self._sizes):
            index, r = divmod(index, size)
            out.append(r)
        return tuple(reversed(out))

    def config(self, index: int) -> dict[str, Any]:
        """The configuration at ``index``."""
        return self.config_from_coords(self.coords_of_index(index))

    def index_of_coords(self, coords: Sequence[int]) -> int:
        idx = 0
        for c, size in zip(coords, self._sizes):
            idx = idx * size + int(c)
        return idx

    # -- groups ------------------------------------------------------------------------------
    def group_arm(self, group: Group, config: Mapping[str, Any]) -> int:
        """Index of ``config``'s values for ``group`` among the group's arms."""
        idx = 0
        for p, size in zip(group.params, group.sizes):
            idx = idx * size + self.value_index(p, config[p])
        return idx

    def key(self, config: Mapping[str, Any]) -> tuple:
        """A hashable key for a (validated) configuration."""
        return tuple(_key(config[n]) for n in self._names)


def _key(v: Any) -> Any:
    """Lookup key: bools apart from numbers, 3 == 3.0 == numpy.int64(3), strings as strings."""
    if isinstance(v, (bool, np.bool_)):
        return ("bool", bool(v))
    if isinstance(v, numbers.Real):
        return ("num", float(v))
    return (type(v).__name__, v)
