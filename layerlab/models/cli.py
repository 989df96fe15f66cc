"""``layerlab models ...``: inspect models from the zoo (layers, dims, frame rates, parameters)."""

from __future__ import annotations

import typer

models_app = typer.Typer(
    help="The model zoo: every model seen as named layers.\n\nExample:  layerlab models describe ge2e",
    no_args_is_help=True,
)


@models_app.command("describe")
def describe(
    spec: str = typer.Argument(..., help="Model spec, e.g. ge2e, fbank, s3prl:wavlm_base_plus, hf:/dir, speechbrain:/dir, ckpt:s3://b/m.pt"),
    device: str = typer.Option(None, help="cpu or cuda (default: cuda if available)"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow a bundle whose config runs code while it loads "
                                           "(a speechbrain hyperparams.yaml is HyperPyYAML): only for bundles you trust"),
) -> None:
    """Print a model's layers with dims and frame rates, its parameter count and padding behaviour.

    Example:  layerlab models describe s3prl:wavlm_local:./runs/tiny/wavlm.pt
    """
    import json

    from layerlab.models import ModelError, load

    try:
        model = load(spec, device=device, trust_remote_code=trust_remote_code)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    info = {
        "spec": model.spec,
        "sample_rate": model.sample_rate,
        "num_parameters": model.num_parameters,
        "padding_invariant": model.padding_invariant,
        "device": str(model.device),
        "layers": model.describe(),
    }
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{model.spec}: {len(model.layer_names)} layers, {model.num_parameters:,} parameters, "
               f"{model.sample_rate} Hz input, padding_invariant={model.padding_invariant}, device={model.device}")
    typer.echo(f"{'layer':<12} {'dim':>6} {'frame rate':>12}")
    for layer in model.describe():
        rate = "utterance" if layer["utterance_level"] else f"{layer['frame_rate']:g} Hz"
        typer.echo(f"{layer['name']:<12} {layer['dim']:>6} {rate:>12}")


@models_app.command("build-tiny")
def build_tiny(
    out: str = typer.Option(..., help="Folder to write the tiny checkpoints into"),
    seed: int = typer.Option(0, help="Random seed for the weights"),
) -> None:
    """Write one tiny random checkpoint per supported format (offline demos and tests) and print specs.

    Example:  layerlab models build-tiny --out ./runs/tiny
    """
    from layerlab.models.tiny import build_all

    for name, spec in build_all(out, seed).items():
        typer.echo(f"{name}\t{spec}")


def register(app: typer.Typer) -> None:
    """Attach the ``models`` command group to the root ``layerlab`` app."""
    app.add_typer(models_app, name="models")
