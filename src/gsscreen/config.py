"""Configuration as data: typed dataclasses that load from TOML/JSON and are saved with every run.

Each command owns one config dataclass (e.g. :class:`gsscreen.faces.AlignConfig`). Nested dataclasses are
supported. Unknown keys are an error (a typo in a study file must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (JSON-serialisable: tuples become lists, paths strings)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, _where=where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, where) if len(args) == 1 else value
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=False))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], _where: str = "") -> T:
    """Build dataclass ``cls`` from a dict, checking key names; nested dicts become nested dataclasses."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in [{_where}]" if _where else ""
        raise ValueError(f"unknown config key(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {k: _coerce(hints[k], v, f"{_where}.{k}".strip(".")) for k, v in data.items()}
    return cls(**kwargs)


def read_config_file(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The raw table of a config file: JSON for a ``.json`` suffix, TOML for anything else.

    ``what`` names the file in error messages (e.g. ``"study config"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file does not parse (the message names the file and the parser's complaint).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        return json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{p}: cannot parse {what}: {exc}") from exc


def load_config(cls: type[T], path: str | Path | None = None, **overrides: Any) -> T:
    """Defaults of ``cls``, updated from a TOML or JSON file, then from keyword overrides (None = keep)."""
    data: dict[str, Any] = read_config_file(path) if path is not None else {}
    base = to_dict(from_dict(cls, data)) if data else to_dict(cls())
    for k, v in overrides.items():
        if v is not None:
            base[k] = to_dict(v) if dataclasses.is_dataclass(v) else v
    return from_dict(cls, base)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write a config as JSON (``.json``) or TOML (anything else)."""
    p = Path(path)
    data = to_dict(cfg)
    if p.suffix.lower() == ".json":
        p.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    else:
        import tomli_w

        p.write_text(tomli_w.dumps(_drop_none(data)), encoding="utf-8")


def _drop_none(d: Any) -> Any:
    # TOML has no null: leave None-valued keys out (the dataclass default is None for those).
    if isinstance(d, dict):
        return {k: _drop_none(v) for k, v in d.items() if v is not None}
    if isinstance(d, list):
        return [_drop_none(v) for v in d]
    return d
