"""Run a study plan: reuse finished stages by fingerprint, run ready stages concurrently, stop cleanly.

Markers live under ``<out>/stages/``: ``<id>.started.json`` (fingerprint of a run in progress: a
matching rerun resumes, e.g. extraction keeps finished shards) and ``<id>.done.json`` (fingerprint,
result, wall time, usage). A stage whose done-marker matches its fingerprint is reused, never
recomputed. Each stage runs as a Ray task on a worker (``study/remote.py``); this driver only
schedules, writes markers and records each stage's nodes and CPU/GPU seconds (``run.json`` adds the
driver's own CPU and its share). When a stage fails no new stage starts; running ones finish; the
report still renders and says what failed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from layerlab import storage
from layerlab.study.config import StudyConfig, StudyConfigError
from layerlab.study.execute import StageContext, StageSkipped, run_stage
from layerlab.study.plan import Stage, StudyPlan, build_plan
from layerlab.study.remote import run_on_worker


def marker_url(out: str, stage_id: str, what: str) -> str:
    return storage.join(out, "stages", f"{stage_id.replace('/', '__')}.{what}.json")


def read_marker(out: str, stage_id: str, what: str) -> dict[str, Any] | None:
    url = marker_url(out, stage_id, what)
    try:
        return storage.read_json(url)
    except FileNotFoundError:
        return None


def reusable(stage: Stage, out: str) -> dict[str, Any] | None:
    """The done-marker of ``stage`` when it matches the stage's fingerprint (and its output still exists)."""
    done = read_marker(out, stage.id, "done")
    if not done or done.get("fingerprint") != stage.fingerprint:
        return None
    if done.get("status") == "done" and not storage.exists(stage.out):
        return None
    return done


@dataclass
class StudyResult:
    """What a run did: per-stage records (status, reused, wall time, error), the plan, the report."""

    plan: StudyPlan
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [k for k, r in self.records.items() if r["status"] == "failed"]

    @property
    def computed(self) -> list[str]:
        return [k for k, r in self.records.items() if r["status"] in ("done", "skipped") and not r["reused"]]

    @property
    def reused(self) -> list[str]:
        return [k for k, r in self.records.items() if r["reused"]]

    @property
    def report(self) -> str | None:
        rec = self.records.get("report")
        return (rec.get("result") or {}).get("html") if rec else None


class Runner:
    """Executes stages of a plan with a bounded thread pool; extraction has its own smaller bound."""

    def __init__(self, out: str, say: Callable[[str], None] = print, parallel: int = 2, parallel_extract: int = 1,
                 parallel_train: int = 1, on_workers: bool = False) -> None:
        self.out = out
        self.on_workers = on_workers  # each stage in a Ray task (study/remote.py); False: in this process (unit tests)
        self._say_lock = threading.Lock()

        def locked_say(line: str) -> None:
            with self._say_lock:
                say(line)

        self.say = locked_say
        self.parallel = parallel
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="study")
        self.extract_slots = threading.BoundedSemaphore(parallel_extract)
        # Ray Tune keeps a process-global trainable registry: two Tuner.fit calls from threads of one driver
        # corrupt each other (seen: "dictionary changed size during iteration", one probe loading the other's
        # weights). Probe sweeps on Tune therefore run one at a time per driver; each still spreads its trials
        # over the whole cluster. Ray Train V2 runs do not use that registry: each has its own controller actor.
        self.tune_slot = threading.BoundedSemaphore(1)
        self.train_slots = threading.BoundedSemaphore(parallel_train)
        self.priority: dict[str, int] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def run(self, plan: StudyPlan, only: set[str] | None = None) -> None:
        """Run (or reuse) the plan's stages (``only``: a subset), dependencies first; stop scheduling on failure."""
        todo = [s for s in plan.order() if (only is None or s.id in only) and s.id not in self.records]
        self.priority = downstream_counts(plan)
        running: dict[Future[None], Stage] = {}
        ctx = StageContext(plan, self.results, self.say, self.records)
        while todo or running:
            progressed = self._schedule(todo, running, ctx)
            if not running:
                if todo and not progressed:
                    raise RuntimeError(f"study: stages {[s.id for s in todo]} wait on stages outside the plan")
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                running.pop(fut)
                fut.result()  # _execute records failures itself; this surfaces bugs in the runner

    def _schedule(self, todo: list[Stage], running: dict[Future[None], Stage], ctx: StageContext) -> bool:
        """Start (or reuse, or mark not-run) every ready stage; the report goes last, also after a failure."""
        progressed = False
        failed = any(r["status"] == "failed" for r in self.records.values())
        ready_first = sorted((s for s in todo if s.kind != "report"), key=lambda s: -self.priority.get(s.id, 0))
        for stage in ready_first:  # stable: plan order among equals
            states = [self.records.get(d, {}).get("status") for d in stage.deps]
            if failed or any(s not in (None, "done") for s in states):
                todo.remove(stage)
                why = "the study stopped after a failure" if failed else "a dependency failed or was skipped"
                self._record(stage, "not run", 0.0, False, error=why)
                progressed = True
            elif None not in states:
                done = reusable(stage, self.out)
                if done is None and (len(running) >= self.parallel or not self._claim(stage)):
                    continue  # no free pool thread, or its kind's slot is busy: a later pass starts it
                todo.remove(stage)
                self._start(stage, running, ctx, done)
                progressed = True
        if not running and all(s.kind == "report" for s in todo):
            for stage in list(todo):
                todo.remove(stage)
                self._start(stage, running, ctx, reusable(stage, self.out) if not failed else None)
                progressed = True
        return progressed

    def _gate(self, stage: Stage) -> threading.BoundedSemaphore | None:
        """The slot a stage of this kind must hold: extraction pools, Ray Train runs, one Tune driver at a time."""
        if stage.kind == "extract" and "group" not in stage.params:  # a joint group's member only reads its group's result
            return self.extract_slots
        if stage.kind == "train":
            return self.train_slots
        local = stage.params.get("runner") == "local"  # a local probe trains in this driver, no Tune
        return self.tune_slot if stage.kind == "probe" and not local else None

    def _claim(self, stage: Stage) -> bool:
        """Take the stage's slot without waiting (a gated stage never sits in a pool thread blocking others)."""
        gate = self._gate(stage)
        return gate is None or gate.acquire(blocking=False)

    def _start(self, stage: Stage, running: dict[Future[None], Stage], ctx: StageContext, done: dict[str, Any] | None) -> None:
        """Record a reusable stage, or run it in a pool thread (its slot, if any, is already claimed)."""
        if done is not None:
            self._record(stage, done["status"], done.get("wall_seconds", 0.0), True, result=done.get("result"), error=done.get("reason"),
                         usage=done.get("usage"))
            self.say(f"[reuse] {stage.id}")
        else:
            running[self.pool.submit(self._execute, stage, ctx)] = stage

    def _execute(self, stage: Stage, ctx: StageContext) -> None:
        """Run one stage and release its slot."""
        gate = self._gate(stage)
        try:
            self._execute_now(stage, ctx)
        finally:
            if gate:
                gate.release()

    def _execute_now(self, stage: Stage, ctx: StageContext) -> None:
        """Run one stage: fresh output (or resume a matching interrupted run), markers, timing, errors."""
        started = read_marker(self.out, stage.id, "started")
        resume = bool(started and started.get("fingerprint") == stage.fingerprint)
        for stale in [] if resume else stage.stale_outputs():
            if stale.startswith(self.out.rstrip("/") + "/") and storage.exists(stale):
                storage.remove(stale, recursive=True)  # a stale output of another configuration
        storage.write_json(marker_url(self.out, stage.id, "started"), {"fingerprint": stage.fingerprint, "started_at": _now()})
        self.say(f"[run] {stage.id}" + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        usage: dict[str, Any] | None = None
        try:
            if self.on_workers:
                outcome = run_on_worker(stage, ctx)
                status, usage = outcome["status"], outcome.get("usage")
                result, reason = outcome.get("result") or {}, outcome.get("reason")
            else:
                result = run_stage(stage, ctx)
                status, reason = "done", None
        except StageSkipped as exc:
            result, status, reason = {}, "skipped", str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed stage is recorded and stops the study
            wall = time.perf_counter() - t0
            message = f"{getattr(exc, 'kind', None) or type(exc).__name__}: {exc}"
            self.say(f"[FAILED] {stage.id}: {message}")
            storage.write_json(marker_url(self.out, stage.id, "failed"), {"fingerprint": stage.fingerprint, "error": message,
                                                                        "traceback": getattr(exc, "remote_traceback", "") or traceback.format_exc(),
                                                                        "at": _now()})
            self._record(stage, "failed", wall, False, error=message)
            return
        wall = round(time.perf_counter() - t0, 3)
        fingerprint = stage.fingerprint
        if stage.kind == "report" and any(r["status"] in ("failed", "not run") for r in self.records.values()):
            fingerprint += "+incomplete"  # a report of a failed run shows the failure: never reuse it once the stages finish
        storage.write_json(marker_url(self.out, stage.id, "done"), {"fingerprint": fingerprint, "status": status, "reason": reason,
                                                                  "result": result, "wall_seconds": wall, "finished_at": _now(),
                                                                  "params": stage.params, "usage": usage})
        storage.remove(marker_url(self.out, stage.id, "failed"))
        self.say(f"[{status}] {stage.id} in {wall:.1f} s" + (f": {reason}" if reason else "") + _usage_text(usage))
        self._record(stage, status, wall, False, result=result, error=reason, usage=usage)

    def _record(self, stage: Stage, status: str, wall: float, reused: bool, result: dict[str, Any] | None = None, error: str | None = None,
                usage: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.records[stage.id] = {"id": stage.id, "kind": stage.kind, "status": status, "reused": reused,
                                      "wall_seconds": round(float(wall), 3), "fingerprint": stage.fingerprint, "error": error,
                                      "result": result, "usage": usage}
            if status == "done" and result is not None:
                self.results[stage.id] = result


def downstream_counts(plan: StudyPlan) -> dict[str, int]:
    """How many stages wait, directly or not, on each stage: ready stages start longest chain first.

    Trainings gate an extraction and every probe and comparison of their model, so they start before
    work that nothing waits on; on a small machine this is what keeps the critical path short.
    """
    children: dict[str, set[str]] = {}
    for stage in plan.order():
        for dep in stage.deps:
            children.setdefault(dep, set()).add(stage.id)
    memo: dict[str, set[str]] = {}

    def below(sid: str) -> set[str]:
        if sid not in memo:
            memo[sid] = set()
            for child in children.get(sid, ()):
                memo[sid] |= {child} | below(child)
        return memo[sid]

    return {s.id: len(below(s.id)) for s in plan.order()}


def _usage_text(usage: dict[str, Any] | None) -> str:
    """`` (CPU 12.3 s, GPU 4.0 s on 2 nodes)`` for a stage's progress line."""
    if not usage:
        return ""
    gpu = f", GPU {usage['gpu_seconds']:.1f} s" if usage.get("gpu_seconds") else ""
    nodes = len(usage.get("nodes") or {})
    return f" (CPU {usage.get('cpu_seconds', 0):.1f} s{gpu} on {nodes} node{'s' if nodes != 1 else ''})"


def usage_totals(records: dict[str, dict[str, Any]], driver_cpu_seconds: float) -> dict[str, Any]:
    """The study's CPU and GPU seconds: stages computed in this run (their usage) and the driver's own CPU, with its share."""
    computed = [r for r in records.values() if not r.get("reused") and r.get("usage")]
    stage_cpu = sum(float(r["usage"].get("cpu_seconds") or 0) for r in computed)
    total = stage_cpu + driver_cpu_seconds
    return {"stage_cpu_seconds": round(stage_cpu, 3), "stage_gpu_seconds": round(sum(float(r["usage"].get("gpu_seconds") or 0) for r in computed), 3),
            "driver_cpu_seconds": round(driver_cpu_seconds, 3), "total_cpu_seconds": round(total, 3),
            "driver_cpu_share": round(driver_cpu_seconds / total, 4) if total > 0 else None,
            "stages_measured": len(computed)}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def corpus_tasks_of(records: dict[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Dataset name -> tasks, from finished corpus stages."""
    return {k.split("/", 1)[1]: (r.get("result") or {}).get("tasks", {}) for k, r in records.items() if k.startswith("corpus/") and r["status"] == "done"}


def ensure_ray() -> bool:
    """Join the cluster in RAY_ADDRESS, or start an embedded local Ray; True when this call started it."""
    import ray

    from layerlab.runtime import init_ray

    if ray.is_initialized():
        return False
    init_ray(quiet=True)
    return True


def run_study(config: StudyConfig, out: str, *, config_text: str = "", say: Callable[[str], None] = print) -> StudyResult:
    """Run a whole study into ``out``: corpora first, then every other stage with the corpora's real tasks."""
    driver_cpu0 = time.process_time()  # the driver's own CPU (every thread of this process; not the Ray processes it may start)
    out = storage.canonical_url(out)  # Ray workers (extraction actors, Train workers) run in other working directories
    first = build_plan(config, out)
    if first.problems:
        raise StudyConfigError("study cannot run:\n" + "\n".join(first.problems))

    def write_study_json(plan: StudyPlan) -> None:
        storage.write_json(storage.join(out, "study.json"), {"config": config.model_dump(mode="json", by_alias=True), "config_text": config_text,
                                                             "allow_overlap": config.allow_overlap, "leakage": plan.leakage,
                                                             "cost": plan.cost.to_json() if plan.cost is not None else None})

    write_study_json(first)
    runner = Runner(out, say, config.parallel, config.parallel_extract, config.parallel_train, on_workers=True)
    started_ray = False
    try:
        if any(s.kind == "corpus" and reusable(s, out) is None for s in first.order()):
            started_ray = ensure_ray()
        runner.run(first, only={s.id for s in first.order() if s.kind == "corpus"})
        plan = build_plan(config, out, corpus_tasks_of(runner.records))
        plan.config_text = config_text  # type: ignore[attr-defined]
        if plan.problems:
            raise StudyConfigError("study cannot run:\n" + "\n".join(plan.problems))
        write_study_json(plan)  # the speaker partitions read from the built corpora
        if any(reusable(s, out) is None for s in plan.order()):  # every stage runs as a Ray task (study/remote.py)
            started_ray = ensure_ray() or started_ray
        runner.run(plan)
    finally:
        runner.close()
        if started_ray:
            import ray

            ray.shutdown()
    result = StudyResult(plan, runner.records)
    storage.write_json(storage.join(out, "run.json"), {
        "finished_at": _now(), "computed": result.computed, "reused": result.reused, "failed": result.failed,
        "stages": [{k: v for k, v in r.items() if k != "result"} for r in runner.records.values()],
        "report": result.report, "usage": {**usage_totals(runner.records, time.process_time() - driver_cpu0),
                                           "driver_process_cpu_seconds": round(time.process_time(), 3)},  # start-up and imports included
    })
    return result
