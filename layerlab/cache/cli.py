"""``layerlab cache info|verify URL``: describe an activation cache, check every listed file."""

from __future__ import annotations

import typer

cache_app = typer.Typer(
    help="Inspect activation caches.\n\nExample:  layerlab cache info runs/demo/cache/ge2e",
    no_args_is_help=True,
)


@cache_app.command("info")
def info(url: str = typer.Argument(..., help="Cache URL (folder with metadata.json).")) -> None:
    """Print a cache's model, layers (dim, rate, hop, frame convention), tiers, shards, tasks and quarantine.

    Example:  layerlab cache info runs/demo/cache/ge2e
    """
    from layerlab.cache.reader import open_cache

    from layerlab import storage

    storage.check_input(url)
    cache = open_cache(url, verify=False, allow_partial=True)
    m, man = cache.metadata, cache.manifest
    state = "complete" if cache.complete else f"INCOMPLETE ({len(man.shards)} of {m.source.shards} shards)"
    typer.echo(f"cache {url}: {state}")
    typer.echo(f"  model {m.model_spec} ({m.num_parameters:,} parameters), mode {m.mode}, tiers {', '.join(m.tiers)}")
    typer.echo(f"  source {m.source.url} (dataset {m.source.dataset!r}, {m.source.utterances} utterances, {m.source.audio_seconds / 3600:.3f} h)")
    typer.echo(f"  n_utterances {man.kept}, {man.audio_seconds / 3600:.3f} h; quarantined {man.quarantined_source} at source, {man.quarantined_model} in the model")
    for tier in m.tiers:
        typer.echo(f"  {tier} tier: {man.tier_bytes(tier) / 1e6:.2f} MB")
    typer.echo("  layers:")
    for layer in cache.layers:
        geometry = "utterance level" if layer.level == "utterance" else (
            f"{layer.frame_rate_hz:g} Hz, hop {layer.hop_samples}, {layer.frame_convention}"
            + (f" (window {layer.window_samples})" if layer.window_samples else ""))
        typer.echo(f"    {layer.name:<14} dim {layer.dim:<5} {geometry}")
    if cache.tasks:
        typer.echo("  tasks: " + ", ".join(f"{t.name} ({t.kind})" for t in cache.tasks.values()))
    for side in m.cka:
        typer.echo(f"  cka side-output {side.get('name')}: {side.get('estimator', 'feature')}")


@cache_app.command("verify")
def verify(url: str = typer.Argument(..., help="Cache URL.")) -> None:
    """Check every listed file's size and SHA-256 and that ids are unique; exit 1 on any problem.

    Example:  layerlab cache verify s3://bucket/cache/wavlm
    """
    from layerlab.cache.reader import open_cache

    from layerlab import storage

    storage.check_input(url)
    cache = open_cache(url, verify=True, allow_partial=True)
    problems = cache.verify_files()
    for p in problems:
        typer.echo(p, err=True)
    if not cache.complete:
        typer.echo(f"{url}: incomplete ({len(cache.manifest.shards)} of {cache.metadata.source.shards} shards)", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"{url}: all {len(cache.manifest.shards)} shard(s) match the manifest")


def register(app: typer.Typer) -> None:
    """Attach the ``cache`` command group to the root CLI."""
    app.add_typer(cache_app, name="cache")
