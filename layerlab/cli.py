"""The ``layerlab`` command. Each stage registers its sub-commands from its own ``cli`` module.

Registration imports only the small CLI modules; heavy libraries (torch, ray, s3prl) are imported
inside the command bodies so ``layerlab --help`` stays fast and one broken optional dependency
cannot break unrelated commands.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.25 vendors click; its exceptions are the ones raised
    from typer._click import exceptions as click_exc
    from typer.exceptions import Abort
except ImportError:  # pragma: no cover - older typer on plain click
    from click import exceptions as click_exc
    from click.exceptions import Abort

#: exception types that are the user's mistake (bad option, file, URL, config, cache): one line, exit 2
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                                                FileExistsError, KeyError)
#: object-store client errors (matched by name: botocore is optional) that are the user's mistake too
USER_ERROR_NAMES = ("NoCredentialsError", "PartialCredentialsError", "ClientError", "NoSuchBucket", "EndpointConnectionError", "InvalidEndpoint")
#: failures of the environment (exit 1), printed as their one line: Ray could not start (the line names its log folder)
ENVIRONMENT_ERROR_NAMES = ("RayStartError",)


def error_line(exc: BaseException) -> str:
    """``error: <what> (<where>)`` in one line for a user mistake (``<where>: <what>`` messages are turned around)."""
    from pydantic import ValidationError

    from layerlab.config import ConfigError

    if isinstance(exc, ConfigError):  # already ``<file>: <key path>: <what> (allowed: ...)``
        return f"error: {' '.join(str(exc).split())}"
    if isinstance(exc, ValidationError):
        from layerlab.config import describe_validation

        text = describe_validation(exc)
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(line.strip() for line in text.strip().splitlines()[:1])
    match = re.match(r"^(\S+): (.+)$", text)
    if match and ("/" in match.group(1) or "://" in match.group(1) or match.group(1).startswith("--")) and not text.endswith(")"):
        text = f"{match.group(2)} ({match.group(1)})"
    return f"error: {text}"


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake in the invocation or its inputs (not a bug)."""
    return isinstance(exc, USER_ERRORS) or type(exc).__name__ in USER_ERROR_NAMES


class LayerlabGroup(TyperGroup):
    """The root command: user mistakes end in one line ``error: <what> (<where>)`` and exit code 2.

    ``--debug`` anywhere on the command line shows the full traceback instead.
    """

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if "--debug" in argv:
            argv = [a for a in argv if a != "--debug"]
            return super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=standalone_mode, **extra)
        try:
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click_exc.NoArgsIsHelpError as exc:
            typer.echo(exc.format_message(), err=True)
            code = 2
        except click_exc.ClickException as exc:
            where = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "layerlab"
            typer.echo(f"error: {' '.join(exc.format_message().split())} ({where}; see --help)", err=True)
            code = exc.exit_code
        except Abort:
            typer.echo("error: aborted", err=True)
            code = 1
        except Exception as exc:  # noqa: BLE001 - classified: user mistakes are one line, bugs keep their traceback
            if type(exc).__name__ in ENVIRONMENT_ERROR_NAMES:  # not the user's mistake, but one line all the same
                typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
                code = 1
            elif not is_user_error(exc):
                raise
            else:
                typer.echo(error_line(exc), err=True)
                code = 2
        if standalone_mode:
            sys.exit(code)
        return code


def _version(value: bool) -> None:
    if value:
        from layerlab import __version__

        typer.echo(f"layerlab {__version__}")
        raise typer.Exit()


app = typer.Typer(
    cls=LayerlabGroup,
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


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version, help="Print the layerlab version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
) -> None:
    """Layer-wise analysis of speech-SSL and speaker models (see each command's --help)."""


def _register() -> None:
    from layerlab.data import cli as data_cli

    data_cli.register(app)
    __import__("layerlab.models.cli", fromlist=["register"]).register(app)
    __import__("layerlab.cache.cli", fromlist=["register"]).register(app)
    __import__("layerlab.cka.cli", fromlist=["register"]).register(app)
    __import__("layerlab.extract.cli", fromlist=["register"]).register(app)
    __import__("layerlab.probe.cli", fromlist=["register"]).register(app)
    __import__("layerlab.profile.cli", fromlist=["register"]).register(app)
    __import__("layerlab.study.cli", fromlist=["register"]).register(app)
    __import__("layerlab.train.cli", fromlist=["register"]).register(app)


_register()


def main() -> None:
    """Console-script entry point: run the command, then leave without interpreter finalisation.

    pyarrow tables read from Python-owned buffers (after fsspec reads) could make the process abort at
    interpreter teardown ("terminate called without an active exception", exit 134) in a few percent
    of runs, after the command had finished. The command's own work is complete here: Ray is shut
    down, output is flushed, and the process exits with the command's code.
    """
    import os

    try:
        code = app(standalone_mode=False)
        code = code if isinstance(code, int) else 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run_subcommand(*names: str, prepend: tuple[str, ...] = (), argv: list[str] | None = None) -> None:
    """Entry point of a ``jobs/`` script: ``layerlab <names...> <prepend...> <argv>`` with the same typer options."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    extra = [p for p in prepend if p not in args]
    app(args=[*names, *extra, *args], prog_name=f"jobs/{names[0]}.py")


if __name__ == "__main__":
    main()
