"""``layerlab cka``: layer x layer CKA maps of one or two activation caches (tables + heat maps)."""

from __future__ import annotations

import typer


def cka_command(
    a: str = typer.Option(..., "--a", help="Activation cache of model A (folder URL with metadata.json)."),
    b: str = typer.Option(None, "--b", help="Activation cache of model B (same audio shards); adds B x B and A x B maps."),
    out: str = typer.Option(..., "--out", help="Output folder URL (local path, file://, s3://, memory://)."),
    estimator: str = typer.Option("biased", "--estimator", help="biased | debiased | minibatch."),
    level: str = typer.Option("frame", "--level", help="frame (frames tier) | utterance (pooled means; pooled from frames when there is no pooled tier)."),
    layers_a: str = typer.Option(None, "--layers-a", help="Layers of A: names or ranges, e.g. hidden_0..hidden_6,embedding or 0-6 (default all; utterance-level layers are dropped at frame level)."),
    layers_b: str = typer.Option(None, "--layers-b", help="Layers of B (as --layers-a)."),
    batch_size: int = typer.Option(1024, "--batch-size", help="Frames per accumulator update / per minibatch (minibatch estimator); >= 4."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Group-resampling replicates for confidence intervals (0 = none); intervals are leave-one-group-out jackknife."),
    group_by: str = typer.Option(None, "--group-by", help="Resampling unit: shard | speaker | utterance (default: speaker; shard with --from-side-output)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the minibatch shuffle."),
    fast: bool = typer.Option(False, "--fast", help="float32/TF32 GEMMs with float64 sums (error <= 1e-4)."),
    device: str = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)."),
    from_side_output: str = typer.Option(None, "--from-side-output", help="Merge the per-shard CKA states of this extraction side-output (no tier is read); with --b, 'joint' reads the A x B states of a joint extraction (layerlab extract --model A --model B)."),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="Use an unfinished cache's completed shards, or only the utterances two caches share."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip the size and SHA-256 check of every file read (huge trusted runs)."),
    on_ray: bool = typer.Option(False, "--on-ray", help="One Ray task per shard and a checkpointed reducer actor (what jobs/cka.py runs)."),
    checkpoint: str = typer.Option(None, "--checkpoint", help="Reducer checkpoint URL with --on-ray (default: OUT/reducer.ckpt)."),
    measure: str = typer.Option("linear_cka", "--measure", help="Measures, comma-separated: linear_cka, cca_r2, cca_mean, svcca, pwcca, procrustes, ridge_r2 (from the same one-pass state), rbf_cka, mutual_knn (on a sample)."),
    ridge: float = typer.Option(None, "--ridge", help="CCA regulariser eps (lambda = eps * tr(C) / d per layer; default 1e-6)."),
    svcca_fraction: float = typer.Option(None, "--svcca-fraction", help="svcca: share of variance the kept principal directions explain (default 0.99)."),
    ridge_folds: int = typer.Option(None, "--ridge-folds", help="ridge_r2: cross-validation folds of whole groups (default 5)."),
    sample_size: int = typer.Option(None, "--sample-size", help="rbf_cka / mutual_knn: items in the speaker-balanced sample (default 2000)."),
    sample_seed: int = typer.Option(None, "--sample-seed", help="Seed of that sample (default 0)."),
    knn_k: int = typer.Option(None, "--knn-k", help="mutual_knn: neighbours per item (default 10)."),
    rbf_sigma: float = typer.Option(None, "--rbf-sigma", help="rbf_cka: a fixed bandwidth (default: --rbf-threshold x the median distance)."),
    rbf_threshold: float = typer.Option(None, "--rbf-threshold", help="rbf_cka: bandwidth as a fraction of the median distance (default 1.0)."),
    rbf_hsic: str = typer.Option(None, "--rbf-hsic", help="rbf_cka: biased | debiased HSIC (default biased)."),
) -> None:
    """Layer x layer similarity (linear CKA by default, and any --measure) between every pair of layers: Parquet tables and PNG heat maps.

    Example:  layerlab cka --a runs/demo/cache/wavlm_base --b runs/demo/cache/ecapa --out runs/demo/cka --estimator debiased --level frame

    Joint:    layerlab cka --a caches/fbank --b caches/wavlm --from-side-output joint --out runs/cka-fbank-wavlm

    Measures: layerlab cka --a caches/wavlm --out runs/cka-all --level utterance --measure linear_cka,cca_r2,svcca,pwcca,procrustes,ridge_r2,rbf_cka,mutual_knn --bootstrap 1
    """
    from layerlab.config import validate
    from layerlab.cka.measure_registry import MeasureOptions

    from layerlab import storage
    from layerlab.cka.pipeline import CKAJob, run_cka

    for url in (a, b, checkpoint):  # missing buckets / refused credentials: one line naming the URL, before any work
        if url:
            storage.check_input(url)
    storage.check_output_dir(out)
    given = {"ridge": ridge, "svcca_fraction": svcca_fraction, "ridge_folds": ridge_folds, "sample_size": sample_size, "sample_seed": sample_seed,
             "knn_k": knn_k, "rbf_sigma": rbf_sigma, "rbf_threshold": rbf_threshold, "rbf_hsic": rbf_hsic}
    options = validate(MeasureOptions, {k: v for k, v in given.items() if v is not None}, "layerlab cka options")
    unit = group_by or ("shard" if from_side_output else "speaker")
    job = CKAJob(a, b, estimator=estimator, level=level, batch_size=batch_size, seed=seed, group_by=unit if bootstrap else "shard",
                 device=device, fast_matmul=fast, side_output=from_side_output, layers_a=layers_a, layers_b=layers_b,
                 verify=not no_verify, allow_partial=allow_partial, bootstrap=bootstrap, measures=measure, options=options)
    if on_ray and not from_side_output:  # side-output states are only summed: no per-shard work to distribute
        from layerlab.cka.reducer import run_cka_on_ray
        from layerlab.runtime import init_ray

        init_ray()
        summary = run_cka_on_ray(job, out, checkpoint or storage.join(out, "reducer.ckpt"), bootstrap)
    else:
        summary = run_cka(job, out, bootstrap=bootstrap, progress=lambda msg: typer.echo(msg, err=True))
    for note in summary.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    for entry in summary["measures"].values():
        for url in entry["tables"] + [entry["heatmap"]]:
            typer.echo(url)
    if summary.get("agreement"):
        typer.echo(summary["agreement"])


def register(app: typer.Typer) -> None:
    """Add the ``cka`` command to the root ``layerlab`` app."""
    app.command("cka")(cka_command)
