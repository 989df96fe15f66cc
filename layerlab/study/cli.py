"""`layerlab study CONFIG.yaml [--out URL] [--dry-run]` and `layerlab demo` (the packaged demo study)."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")


def problem_line(config: str, problems: list[str]) -> str:
    """One ``error:`` line for the problems a plan found: the first, naming the config file, and how many more."""
    more = f" (+{len(problems) - 1} more problem(s); `layerlab study {config} --dry-run` lists them)" if len(problems) > 1 else ""
    return f"error: {config}: {problems[0]}{more}"


def run_config(config: str, out: str | None, dry_run: bool, *, as_json: bool = False, verify: bool = False, force: bool = False,
               verbose: bool = False) -> None:
    """Load, plan and (unless ``dry_run``) run a study; exit 2 with one line on bad input, 1 on a failed stage.

    At ``--dry-run`` a plan with problems (a config the run would refuse, leakage, a plan the cost model refuses: over
    budget, a stage that cannot fit in memory, a CKA sample its split cannot give) ends in one ``error:`` line naming
    the first problem (the stage and the number) and how many more there are, exit 2."""
    from layerlab import storage
    from layerlab.lease import held
    from layerlab.progress import set_verbose
    from layerlab.study.config import StudyConfigError, load_study_config

    set_verbose(verbose)
    try:
        cfg, text = load_study_config(config)
        target = out or cfg.out or f"runs/{cfg.name}"
        if dry_run:
            from layerlab.study.dryrun import dry_run_plan, plan_summary, render_plan

            plan = dry_run_plan(cfg, target, verify)
            if as_json:
                import json

                typer.echo(json.dumps(plan_summary(plan, verify), indent=1))
            else:
                typer.echo(render_plan(plan, verify))
            if plan.problems:
                typer.echo(problem_line(config, plan.problems), err=True)
            raise typer.Exit(2 if plan.problems else 0)
        from layerlab.study.runner import run_study

        with held(storage.canonical_url(target), "layerlab study", force=force):
            result = run_study(cfg, target, config_text=text, say=typer.echo, verify=verify)
    except StudyConfigError as exc:
        problems = getattr(exc, "problems", None)
        typer.echo(problem_line(config, problems) if problems else f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(2) from None
    repaired = f" ({len(result.repaired)} of them repaired)" if result.repaired else ""
    typer.echo(f"stages: {len(result.computed)} computed{repaired}, {len(result.reused)} reused, {len(result.failed)} failed")
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
        dry_run: bool = typer.Option(False, "--dry-run", help="validate offline and print the plan (run, reuse, repair, skip); run nothing"),
        verify: bool = typer.Option(False, "--verify", help="check reused stages' files by SHA-256 too (sizes are always checked); "
                                                            "damaged stages are recomputed"),
        as_json: bool = typer.Option(False, "--json", help="with --dry-run: print the plan and its costs as one JSON object"),
        force: bool = typer.Option(False, "--force", help=FORCE_HELP),
        verbose: bool = typer.Option(False, "--verbose", help=VERBOSE_HELP),
    ) -> None:
        """Run a study: corpus -> train -> extract -> probe -> CKA -> one HTML report; finished stages are reused.

        --dry-run prints every stage with its cost (audio hours, bytes written and read by tier, GPU-hours, peak memory)
        and the totals; a `budget:` the plan breaks is an `error:` line naming the stage (exit 2).

        Example:  layerlab study configs/demo.yaml --out runs/demo
        Example:  layerlab study configs/paper.yaml --dry-run --json
        """
        run_config(config, out, dry_run, as_json=as_json, verify=verify, force=force, verbose=verbose)

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
