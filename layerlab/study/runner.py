"""Run a study plan: reuse finished stages by fingerprint, run ready stages concurrently, stop cleanly.

Markers live under ``<out>/stages/``: ``<id>.started.json`` (fingerprint of a run in progress: a
matching rerun resumes, e.g. extraction keeps finished shards) and ``<id>.done.json`` (fingerprint,
result and effective parameters with paths relative to ``--out``, the files the stage wrote with sizes
and checksums, wall time, usage; ``layerlab.study.reuse``). A stage whose done-marker matches its
fingerprint and whose files are intact (sizes; checksums with ``verify``) is reused; a damaged one is
recomputed and the run says so. Each stage runs as a Ray task on a worker (``study/remote.py``); this
driver only schedules, writes markers and records each stage's nodes and CPU/GPU seconds (``run.json``
adds the driver's own CPU and its share). When a stage fails no new stage starts; running ones finish;
the report still renders and says what failed.
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
from layerlab.artifacts import IntegrityError
from layerlab.settings import SettingsMismatch
from layerlab.study.config import StudyConfig, StudyConfigError
from layerlab.study.execute import StageContext, StageSkipped, run_stage
from layerlab.study.plan import Stage, StudyPlan, build_plan
from layerlab.study.remote import run_on_worker
from layerlab.study.reuse import Reuse, check_outputs, inside, relocatable, resolve, shard_damage_only, stage_files


def marker_url(out: str, stage_id: str, what: str) -> str:
    return storage.join_inside(out, "stages", f"{stage_id.replace('/', '__')}.{what}.json")


def read_marker(out: str, stage_id: str, what: str) -> dict[str, Any] | None:
    url = marker_url(out, stage_id, what)
    try:
        return storage.read_json(url)
    except FileNotFoundError:
        return None


def reusable(stage: Stage, out: str, verify: bool = False) -> Reuse | None:
    """The done-marker of ``stage`` when it matches the stage's fingerprint (paths resolved under ``out``), with
    what is wrong with its recorded files, if anything (sizes always, checksums with ``verify``)."""
    done = read_marker(out, stage.id, "done")
    if not done or done.get("fingerprint") != stage.fingerprint:
        return None
    done = resolve(done, out)
    return Reuse(done, check_outputs(done, stage.out, checksums=verify))


def recorded_corpus_tasks(plan: StudyPlan, verify: bool = False) -> dict[str, dict[str, str]]:
    """Dataset name -> tasks of the corpus stages a rerun reuses (what the run plans its probes with)."""
    out = {}
    for stage in plan.order():
        if stage.kind == "corpus":
            reuse = reusable(stage, plan.out, verify)
            if reuse is not None and reuse.ok and reuse.done.get("status") == "done":
                out[stage.id.split("/", 1)[1]] = (reuse.done.get("result") or {}).get("tasks", {})
    return out


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
    def repaired(self) -> list[str]:
        """Stages whose reused outputs were damaged and were recomputed in this run."""
        return [k for k, r in self.records.items() if r.get("repaired")]

    @property
    def report(self) -> str | None:
        rec = self.records.get("report")
        return (rec.get("result") or {}).get("html") if rec else None


class Runner:
    """Executes stages of a plan with a bounded thread pool; extraction has its own smaller bound."""

    def __init__(self, out: str, say: Callable[[str], None] = print, parallel: int = 2, parallel_extract: int = 1,
                 parallel_train: int = 1, verify: bool = False, on_workers: bool = False) -> None:
        from layerlab.progress import StatusBoard

        self.out = out
        self.verify = verify
        self.on_workers = on_workers  # each stage in a Ray task (study/remote.py); False: in this process (unit tests)
        self._reuse: dict[tuple[str, str], Reuse | None] = {}
        self.board = StatusBoard(say)  # stage lines from every thread (locked), and one status line for the stages running
        self.say = self.board.say
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
        self.board.close()

    def reuse(self, stage: Stage) -> Reuse | None:
        """:func:`reusable` once per stage and fingerprint (the file check lists, or with ``verify`` reads, its outputs)."""
        key = (stage.id, stage.fingerprint)
        if key not in self._reuse:
            self._reuse[key] = reusable(stage, self.out, self.verify)
        return self._reuse[key]

    def must_run(self, stage: Stage) -> bool:
        """Whether a run computes ``stage``: no matching done-marker, or damaged outputs (it then needs Ray)."""
        reuse = self.reuse(stage)
        return reuse is None or not reuse.ok

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
                if self.must_run(stage) and (len(running) >= self.parallel or not self._claim(stage)):
                    continue  # no free pool thread, or its kind's slot is busy: a later pass starts it
                todo.remove(stage)
                self._start(stage, running, ctx, self.reuse(stage))
                progressed = True
        if not running and all(s.kind == "report" for s in todo):
            for stage in list(todo):
                todo.remove(stage)
                self._start(stage, running, ctx, self.reuse(stage) if not failed else None)
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

    def _start(self, stage: Stage, running: dict[Future[None], Stage], ctx: StageContext, reuse: Reuse | None) -> None:
        """Record a reusable stage, or run it in a pool thread (its slot, if any, is already claimed); a damaged one is recomputed."""
        if reuse is not None and reuse.ok:
            done = reuse.done
            self._record(stage, done["status"], done.get("wall_seconds", 0.0), True, result=done.get("result"), error=done.get("reason"),
                         usage=done.get("usage"))
            self.say(f"[reuse] {stage.id}")
        else:
            repair = reuse.damage if reuse is not None else None
            running[self.pool.submit(self._execute, stage, ctx, repair)] = stage

    def _execute(self, stage: Stage, ctx: StageContext, repair: str | None = None) -> None:
        """Run one stage and release its slot."""
        from layerlab.progress import report_to

        gate = self._gate(stage)
        try:
            with report_to(self.board, stage.id):  # the stage's progress bars become its part of the status line
                self._execute_now(stage, ctx, repair)
        finally:
            if gate:
                gate.release()

    def _execute_now(self, stage: Stage, ctx: StageContext, repair: str | None = None) -> None:
        """Run one stage: fresh output (or resume a matching interrupted run), markers, timing, errors.

        ``repair``: what is damaged in a finished stage's outputs. It is recomputed afresh, except an extraction
        whose damage is confined to cache shards: that resumes, and the extraction redoes just those shards.
        """
        started = read_marker(self.out, stage.id, "started")
        resume = bool(started and started.get("fingerprint") == stage.fingerprint)
        if repair is not None:
            resume = stage.kind == "extract" and shard_damage_only(read_marker(self.out, stage.id, "done") or {}, stage.out, self.verify)
            if resume:
                ctx.repairing.add(stage.id)
            self.say(f"[repair] {stage.id}: {repair}; " + ("extracting the damaged shards again" if resume else "recomputing the stage"))
        for stale in [] if resume else stage.stale_outputs():
            if stale.startswith(self.out.rstrip("/") + "/") and storage.exists(stale):
                storage.remove(stale, recursive=True, within=self.out)  # a stale output of another configuration (never outside --out)
        storage.write_json(marker_url(self.out, stage.id, "started"), {"fingerprint": stage.fingerprint, "started_at": _now()})
        self.say(f"[run] {stage.id}" + (" (resuming)" if resume else ""))
        t0 = time.perf_counter()
        usage: dict[str, Any] | None = None
        try:
            result, status, reason, usage, files = self._run_stage(stage, ctx, resume)
        except StageSkipped as exc:
            result, status, reason = {}, "skipped", str(exc)
        except Exception as exc:  # noqa: BLE001 - a failed stage is recorded and stops the study
            wall = time.perf_counter() - t0
            kind = getattr(exc, "kind", None) or type(exc).__name__
            message = f"{kind}: {exc}"
            if kind == IntegrityError.__name__:  # a reused input is damaged: the study's own option finds and recomputes it
                message = message.replace("; rerun the build or pass --no-verify", "") + \
                    " (rerun with --verify: reused stages are then checked by checksum and damaged ones recomputed)"
            self.say(f"[FAILED] {stage.id}: {message}")
            storage.write_json(marker_url(self.out, stage.id, "failed"), {"fingerprint": stage.fingerprint, "error": message,
                                                                        "traceback": getattr(exc, "remote_traceback", "") or traceback.format_exc(),
                                                                        "at": _now()})
            self._record(stage, "failed", wall, False, error=message, repaired=repair)
            return
        wall = round(time.perf_counter() - t0, 3)
        fingerprint = stage.fingerprint
        if stage.kind == "report" and any(r["status"] in ("failed", "not run") for r in self.records.values()):
            fingerprint += "+incomplete"  # a report of a failed run shows the failure: never reuse it once the stages finish
        storage.write_json(marker_url(self.out, stage.id, "done"), {
            "fingerprint": fingerprint, "status": status, "reason": reason, "result": relocatable(result, self.out),
            "wall_seconds": wall, "finished_at": _now(), "params": relocatable(stage.params, self.out),
            "out": relocatable(stage.out, self.out), "files": files, "repaired": repair, "usage": usage})
        storage.remove(marker_url(self.out, stage.id, "failed"), within=self.out)
        self._reuse.pop((stage.id, stage.fingerprint), None)
        self.say(f"[{status}] {stage.id} in {wall:.1f} s" + (f": {reason}" if reason else "") + _usage_text(usage) + (" (repaired)" if repair else ""))
        self._record(stage, status, wall, False, result=result, error=reason, repaired=repair, usage=usage)

    def _run_once(self, stage: Stage, ctx: StageContext) -> tuple[dict[str, Any], str, str | None, dict[str, Any] | None, Any]:
        """(result, status, reason, usage, files) of one run of the stage: in a Ray task on a worker, or here (unit tests).

        ``files``: the entries (name, size, checksum) of what the stage wrote, listed where it ran (the driver reads no outputs).
        """
        if self.on_workers:
            outcome = run_on_worker(stage, ctx, out=self.out)
            return outcome.get("result") or {}, outcome["status"], outcome.get("reason"), outcome.get("usage"), outcome.get("files")
        result = run_stage(stage, ctx)
        return result, "done", None, None, stage_files(stage, self.out)

    def _run_stage(self, stage: Stage, ctx: StageContext, resume: bool) -> tuple[dict[str, Any], str, str | None, dict[str, Any] | None, Any]:
        """Run the stage; a resumed one whose library finds other recorded settings in its folder starts afresh once
        (e.g. a probe interrupted under other settings, or a moved study's cache that records its model's old checkpoint path)."""
        try:
            return self._run_once(stage, ctx)
        except Exception as exc:
            mismatch = isinstance(exc, SettingsMismatch) or getattr(exc, "kind", None) == SettingsMismatch.__name__
            if not mismatch or not resume or not inside(stage.out, self.out):
                raise
            keys = getattr(exc, "keys", None)
            self.say(f"[restart] {stage.id}: the settings recorded in its folder differ" + (f" in {', '.join(keys)}" if keys else f" ({exc})")
                     + "; starting afresh")
            storage.remove(stage.out, recursive=True, within=self.out)
            return self._run_once(stage, ctx)

    def _record(self, stage: Stage, status: str, wall: float, reused: bool, result: dict[str, Any] | None = None, error: str | None = None,
                repaired: str | None = None, usage: dict[str, Any] | None = None) -> None:
        with self.lock:
            self.records[stage.id] = {"id": stage.id, "kind": stage.kind, "status": status, "reused": reused,
                                      "wall_seconds": round(float(wall), 3), "fingerprint": stage.fingerprint, "error": error,
                                      "result": result, "repaired": repaired, "usage": usage}
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


def effective_config(config: StudyConfig) -> dict[str, Any]:
    """The config as it runs: every probe task entry with the defaults it inherits filled in (``runner: local`` from
    ``probe.defaults`` shows on the entry, not the model's default)."""
    doc = config.model_dump(mode="json", by_alias=True)
    if config.probe is not None and isinstance(config.probe.tasks, list):
        doc["probe"]["tasks"] = [e.model_dump(mode="json") for e in config.probe.entries([])]
    return doc


def stage_records(plan: StudyPlan) -> dict[str, dict[str, Any]]:
    """Per stage: kind, dependencies, output folder and fingerprint, and the parameters it runs with (paths relative to ``--out``)."""
    return {s.id: {"kind": s.kind, "deps": s.deps, "out": relocatable(s.out, plan.out), "fingerprint": s.fingerprint,
                   "params": relocatable(s.params, plan.out)} for s in plan.order()}


def run_study(config: StudyConfig, out: str, *, config_text: str = "", say: Callable[[str], None] = print, verify: bool = False) -> StudyResult:
    """Run a whole study into ``out``: corpora first, then every other stage with the corpora's real tasks.

    ``verify``: check reused stages' files by checksum (sizes are always checked); damaged stages are recomputed.
    """
    driver_cpu0 = time.process_time()  # the driver's own CPU (every thread of this process; not the Ray processes it may start)
    out = storage.canonical_url(out)  # Ray workers (extraction actors, Train workers) run in other working directories
    first = build_plan(config, out)
    if first.problems:
        raise StudyConfigError(f"study cannot run: {first.problems[0]}", problems=first.problems)

    def write_study_json(plan: StudyPlan) -> None:
        storage.write_json(storage.join(out, "study.json"), {"config": effective_config(config), "config_text": config_text,
                                                             "allow_overlap": config.allow_overlap, "leakage": plan.leakage,
                                                             "stages": stage_records(plan), "skipped": plan.skipped,
                                                             "cost": plan.cost.to_json() if plan.cost is not None else None})

    write_study_json(first)
    runner = Runner(out, say, config.parallel, config.parallel_extract, config.parallel_train, verify=verify, on_workers=True)
    started_ray = False
    try:
        if any(s.kind == "corpus" and runner.must_run(s) for s in first.order()):
            started_ray = ensure_ray()
        runner.run(first, only={s.id for s in first.order() if s.kind == "corpus"})
        plan = build_plan(config, out, corpus_tasks_of(runner.records))
        plan.config_text = config_text  # type: ignore[attr-defined]
        if plan.problems:
            raise StudyConfigError(f"study cannot run: {plan.problems[0]}", problems=plan.problems)
        write_study_json(plan)  # the speaker partitions read from the built corpora
        for skip in plan.skipped:
            say(f"[skip] {skip['task']} on {skip['dataset']}: {skip['reason']}")
        if any(runner.must_run(s) for s in plan.order()):  # every stage runs as a Ray task
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
        "repaired": {k: runner.records[k]["repaired"] for k in result.repaired}, "skipped": plan.skipped,
        "stages": [{k: v for k, v in r.items() if k != "result"} for r in runner.records.values()],
        "report": result.report, "usage": {**usage_totals(runner.records, time.process_time() - driver_cpu0),
                                           "driver_process_cpu_seconds": round(time.process_time(), 3)},  # start-up and imports included
    })
    return result
