"""``layerlab cka``: layer x layer CKA maps of one or two activation caches (tables + heat maps)."""

from __future__ import annotations

import typer


def cka_command(
    a: str = typer.Option(..., "--a", help="Activation cache of model A (folder URL with metadata.json)."),
    b: str = typer.Option(None, "--b", help="Activation cache of model B (same audio shards); adds B x B and A x B maps."),
    out: str = typer.Option(..., "--out", help="Output folder URL (local path, file://, s3://, memory://)."),
    estimator: str = typer.Option("biased", "--estimator", help="biased | debiased | minibatch."),
    level: str = typer.Option("frame", "--level", help="frame (frames tier) | utterance (pooled means tier)."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Frames per accumulator update / per minibatch (minibatch estimator)."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for confidence intervals (0 = none)."),
    group_by: str = typer.Option(None, "--group-by", help="Bootstrap unit: shard | speaker | utterance (default: speaker; shard with --from-side-output)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the minibatch shuffle and the bootstrap."),
    fast: bool = typer.Option(False, "--fast", help="float32/TF32 GEMMs with float64 sums (error <= 1e-4)."),
    device: str = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)."),
    from_side_output: str = typer.Option(None, "--from-side-output", help="Merge the per-shard CKA states of this extraction side-output (no tier is read)."),
) -> None:
    """Linear CKA between every pair of layers, written as Parquet tables and a PNG heat map.

    Example:  layerlab cka --a runs/demo/cache/wavlm_base --b runs/demo/cache/ecapa --out runs/demo/cka --estimator debiased --level frame
    """
    from layerlab.cka.pipeline import CKAJob, run_cka

    try:
        unit = group_by or ("shard" if from_side_output else "speaker")
        job = CKAJob(a, b, estimator=estimator, level=level, batch_size=batch_size, seed=seed, group_by=unit if bootstrap else "shard",
                     device=device, fast_matmul=fast, side_output=from_side_output)
        summary = run_cka(job, out, bootstrap=bootstrap, progress=lambda msg: typer.echo(msg, err=True))
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    for url in summary["tables"] + [summary["heatmap"]]:
        typer.echo(url)


def register(app: typer.Typer) -> None:
    """Add the ``cka`` command to the root ``layerlab`` app."""
    app.command("cka")(cka_command)
