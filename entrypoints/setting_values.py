"""Raw setting values → typed: TOML gives typed values, the environment and flags give strings.

One cattrs converter (:func:`make_settings_converter`) structures them into
:class:`entrypoints.settings.Settings`; each hook here accepts both spellings of a kind (``true``
and ``"yes"``, a list and ``"a,b"``) and refuses the rest with a message naming the kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

import cattrs

__all__ = ["make_settings_converter"]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(raw: object, _: type) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError("expected true or false")


def _int(raw: object, _: type) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
        return int(raw)
    raise ValueError("expected a whole number")


def _float(raw: object, _: type) -> float:
    if isinstance(raw, bool):
        raise ValueError("expected a number")
    try:
        value = float(raw) if isinstance(raw, int | float | str) else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError("expected a number")
    return value


def _str(raw: object, _: type) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def _path(raw: object, _: type) -> Path:
    if not isinstance(raw, str | Path):
        raise ValueError("expected a path")
    return Path(raw).expanduser()


def _strings(raw: object, _: type) -> tuple[str, ...]:
    """A list, or a comma-separated string (environment)."""
    if isinstance(raw, str):
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if isinstance(raw, list | tuple) and all(isinstance(p, str) for p in raw):
        return tuple(raw)
    raise ValueError("expected a list of strings")


def _string_map(raw: object, _: type) -> Mapping[str, str]:
    """A table, or ``key=value,key=value`` (environment)."""
    if isinstance(raw, str):
        pairs = [p.split("=", 1) for p in raw.split(",") if p.strip()]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("expected key=value pairs separated by commas")
        return {k.strip(): v.strip() for k, v in pairs}
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    raise ValueError("expected a table of strings")


def _tables(raw: object, _: type) -> tuple[Mapping[str, Any], ...]:
    if isinstance(raw, list | tuple) and all(isinstance(p, Mapping) for p in raw):
        return tuple(dict(p) for p in raw)
    raise ValueError("expected [[providers]] tables")


def _is_literal(t: Any) -> bool:
    return getattr(t, "__origin__", None) is Literal


def _literal(t: Any) -> Callable[[object, type], object]:
    allowed = get_args(t)

    def structure(raw: object, _: type) -> object:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(sorted(map(str, allowed)))}, got {raw!r}")
        return raw

    return structure


#: hooks for generic types, which cattrs dispatches by predicate rather than by class
_GENERIC_HOOKS: tuple[tuple[object, Callable[[object, type], object]], ...] = (
    (tuple[str, ...], _strings),
    (Mapping[str, str], _string_map),
    (tuple[Mapping[str, Any], ...], _tables),
)


def _is(exact: object) -> Callable[[Any], bool]:
    return lambda t: bool(t == exact)


def make_settings_converter() -> cattrs.Converter:
    conv = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(int, _int)
    conv.register_structure_hook(float, _float)
    conv.register_structure_hook(str, _str)
    conv.register_structure_hook(Path, _path)
    for exact, hook in _GENERIC_HOOKS:
        conv.register_structure_hook_func(_is(exact), hook)
    conv.register_structure_hook_factory(_is_literal, _literal)
    return conv
