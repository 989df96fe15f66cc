"""`layerlab study CONFIG.yaml [--out URL] [--dry-run]` and `layerlab demo` (the packaged demo study)."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def run_config(config: str, out: str | None, dry_run: bool, as_json: bool = False) -> None:
    """Load, plan and (unless ``dry_run``) run a study; exit 1 with the reason on bad input or a failed stage.

    At ``--dry-run`` a plan the cost model refuses (over budget, a stage that cannot fit in memory, a CKA sample
    its split cannot give) prints one ``error:`` line per problem, naming the stage and the number, and exits 2.
    """
    from layerlab.study.config import StudyConfigError, load_study_config

    try:
        cfg, text = load_study_config(config)
        target = out or cfg.out or f"runs/{cfg.name}"
        if dry_run:
            from layerlab.study.dryrun import plan_summary, render_plan
            from layerlab.study.plan import build_plan

            plan = build_plan(cfg, target)
            if as_json:
                import json

                typer.echo(json.dumps(plan_summary(plan), indent=1))
            else:
                typer.echo(render_plan(plan))
            cost_problems = plan.cost.problems if plan.cost is not None else []
            for problem in plan.problems:
                if problem.startswith("leakage:") or problem in cost_problems:
                    typer.echo(f"error: {problem} ({config})", err=True)
            raise typer.Exit(2 if cost_problems else 1 if plan.problems else 0)
        from layerlab.study.runner import run_study

        result = run_study(cfg, target, config_text=text, say=typer.echo)
    except StudyConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"stages: {len(result.computed)} computed, {len(result.reused)} reused, {len(result.failed)} failed")
    if result.report:
        typer.echo(f"report: {result.report}")
    if result.failed:
        typer.echo(f"FAILED: {', '.join(result.failed)} (finished stages stay reusable; fix and rerun)", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `study` and `demo` to the layerlab command."""

    @app.command("study")
    def study_cmd(
        config: str = typer.Argument(..., help="study YAML (path or URL)"),
        out: str = typer.Option(None, "--out", help="results folder or URL (default: the config's `out`, else runs/<name>)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate offline and print the plan with its cost table; run nothing"),
        as_json: bool = typer.Option(False, "--json", help="with --dry-run: print the plan and its costs as one JSON object"),
    ) -> None:
        """Run a study: corpus -> train -> extract -> probe -> CKA -> one HTML report; finished stages are reused.

        --dry-run prints every stage with its cost (audio hours, bytes written and read by tier, GPU-hours, peak memory)
        and the totals; a `budget:` the plan breaks is an `error:` line naming the stage (exit 2).

        Example:  layerlab study configs/demo.yaml --out runs/demo
        Example:  layerlab study configs/paper.yaml --dry-run --json
        """
        run_config(config, out, dry_run, as_json)

    @app.command("demo")
    def demo_cmd(
        out: str = typer.Option("runs/demo", "--out", help="results folder or URL"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan only"),
    ) -> None:
        """Run the packaged demo study (synthetic corpus, offline, local Ray) and write its report.

        Example:  layerlab demo --out runs/demo
        """
        run_config(str(DEMO_CONFIG), out, dry_run)
