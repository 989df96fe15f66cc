"""``layerlab train supervised|dino|hubert``: train a recipe on Ray Train into an output folder/URL."""

from __future__ import annotations

import json

import typer

EXAMPLES = {
    "supervised": "layerlab train supervised --data runs/demo/corpus --out runs/train/ecapa --config configs/train/supervised-tiny.yaml",
    "dino": "layerlab train dino --data s3://bucket/vox2 --out s3://bucket/train/dino --config configs/train/dino-voxceleb2.yaml",
    "hubert": "layerlab train hubert --data runs/demo/corpus --out runs/train/hubert --config configs/train/hubert-tiny.yaml",
}
DESCRIPTIONS = {
    "supervised": "Supervised ECAPA-TDNN with AAM-softmax (needs speaker labels); per-epoch EER on held-out ASV trials.",
    "dino": "DINO self-supervised ECAPA-TDNN (no labels used); per-epoch teacher EER on held-out ASV trials.",
    "hubert": "Miniature HuBERT (k-means targets, masked prediction); per-epoch masked-prediction accuracy.",
}


def _command(recipe: str):
    def command(
        data: str = typer.Option(..., "--data", help="Audio-shard corpus URL (local path, file://, s3://, gs://)"),
        out: str = typer.Option(..., "--out", help="Output folder/URL: checkpoint, metrics.parquet, curve.png, summary.json; rerun resumes"),
        config: str | None = typer.Option(None, "--config", help=f"YAML of {recipe} config fields (default: the recipe's paper-size defaults)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="start afresh: discard what --out holds (a rerun with another "
                                                                  "config or corpus is refused otherwise)"),
        force: bool = typer.Option(False, "--force", help="take over --out from a writer whose lease went stale (no heartbeat)"),
    ) -> None:
        from layerlab.lease import held
        from layerlab.train.run import run_recipe

        with held(out, f"layerlab train {recipe}", force=force):
            try:
                summary = run_recipe(recipe, data, out, config=config, overwrite=overwrite)
            except (ValueError, FileNotFoundError, RuntimeError) as exc:
                typer.echo(f"error: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}", err=True)
                raise typer.Exit(code=2) from None
        typer.echo(json.dumps({k: summary[k] for k in ("model_spec", "metrics", "random_init", "wall_seconds")}, indent=1))

    command.__doc__ = f"{DESCRIPTIONS[recipe]}\n\nExample:  {EXAMPLES[recipe]}"
    return command


def register(app: typer.Typer) -> None:
    """Add the ``train`` group (supervised, dino, hubert) to the ``layerlab`` command."""
    group = typer.Typer(help=f"Train speaker and speech-SSL models on Ray Train.\n\nExample:  {EXAMPLES['supervised']}",
                        no_args_is_help=True)
    for recipe in ("supervised", "dino", "hubert"):
        group.command(recipe)(_command(recipe))
    app.add_typer(group, name="train")
