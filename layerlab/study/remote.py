"""Every stage runs as a Ray task on a worker node; the study driver only schedules and records.

``run_on_worker`` ships the stage, the plan and its dependencies' results to one Ray task, which runs
the stage's executor there (corpus build, extraction driver and its actor pool, Tune sweep or local
probe, CKA, report) and returns the result with the stage's usage: the task's own CPU and node plus
the units its executor reports (model actors, CKA shard tasks, Tune trials). The task asks for a
little CPU, so a head node with ``num_cpus=0`` never gets it; Ray retries it when its node dies, and
a retried stage resumes from what its first attempt finished (extraction keeps finished shards).
"""

from __future__ import annotations

import traceback
from typing import Any

from layerlab.study.execute import StageContext, StageSkipped, run_stage
from layerlab.study.plan import Stage

#: CPUs a stage task holds: stages that only drive Ray work (actors, Tune trials, Train workers, CKA shard
#: tasks) take a fraction, so that on a worker node they leave room for the work they start
STAGE_CPUS = {"corpus": 1.0, "train": 0.25, "extract": 0.25, "probe": 0.25, "cka": 0.25, "report": 1.0}
#: a local probe trains inside its stage task: one whole CPU
LOCAL_PROBE_CPUS = 1.0
#: re-runs of a stage task whose worker or node died (the stage resumes; its own errors are not retried)
STAGE_TASK_RETRIES = 3


class RemoteStageError(RuntimeError):
    """A stage failed inside its Ray task: carries the original exception's type name and message."""

    def __init__(self, kind: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.remote_traceback = remote_traceback


def stage_cpus(stage: Stage) -> float:
    """The CPUs the stage's task requests."""
    if stage.kind == "probe" and stage.params.get("runner") == "local":
        return LOCAL_PROBE_CPUS
    return STAGE_CPUS.get(stage.kind, 1.0)


def _stage_task(stage: Stage, plan: Any, results: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]] | None,
                repairing: bool = False, out: str | None = None) -> dict[str, Any]:
    """The body of a stage task: run the executor, measure this process, collect the executor's usage units, and list
    (with checksums) the files the stage wrote, here on the worker."""
    from layerlab.study.reuse import stage_files
    from layerlab.usage import Meter, summarize

    meter = Meter()
    lines: list[str] = []
    ctx = StageContext(plan, results, lines.append, records, repairing={stage.id} if repairing else set())
    try:
        result = run_stage(stage, ctx)
    except StageSkipped as exc:
        return {"status": "skipped", "reason": str(exc), "lines": lines, "usage": summarize([meter.unit(f"{stage.kind} stage task")])}
    except Exception as exc:  # noqa: BLE001 - sent back whole: the driver records it as the stage's failure
        return {"status": "failed", "error_type": type(exc).__name__, "error": str(exc), "traceback": traceback.format_exc(),
                "lines": lines, "usage": summarize([meter.unit(f"{stage.kind} stage task")])}
    files = stage_files(stage, out) if out is not None else None
    units = [meter.unit(f"{stage.kind} stage task")] + list(result.pop("usage_units", None) or [])
    return {"status": "done", "result": result, "lines": lines, "usage": summarize(units), "files": files}


def run_on_worker(stage: Stage, ctx: StageContext, out: str | None = None) -> dict[str, Any]:
    """Run ``stage`` in a Ray task and wait; returns ``{"status", "result" | "reason", "usage", "lines", "files"}``
    (``files``: what the stage wrote under ``out``, listed by the task).

    A stage error comes back as :class:`RemoteStageError` (one line, the original type and message);
    a task lost for good (its node died more often than the retries allow) raises Ray's error.
    """
    import os

    import ray

    from layerlab.runtime import runtime_env
    from layerlab.storage import IO_AUDIT_ENV

    deps = {d: ctx.results[d] for d in _needed(stage, ctx) if d in ctx.results}
    tag = {"LAYERLAB_STAGE": stage.id} if os.environ.get(IO_AUDIT_ENV) else {}  # audited runs tag every read/write with its stage
    task = ray.remote(_stage_task).options(
        num_cpus=stage_cpus(stage), max_retries=STAGE_TASK_RETRIES, retry_exceptions=False,
        runtime_env=runtime_env(tag), name=f"stage {stage.id}")
    outcome = ray.get(task.remote(stage, ctx.plan, deps, ctx.records if stage.kind == "report" else None, stage.id in ctx.repairing, out))
    for line in outcome.get("lines", []):
        ctx.say(line)
    if outcome["status"] == "failed":
        raise RemoteStageError(outcome["error_type"], outcome["error"], outcome.get("traceback", ""))
    return outcome


def _needed(stage: Stage, ctx: StageContext) -> list[str]:
    """The results a stage's executor reads: its dependencies, their corpus and train stages (the report: all)."""
    if stage.kind == "report":
        return list(ctx.results)
    wanted = set(stage.deps)
    for dep in stage.deps:
        wanted |= set(ctx.plan.stages[dep].deps) if ctx.plan is not None and dep in ctx.plan.stages else set()
    wanted |= {k for k in ctx.results if k.startswith(("corpus/", "train/"))}
    return sorted(wanted)
