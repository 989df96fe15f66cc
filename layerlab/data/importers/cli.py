"""``layerlab corpus import KIND SRC --out URL``: run a dataset importer and print its summary."""

from __future__ import annotations

import inspect
from typing import Any, Optional

import typer

from layerlab.data.importers import KINDS

_KIND_HELP = "Dataset kind: " + ", ".join(KINDS) + "."
_EPILOG = (
    "Kinds:\n\n"
    + "\n\n".join(f"  {k}: {desc}" for k, (_, desc) in KINDS.items())
    + "\n\nExamples:\n\n"
    "  layerlab corpus import librispeech ../shared/data/librispeech-test-other-excerpt --out ./runs/ls\n\n"
    "  layerlab corpus import voxceleb1 s3://bucket/raw/voxceleb1 --out s3://bucket/corpora/vox1 -o trial_list=veri_test2.txt"
)


def parse_options(kind: str, pairs: list[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into recipe options typed like the option's default."""
    from layerlab.data.importers import recipe_options

    allowed = recipe_options(kind)
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in allowed:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE with KEY one of {sorted(allowed) or 'none'} for {kind}", param_hint="--option")
        out[key] = _coerce(value, allowed[key].default, pair)
    return out


def _coerce(value: str, default: Any, pair: str) -> Any:
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise typer.BadParameter(f"{pair!r}: expected a boolean", param_hint="--option")
    if isinstance(default, (int, float)):
        try:
            return type(default)(value)
        except ValueError:
            raise typer.BadParameter(f"{pair!r}: expected a {type(default).__name__}", param_hint="--option") from None
    if isinstance(default, tuple):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if default is inspect.Parameter.empty:
        raise typer.BadParameter(f"{pair!r}: option has no default to infer a type from", param_hint="--option")
    return value


def import_command(
    kind: str = typer.Argument(..., help=_KIND_HELP, metavar="KIND"),
    src: str = typer.Argument(..., help="Dataset root (or CSV file for kind csv): local path or fsspec URL (s3://...)."),
    out: str = typer.Option(..., "--out", help="Output dataset root URL (local path, file://, s3://, memory://)."),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name stored in the manifest (default: KIND)."),
    max_shard_mb: float = typer.Option(128.0, "--max-shard-mb", help="Roll to a new shard at this size."),
    max_seconds: float = typer.Option(60.0, "--max-seconds", help="Quarantine utterances longer than this."),
    option: list[str] = typer.Option([], "--option", "-o", help="Recipe option KEY=VALUE (repeatable), e.g. subset=test-other."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different dataset already at --out (never done silently)."),
) -> None:
    """Import a dataset from its own layout into audio shards; bad files are quarantined with their reason.

    Example:  layerlab corpus import librispeech ../shared/data/librispeech-test-other-excerpt --out ./runs/ls
    """
    from layerlab.data.importers import import_dataset

    if kind not in KINDS:
        raise typer.BadParameter(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}", param_hint="KIND")
    options = parse_options(kind, option)
    from layerlab import storage

    storage.check_input(src)  # missing bucket / refused credentials on either side: one line before any work
    storage.check_output_dir(out)
    summary = import_dataset(kind, src, out, name=name, max_shard_bytes=int(max_shard_mb * 1024 * 1024), max_seconds=max_seconds, overwrite=overwrite, **options)
    typer.echo(summary.render())
    from layerlab.data.manifest import read_manifest

    counts = read_manifest(out).extra.get("import_counts", {})
    if counts:
        typer.echo("import counts:")
    for key, n in counts.items():
        typer.echo(f"  {n:6d}  {key}")


def register(corpus_app: typer.Typer) -> None:
    """Attach ``import`` to the ``corpus`` command group."""
    corpus_app.command("import", epilog=_EPILOG)(import_command)
