"""Strategy specs: ``name`` or ``name:key=value:key=value`` (values parsed as JSON where they can be)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["StrategySpec", "parse_key_value", "parse_strategy_spec"]


@dataclass(frozen=True)
class StrategySpec:
    """A strategy name with options, and the label its results are reported under."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def display(self) -> str:
        return self.label or self.name


def parse_key_value(item: str, *, what: str) -> tuple[str, Any]:
    """``key=value`` -> (key, value), the value parsed as JSON where it can be (else a string)."""
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ValueError(f"{what}: {item!r} must look like key=value")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_strategy_spec(text: str | StrategySpec) -> StrategySpec:
    """``name`` or ``name:key=value:key=value`` -> :class:`StrategySpec` (a spec is returned as is)."""
    if isinstance(text, StrategySpec):
        return text
    if not isinstance(text, str):
        raise ValueError(f"strategy spec must be a string like 'hier-ucb:alpha_upper=1.5', got {text!r}")
    parts = [p for p in text.strip().split(":") if p]
    if not parts:
        raise ValueError(f"strategy spec must not be empty, got {text!r}")
    options = dict(parse_key_value(part, what=f"strategy spec {text!r}: option") for part in parts[1:])
    return StrategySpec(parts[0], options, text.strip())
