"""`layerlab study CONFIG.yaml [--out URL] [--dry-run]` and `layerlab demo` (the packaged demo study)."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def problem_line(config: str, problems: list[str]) -> str:
    """One ``error:`` line for the problems a plan found: the first, naming the config file, and how many more."""
    more = f" (+{len(problems) - 1} more problem(s); `layerlab study {config} --dry-run` lists them)" if len(problems) > 1 else ""
    return f"error: {config}: {problems[0]}{more}"


def run_config(config: str, out: str | None, dry_run: bool, *, force: bool = False, verbose: bool = False) -> None:
    """Load, plan and (unless ``dry_run``) run a study; exit 2 with one line on bad input, 1 on a failed stage."""
    from layerlab import storage
    from layerlab.lease import held
    from layerlab.progress import set_verbose
    from layerlab.study.config import StudyConfigError, load_study_config

    set_verbose(verbose)
    try:
        cfg, text = load_study_config(config)
        target = out or cfg.out or f"runs/{cfg.name}"
        if dry_run:
            from layerlab.study.dryrun import render_plan
            from layerlab.study.plan import build_plan

            plan = build_plan(cfg, target)
            typer.echo(render_plan(plan))
            if plan.problems:
                typer.echo(problem_line(config, plan.problems), err=True)
            raise typer.Exit(2 if plan.problems else 0)
        from layerlab.study.runner import run_study

        with held(storage.canonical_url(target), "layerlab study", force=force):
            result = run_study(cfg, target, config_text=text, say=typer.echo)
    except StudyConfigError as exc:
        problems = getattr(exc, "problems", None)
        typer.echo(problem_line(config, problems) if problems else f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"stages: {len(result.computed)} computed, {len(result.reused)} reused, {len(result.failed)} failed")
    if result.report:
        typer.echo(f"report: {result.report}")
    if result.failed:
        typer.echo(f"FAILED: {', '.join(result.failed)} (finished stages stay reusable; fix and rerun)", err=True)
        raise typer.Exit(1)


FORCE_HELP = "take over --out from a writer whose lease went stale (no heartbeat)"
VERBOSE_HELP = "also print third-party banners (Ray Tune's experiment box, TensorBoard hints)"


def register(app: typer.Typer) -> None:
    """Add `study` and `demo` to the layerlab command."""

    @app.command("study")
    def study_cmd(
        config: str = typer.Argument(..., help="study YAML (path or URL)"),
        out: str = typer.Option(None, "--out", help="results folder or URL (default: the config's `out`, else runs/<name>)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate offline and print the plan; run nothing"),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Run a study: corpus -> train -> extract -> probe -> CKA -> one HTML report; finished stages are reused.

        Example:  layerlab study configs/demo.yaml --out runs/demo
        """
        run_config(config, out, dry_run, force=force, verbose=verbose)

    @app.command("demo")
    def demo_cmd(
        out: str = typer.Option("runs/demo", "--out", help="results folder or URL"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan only"),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Run the packaged demo study (synthetic corpus, offline, local Ray) and write its report.

        Example:  layerlab demo --out runs/demo
        """
        run_config(str(DEMO_CONFIG), out, dry_run, force=force, verbose=verbose)
