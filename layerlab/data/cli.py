"""``layerlab corpus ...``: build (synth, import) and inspect (info, verify) audio-shard datasets."""

from __future__ import annotations

import typer

corpus_app = typer.Typer(
    help="Build and inspect audio-shard datasets.\n\nExample:  layerlab corpus synth --out ./runs/demo/corpus --speakers 48",
    no_args_is_help=True,
)


@corpus_app.command("info")
def info(url: str = typer.Argument(..., help="Dataset root URL (local path, file://, s3://, memory://).")) -> None:
    """Print a dataset's manifest summary: utterances, hours, shards, quarantine counts, tables.

    Example:  layerlab corpus info ./runs/demo/corpus
    """
    from layerlab.data.manifest import read_manifest
    from layerlab.data.shards import read_quarantine

    from layerlab import storage

    storage.check_input(url)
    m = read_manifest(url)
    typer.echo(f"dataset {m.dataset!r} at {url}")
    typer.echo(f"  kept {m.kept} utterances, {m.audio_hours:.3f} h, {len(m.shards)} shard(s), {sum(s.bytes for s in m.shards) / 1e6:.1f} MB")
    typer.echo(f"  quarantined {m.quarantined}")
    if m.quarantined:
        for row in read_quarantine(url).to_pylist()[:20]:
            typer.echo(f"    {row['id'] or '<no id>'} ({row['source']}): {row['reason']}")
    for name, t in sorted(m.tables.items()):
        typer.echo(f"  table {name}: {t.rows} rows")
    for key, value in sorted(m.extra.items()):
        text = str(value)
        typer.echo(f"  {key}: {text[:200]}{'...' if len(text) > 200 else ''}")


@corpus_app.command("verify")
def verify_cmd(url: str = typer.Argument(..., help="Dataset root URL.")) -> None:
    """Check every shard and table against the manifest's checksums; exit 1 on any problem.

    Example:  layerlab corpus verify s3://bucket/corpora/voxceleb1
    """
    from layerlab import storage
    from layerlab.data.shards import verify

    storage.check_input(url)
    problems = verify(url)
    for p in problems:
        typer.echo(p, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{url}: all files match the manifest")


def register(app: typer.Typer) -> None:
    """Attach the ``corpus`` command group (and its builders) to the root CLI."""
    __import__("layerlab.data.importers.cli", fromlist=["register"]).register(corpus_app)
    __import__("layerlab.data.synth.cli", fromlist=["register"]).register(corpus_app)
    app.add_typer(corpus_app, name="corpus")
