"""``ray job submit -- python jobs/study.py CONFIG.yaml [--out URL] [--dry-run]``: thin entry point.

Example:  ray job submit --address http://127.0.0.1:8265 --working-dir . --runtime-env cluster/runtime_env.yaml \
              -- python jobs/study.py configs/paper.yaml --out s3://my-bucket/studies/paper
"""

from __future__ import annotations

import typer

from layerlab.study.cli import run_config


def main() -> None:
    """Parse the same arguments as ``layerlab study``, join the cluster (RAY_ADDRESS), run the study."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def study(
        config: str = typer.Argument(..., help="study YAML (path or URL)"),
        out: str = typer.Option(None, "--out", help="results folder or URL"),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate and print the plan only"),
    ) -> None:
        """Run a layerlab study on the cluster this job was submitted to."""
        run_config(config, out, dry_run)

    app(prog_name="jobs/study.py")


if __name__ == "__main__":
    main()
