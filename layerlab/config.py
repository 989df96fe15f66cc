"""One loader for typed configs: YAML (or JSON) at any storage URL -> a pydantic model, errors in one line.

Every config error reads ``<file>: <key path>: <what> (allowed: ...)``: unknown keys list the keys allowed
there, wrong values the values allowed, and a duplicate key in a YAML mapping is an error naming both lines
(YAML itself would silently keep the later one).
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from layerlab import storage

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or option is invalid; the message names the file (or option) and the field."""


def describe_validation(exc: ValidationError) -> str:
    """The first problem of a pydantic error as ``field: message`` (plus a count of further problems)."""
    errors = exc.errors()
    first = errors[0]
    msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


# -- one-line errors with the key path and what is allowed ----------------------------------------------

def _members(ann: Any) -> list[Any]:
    """The concrete types inside Optional/Union annotations."""
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(ann) if a is not type(None) for m in _members(a)]
    return [ann]


def _step(ann: Any, part: Any) -> Any:
    """The annotation reached from ``ann`` by one location part (field name, dict key, list index, union tag)."""
    for member in _members(ann):
        if isinstance(member, type) and issubclass(member, BaseModel):
            if member.__name__ == part:
                return member
            found = next((f for n, f in member.model_fields.items() if part in (n, f.alias)), None)
            if found is not None:
                return found.annotation
        origin, args = typing.get_origin(member), typing.get_args(member)
        if origin is dict and isinstance(part, str) and args:
            return args[-1]
        if origin in (list, tuple) and isinstance(part, int) and args:
            return args[0] if origin is list else args[min(part, len(args) - 1)]
    return None


def allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys allowed in the mapping that holds ``loc[-1]`` (walking the config classes)."""
    ann: Any = model
    for part in loc[:-1]:
        ann = _step(ann, part)
        if ann is None:
            return None
    for member in _members(ann):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return sorted(f.alias or n for n, f in member.model_fields.items())
    return None


def key_path(loc: tuple[Any, ...]) -> str:
    """``probe.tasks[1].config.lr`` from a pydantic location (model names and union tags left out)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (part[:1].isupper() or "[" in part or part.startswith("function-")):
            out += f".{part}" if out else part
    return out


def _problem(err: dict[str, Any], model: type[BaseModel] | None, prefix: tuple[Any, ...]) -> tuple[str, str]:
    """(key path, ``what (allowed: ...)``) of one pydantic error."""
    loc = tuple(err.get("loc", ()))
    key = key_path(prefix + loc)
    if err.get("type") == "extra_forbidden":
        allowed = allowed_keys(model, loc) if model is not None else None
        return key, "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if err.get("type") in ("literal_error", "enum") and (err.get("ctx") or {}).get("expected"):
        return key, f"{err.get('input')!r} is not allowed (allowed: {err['ctx']['expected']})"
    return key, " ".join(str(err.get("msg", "invalid")).removeprefix("Value error, ").split())


def format_validation(source: str, exc: ValidationError, model: type[BaseModel] | None = None, prefix: tuple[Any, ...] = ()) -> str:
    """One line for a whole validation error: ``<source>: <key path>: <what> (allowed: ...)``, then how many more.

    ``prefix``: where the validated mapping sits in its file (a probe config nested in a study, say).
    """
    problems = list(dict.fromkeys(_problem(e, model, prefix) for e in exc.errors()))
    key, what = problems[0]
    line = f"{source}: {key}: {what}" if key else f"{source}: {what}"
    if len(problems) > 1:
        line += f" [+{len(problems) - 1} more: {', '.join(k or '(top level)' for k, _ in problems[1:4])}{', ...' if len(problems) > 4 else ''}]"
    return line


def validate(model: type[M], doc: dict[str, Any], where: str, prefix: tuple[Any, ...] = ()) -> M:
    """``model.model_validate(doc)`` with a one-line ConfigError naming ``where`` and the key path."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(format_validation(where, exc, model, prefix)) from None


# -- reading YAML ---------------------------------------------------------------------------------------

def _duplicate_key(node: Any, path: str = "") -> str | None:
    """``<key path>: duplicate key (lines A and B)`` for the first mapping that repeats a key, else None."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for k, v in node.value:
            name = k.value if isinstance(k, yaml.ScalarNode) else None
            if name is not None and name in seen:
                where = f"{path}.{name}" if path else str(name)
                return f"{where}: duplicate key (lines {seen[name]} and {k.start_mark.line + 1}; YAML would keep only the last)"
            if name is not None:
                seen[name] = k.start_mark.line + 1
            found = _duplicate_key(v, f"{path}.{name}" if path else str(name))
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found = _duplicate_key(v, f"{path}[{i}]")
            if found:
                return found
    return None


def parse_yaml(text: str | bytes, url: str) -> dict[str, Any]:
    """A YAML/JSON mapping ({} for an empty document); errors (syntax, a duplicate key, not a mapping) name ``url``."""
    import yaml

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: checked for duplicate keys before anything is built
        duplicate = _duplicate_key(node)
        if duplicate:
            raise ConfigError(f"{url}: {duplicate}")
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{url}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{url}: expected a mapping of settings, got {type(doc).__name__}")
    return doc


def read_yaml(url: str) -> dict[str, Any]:
    """A YAML/JSON mapping from any URL ({} for an empty file); errors name the file."""
    try:
        raw = storage.read_bytes(url)
    except FileNotFoundError:
        raise ConfigError(f"{url}: config file not found") from None
    return parse_yaml(raw, url)


def load_config(model: type[M], url: str | None = None, **overrides: Any) -> M:
    """A typed config from an optional YAML file with non-None ``overrides`` on top (command-line flags)."""
    doc = read_yaml(url) if url else {}
    doc.update({k: v for k, v in overrides.items() if v is not None})
    return validate(model, doc, url or "options")
