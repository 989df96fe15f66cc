"""``layerlab extract``: audio shards -> activation cache, on a local or cluster Ray."""

from __future__ import annotations

from typing import Optional

import typer

EXAMPLE = "layerlab extract --model s3prl:wavlm_base_plus --data s3://bucket/corpus --out s3://bucket/cache/wavlm --tier both --concurrency 1,4"


def extract_cmd(
    model: list[str] = typer.Option(..., "--model", help="Model spec, e.g. s3prl:wavlm_base_plus, s3prl:hubert_local:/ckpt.pt, ge2e; repeat for a joint extraction "
                                    "(one actor runs every model on the same decoded audio: one cache per model under --out/<name>/, [NAME=]SPEC names it, plus joint CKA states)"),
    data: str = typer.Option(..., "--data", help="Audio-shard dataset URL (local path, file://, s3://, gs://)"),
    out: str = typer.Option(..., "--out", help="Cache URL to create or resume"),
    tier: Optional[str] = typer.Option(None, "--tier", help="pooled | frames | both (default pooled)"),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", help="model actors: N or MIN,MAX (up to MAX requested while shards wait: the autoscaler adds nodes for them)"),
    device: Optional[str] = typer.Option(None, "--device", help="cuda | cpu | auto (default auto: GPU when the cluster has or its autoscaler can launch GPUs)"),
    gpus_per_actor: Optional[float] = typer.Option(None, "--gpus-per-actor", help="GPUs per model actor when on GPU (default 1; 0.5 packs two per GPU)"),
    cpus_per_actor: Optional[float] = typer.Option(None, "--cpus-per-actor", help="CPUs per model actor (default 1 on GPU, else CPUs / MAX)"),
    placement_timeout: Optional[float] = typer.Option(None, "--placement-timeout", help="seconds to wait for the first actor before failing (default 600)"),
    batch_seconds: Optional[float] = typer.Option(None, "--batch-seconds", help="max padded audio seconds per model call"),
    mode: Optional[str] = typer.Option(None, "--mode", help="auto | bucketed | padded | unbatched"),
    cka: Optional[list[str]] = typer.Option(None, "--cka", help="CKA side-output over all frame-level layers (NAME or NAME=layer,layer); repeatable"),
    config: Optional[str] = typer.Option(None, "--config", help="YAML/JSON file with ExtractConfig fields (flags override)"),
    max_shards: Optional[int] = typer.Option(None, "--max-shards", help="stop after this many new shards"),
    overwrite: bool = typer.Option(False, "--overwrite", help="discard an existing cache at --out"),
    no_progress: bool = typer.Option(False, "--no-progress", help="hide the progress bar"),
    summary_json: Optional[str] = typer.Option(None, "--summary-json", help="also write the run summary (counts, actors per node) as JSON here"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip SHA-256 checks of source shards and of finished cache shards (huge trusted runs)"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="allow model bundles whose config runs code while it loads "
                                           "(a speechbrain hyperparams.yaml is HyperPyYAML): only for bundles you trust"),
    force: bool = typer.Option(False, "--force", help="take over --out from a writer whose lease went stale (no heartbeat)"),
) -> None:
    """Extract every layer of a model over an audio-shard dataset into a resumable activation cache.

    Reruns skip completed shards. Exit code 1 when a shard failed (rerun to retry it).
    With several --model, one actor holds every model: each batch is decoded once and run by each
    model, each model's cache is written to OUT/<name>/, and OUT/<A>/cka/joint-<B>/ holds per-shard
    A x B CKA states (read with `layerlab cka --a OUT/A --b OUT/B --from-side-output joint`).

    Example:  layerlab extract --model s3prl:wavlm_base_plus --data s3://bucket/corpus --out s3://bucket/cache/wavlm --tier both --concurrency 1,4

    Joint:    layerlab extract --model ge2e --model fbank --model wavlm=s3prl:wavlm_local:/ckpt/wavlm.pt --data corpus --out caches
    """
    from layerlab import storage
    from layerlab.data.manifest import read_manifest
    from layerlab.extract.pipeline import extract
    from layerlab.lease import held
    from layerlab.models.registry import check_spec
    from layerlab.runtime import init_ray

    cfg = build_config(config, tier=tier, concurrency=concurrency, device=device, num_gpus_per_actor=gpus_per_actor,
                       num_cpus_per_actor=cpus_per_actor, placement_timeout_s=placement_timeout, batch_seconds=batch_seconds, mode=mode, cka=cka,
                       max_shards=max_shards, overwrite=overwrite, progress=not no_progress, verify=not no_verify,
                       trust_remote_code=trust_remote_code)
    # every user mistake is found here, on the driver, before Ray starts
    from layerlab.extract.joint_cka import member_names, member_spec

    if len(model) > 1:
        member_names(model)  # cache folder names must differ and be safe folder names
    for spec in model:
        check_spec(member_spec(spec) if len(model) > 1 else spec, trust_remote_code=trust_remote_code)
    storage.check_input(data)
    read_manifest(data)
    storage.check_output_dir(out)
    with held(storage.canonical_url(out), "layerlab extract", force=force):
        init_ray()  # RAY_ADDRESS selects a cluster; otherwise an embedded local Ray
        if len(model) > 1:
            from layerlab.extract.joint import extract_joint

            summary = extract_joint(model, data, out, cfg)
        else:
            summary = extract(model[0], data, out, cfg)
    typer.echo(summary.render())
    if summary_json:
        from layerlab import storage

        storage.write_json(summary_json, summary.model_dump(mode="json"))
    if not summary.ok:
        raise typer.Exit(code=1)


def build_config(path: str | None, **flags: object):  # noqa: ANN201 - returns ExtractConfig (import kept lazy)
    """ExtractConfig from an optional YAML/JSON file, with the non-None command-line flags on top."""
    from layerlab.config import read_yaml, validate
    from layerlab.extract.config import CKASideOutput, ExtractConfig

    doc: dict = read_yaml(path) if path else {}
    cka = flags.pop("cka", None)
    doc.update({k: v for k, v in flags.items() if v is not None and v is not False})
    if cka:
        sides = list(doc.get("cka", []))
        for item in cka:  # type: ignore[union-attr]
            name, _, layers = str(item).partition("=")
            sides.append(CKASideOutput(name=name, layers=layers.split(",") if layers else None).model_dump())
        doc["cka"] = sides
    return validate(ExtractConfig, doc, path or "options")


def register(app: typer.Typer) -> None:
    """Add ``extract`` to the ``layerlab`` command."""
    app.command("extract", help=f"Extract a model's layer activations into a resumable cache.\n\nExample:  {EXAMPLE}")(extract_cmd)
