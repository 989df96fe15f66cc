"""``layerlab profile``: training-free per-layer profiles of one activation cache against label references."""

from __future__ import annotations

import typer


def profile_command(
    cache: str = typer.Option(..., "--cache", help="Activation cache (folder URL with metadata.json)."),
    out: str = typer.Option(..., "--out", help="Output folder URL (local path, file://, s3://, memory://)."),
    reference: str = typer.Option("all", "--reference", help="References: phone, phone_span, word_span, speaker, keyword, intent, style (comma-separated) or all; "
                                  "one the dataset has no labels for is skipped with its reason."),
    clusters: int = typer.Option(100, "--clusters", help="k of the k-means units for MI/purity with phones (0: no MI); must be below the pilot's frames."),
    pilot_frames: int = typer.Option(20000, "--pilot-frames", help="Frames per layer in the seeded pilot sample (shared shift, k-means codebook)."),
    ridges: str = typer.Option(",".join(f"{r:g}" for r in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)), "--ridges",
                               help="Relative ridge grid of the closed-form classifier (lambda = eps * tr(Cxx) / d), chosen per layer on dev."),
    layers: str = typer.Option(None, "--layers", help="Layers: names or ranges (default all; utterance-level layers only enter utterance references)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pilot sample and the k-means start."),
    no_intervals: bool = typer.Option(False, "--no-intervals", help="Skip the leave-one-speaker-out intervals (no per-speaker states kept)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Use an unfinished cache's completed shards."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the size and SHA-256 check of every file read (huge trusted runs)."),
    on_ray: bool = typer.Option(False, "--on-ray", help="One Ray task per shard and pass (local Ray, or the cluster in RAY_ADDRESS)."),
) -> None:
    """Per layer and reference: CCA with the one-hot labels, a closed-form ridge classifier's held-out accuracy and,
    for phones, MI (PNMI) and purity of k-means units, with leave-one-speaker-out 95 % intervals. Writes
    profile.parquet, profile_replicates.parquet, profile.png and summary.json.

    Example:  layerlab profile --cache runs/demo/cache/synth/hubert_mini --reference phone,speaker,keyword --out runs/demo/profile/hubert_mini
    """
    from layerlab import storage
    from layerlab.profile.pipeline import ProfileJob, run_profile

    storage.check_input(cache)
    storage.check_output_dir(out)
    try:
        grid = tuple(float(x) for x in ridges.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--ridges: expected comma-separated numbers, got {ridges!r}") from None
    job = ProfileJob(cache, reference, clusters=clusters, pilot_frames=pilot_frames, ridges=grid, seed=seed, intervals=not no_intervals,
                     layers=layers, verify=not no_verify, allow_partial=allow_partial)
    say = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    if on_ray:
        from layerlab.profile.distributed import run_profile_on_ray
        from layerlab.runtime import init_ray

        init_ray()
        summary = run_profile_on_ray(job, out, progress=say)
    else:
        summary = run_profile(job, out, progress=say)
    for skip in summary["skipped"]:
        typer.echo(f"note: skipped {skip['reason']}", err=True)
    for ref in summary["references"]:
        if ref["note"]:
            typer.echo(f"note: {ref['name']}: {ref['note']}", err=True)
    typer.echo(summary["table"])
    typer.echo(summary["figure"])


def register(app: typer.Typer) -> None:
    """Add the ``profile`` command to the root ``layerlab`` app."""
    app.command("profile")(profile_command)
