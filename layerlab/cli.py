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


def _register() -> None:
    from layerlab.data import cli as data_cli

    data_cli.register(app)
    __import__("layerlab.models.cli", fromlist=["register"]).register(app)
    __import__("layerlab.cka.cli", fromlist=["register"]).register(app)
    __import__("layerlab.extract.cli", fromlist=["register"]).register(app)
    __import__("layerlab.study.cli", fromlist=["register"]).register(app)


_register()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
