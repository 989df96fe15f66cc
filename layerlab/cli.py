"""The ``layerlab`` command. Each stage registers its sub-commands from its own ``cli`` module.

Registration imports only the small CLI modules; heavy libraries (torch, ray, s3prl) are imported
inside the command bodies so ``layerlab --help`` stays fast and one broken optional dependency
cannot break unrelated commands.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="layerlab",
    help=(
        "Layer-wise analysis of speech-SSL and speaker models: audio shards, activation caches, "
        "SUPERB-style probes and layer x layer CKA, on a local or cluster Ray.\n\n"
        "Example:  layerlab corpus synth --out ./runs/demo/corpus --speakers 40"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("demo")
def demo(
    out: str = typer.Option("runs/demo", help="Output folder or URL for corpus, caches and results."),
    config: str = typer.Option("", help="YAML DemoConfig (default: configs/demo.yaml)."),
) -> None:
    """Run the embedded default job: synthetic corpus -> caches on local Ray -> CKA maps, speaker EERs.

    Offline, resumable (a rerun skips finished stages).

    Example:  layerlab demo --out runs/demo
    """
    import ray

    from layerlab.demo import DemoConfig, run_demo

    cfg = DemoConfig.from_yaml(config) if config else None
    if not ray.is_initialized():
        ray.init(configure_logging=False, log_to_driver=False)
    try:
        run_demo(out, cfg, say=typer.echo)
    finally:
        ray.shutdown()


def _register() -> None:
    from layerlab.data import cli as data_cli

    data_cli.register(app)
    __import__("layerlab.models.cli", fromlist=["register"]).register(app)
    __import__("layerlab.cka.cli", fromlist=["register"]).register(app)
    __import__("layerlab.extract.cli", fromlist=["register"]).register(app)
    __import__("layerlab.train.cli", fromlist=["register"]).register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
