"""``layerlab corpus synth``: build the synthetic corpus (the embedded default dataset)."""

from __future__ import annotations

from typing import Optional

import typer


def synth(
    out: str = typer.Option(..., "--out", help="Dataset root URL to write (local path, file://, s3://, memory://)."),
    speakers: Optional[int] = typer.Option(None, "--speakers", min=4, help="Number of synthetic speakers (default 48)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Random seed; one seed always gives byte-identical shards."),
    config: Optional[str] = typer.Option(None, "--config", help="YAML file (path or URL) of SynthConfig fields, e.g. configs/synth_demo.yaml."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Generator processes (default 2)."),
    read_per_speaker: Optional[int] = typer.Option(None, "--read-per-speaker", min=3, help="Read sentences per speaker."),
    clean: bool = typer.Option(False, "--clean", help="No additive noise and no reverb on speech."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different dataset already at --out (never done silently)."),
) -> None:
    """Speak the synthetic corpus with espeak-ng (offline) and write audio shards with labels.

    Tasks: SID, ASV (trial table), PR (phone alignments), KS, IC, speaking style (ER stand-in), ASR.

    Example:  layerlab corpus synth --out ./runs/demo/corpus --speakers 48 --seed 0
    """
    from layerlab.data.synth.build import build_synth_corpus
    from layerlab.data.synth.config import SynthConfig

    try:
        cfg = SynthConfig.from_yaml(config) if config is not None else SynthConfig()
        overrides = {k: v for k, v in {"speakers": speakers, "seed": seed, "workers": workers, "read_per_speaker": read_per_speaker}.items() if v is not None}
        data = cfg.model_dump() | overrides
        if clean:
            data["noise"] = cfg.noise.model_dump() | {"prob": 0.0}
            data["reverb"] = cfg.reverb.model_dump() | {"prob": 0.0}
        cfg = SynthConfig.model_validate(data)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    from layerlab import storage

    storage.check_output_dir(out)  # a missing bucket or refused credentials: one line before any work
    summary = build_synth_corpus(out, cfg, progress=not quiet, overwrite=overwrite)
    typer.echo(summary.render())


def register(corpus_app: typer.Typer) -> None:
    """Attach ``synth`` to the ``corpus`` command group."""
    corpus_app.command("synth")(synth)
