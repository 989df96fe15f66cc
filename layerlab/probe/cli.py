"""``layerlab probe``: SUPERB-style probes (weighted sum and per layer) on an activation cache, swept with Ray Tune."""

from __future__ import annotations

import typer

EXAMPLE = "layerlab probe --cache runs/demo/cache/ge2e --task sid --out runs/probe/ge2e-sid --layers both --tune 4 --scheduler asha"


def probe_cmd(
    cache: str = typer.Option(..., "--cache", help="Activation cache URL (from `layerlab extract`)"),
    task: str = typer.Option(..., "--task", help="ks | ic | sid | style | er | pr | pr-frame | asv | asv-cosine"),
    out: str = typer.Option(..., "--out", help="Results folder/URL (rerun with the same --out and settings to resume a sweep)"),
    layers: str = typer.Option("both", "--layers", help="weighted | each | both"),
    tune_samples: int = typer.Option(1, "--tune", help="hyperparameter samples of the weighted-sum probe"),
    scheduler: str | None = typer.Option(None, "--scheduler", help="asha (early-stops poor trials on the dev metric)"),
    config: str | None = typer.Option(None, "--config", help="YAML ProbeConfig (training, search space, resources)"),
    seed: int = typer.Option(0, "--seed", help="seed of model init, batch order and sampling"),
    runner: str = typer.Option("tune", "--runner", help="tune (Ray Tune sweep, resumable) | local (trials one after another in "
                                                        "this process: small probes where Tune start-up dominates)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start afresh: discard what --out holds (a rerun with other "
                                                              "settings is refused otherwise)"),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="probe an unfinished cache's finished shards"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the size and SHA-256 check of every cache file read (huge trusted runs)"),
    trust_tune_state: bool = typer.Option(False, "--trust-tune-state", help="resume an earlier Tune sweep in --out by restoring its "
                                          "state, a pickle that can run code: only for an --out nobody else can write (default: recompute)"),
    force: bool = typer.Option(False, "--force", help="take over --out from a writer whose lease went stale (no heartbeat)"),
    verbose: bool = typer.Option(False, "--verbose", help="also print Ray Tune's own banners (experiment box, TensorBoard hint)"),
) -> None:
    """Train a task's probe on the learned weighted sum of all layers and on each layer; write metrics, weights, figures.

    Example:  layerlab probe --cache runs/demo/cache/ge2e --task sid --out runs/probe/ge2e-sid --layers both --tune 4 --scheduler asha
    """
    from layerlab.lease import held
    from layerlab.probe.api import run_probe
    from layerlab.probe.config import ProbeConfig
    from layerlab.probe.source import ProbeInputError
    from layerlab.progress import set_verbose

    set_verbose(verbose)
    cfg = ProbeConfig.from_yaml(config) if config else None
    with held(out, "layerlab probe", force=force):
        try:
            summary = run_probe(cache, task, out, layers=layers, tune_samples=tune_samples, scheduler=scheduler, config=cfg, seed=seed,
                                runner=runner, trust_tune_state=trust_tune_state, verify=not no_verify, allow_partial=allow_partial,
                                overwrite=overwrite)
        except (ProbeInputError, FileNotFoundError, ValueError) as exc:
            typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
            raise typer.Exit(code=2) from None
    typer.echo(render(summary))


def render(summary: dict) -> str:
    """A short human-readable result: test metrics per probe."""
    lines = [f"{summary['model']} / {summary['task']}: results in {summary.get('outputs', {})}"]
    for key, value in summary.get("test", {}).items():
        lines.append(f"  test {key} = {value:.4f}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``probe`` to the ``layerlab`` command."""
    app.command("probe", help=f"Probe a cache: weighted-sum and per-layer SUPERB heads, Tune sweeps.\n\nExample:  {EXAMPLE}")(probe_cmd)
