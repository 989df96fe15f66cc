"""One loader for typed configs: YAML (or JSON) at any storage URL -> a pydantic model, errors in one line."""

from __future__ import annotations

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
    where = ".".join(str(p) for p in first.get("loc", ())) or "value"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def validate(model: type[M], doc: dict[str, Any], where: str) -> M:
    """``model.model_validate(doc)`` with a one-line ConfigError naming ``where``."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(f"{describe_validation(exc)} ({where})") from exc


def read_yaml(url: str) -> dict[str, Any]:
    """A YAML/JSON mapping from any URL ({} for an empty file); errors name the file."""
    import yaml

    try:
        doc = yaml.safe_load(storage.read_bytes(url)) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found ({url})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]} ({url})") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"expected a mapping of settings, got {type(doc).__name__} ({url})")
    return doc


def load_config(model: type[M], url: str | None = None, **overrides: Any) -> M:
    """A typed config from an optional YAML file with non-None ``overrides`` on top (command-line flags)."""
    doc = read_yaml(url) if url else {}
    doc.update({k: v for k, v in overrides.items() if v is not None})
    return validate(model, doc, url or "options")
