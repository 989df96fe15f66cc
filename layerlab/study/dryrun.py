"""``--dry-run``: validate a study offline and print its plan (stages, reuse, estimated work, network needs)."""

from __future__ import annotations

from typing import Any

from layerlab.study.plan import StudyPlan
from layerlab.study.runner import read_marker, reusable


def stage_states(plan: StudyPlan) -> dict[str, str]:
    """Per stage: ``reuse`` (done-marker matches), ``resume`` (an interrupted run matches) or ``run``.

    A results URL that cannot be reached offline (no network or credentials) gives ``run?`` for every
    stage: reuse is then decided when the study runs.
    """
    from layerlab import storage

    if not storage.is_local(plan.out):
        try:
            storage.exists(storage.join(plan.out, "stages"))
        except Exception:  # noqa: BLE001 - offline dry run of a cluster study
            return {s.id: "run?" for s in plan.order()}
    out = {}
    for stage in plan.order():
        if reusable(stage, plan.out) is not None:
            out[stage.id] = "reuse"
        else:
            started = read_marker(plan.out, stage.id, "started")
            out[stage.id] = "resume" if started and started.get("fingerprint") == stage.fingerprint else "run"
    return out


def render_plan(plan: StudyPlan) -> str:
    """A human-readable plan: one line per stage, then skipped tasks, problems and totals."""
    states = stage_states(plan)
    width = max((len(s.id) for s in plan.order()), default=10)
    lines = [f"study {plan.config.name!r} -> {plan.out}", f"{'stage'.ljust(width)}  {'action':6}  fingerprint       work"]
    for s in plan.order():
        net = "  [needs network]" if s.needs_network else ""
        lines.append(f"{s.id.ljust(width)}  {states[s.id]:6}  {s.fingerprint}  {s.estimate}{net}")
        lines += [f"{''.ljust(width)}          note: {n}" for n in s.notes]
    counts: dict[str, dict[str, int]] = {}
    for s in plan.order():
        counts.setdefault(s.kind, {}).setdefault(states[s.id], 0)
        counts[s.kind][states[s.id]] += 1
    lines.append("totals: " + "; ".join(f"{k} " + ", ".join(f"{n} {a}" for a, n in v.items()) for k, v in counts.items()))
    for sk in plan.skipped:
        lines.append(f"skipped: {sk['task']} on {sk['dataset']}: {sk['reason']}")
    if any(v == "run?" for v in states.values()):
        lines.append(f"results folder {plan.out} not reachable from here: which stages are reused is decided at run time")
    network = sorted({s.id for s in plan.order() if s.needs_network})
    if network:
        lines.append(f"needs network (or pre-staged weights/data) at run time: {', '.join(network)}")
    if plan.cost is not None:
        from layerlab.study.cost import render

        lines += render(plan.cost, width)
    for p in plan.problems:
        lines.append(f"PROBLEM: {p}")
    lines.append("plan OK" if not plan.problems else f"{len(plan.problems)} problem(s): the study would not start")
    return "\n".join(lines)


def plan_summary(plan: StudyPlan) -> dict[str, Any]:
    """The plan as one JSON object: ``stages`` (id, kind, action, fingerprint and the stage's cost: stored_bytes, read_bytes,
    gpu_hours, peak_memory_bytes, runs_on, by tier...), ``totals`` (the same keys), ``budget``, ``skipped``, ``problems``."""
    states = stage_states(plan)
    cost = plan.cost.to_json() if plan.cost is not None else {"stages": [], "totals": {}}
    by_id = {c["id"]: c for c in cost["stages"]}
    stages = [{**by_id.get(s.id, {}), "id": s.id, "kind": s.kind, "action": states[s.id], "fingerprint": s.fingerprint,
               "needs_network": s.needs_network} for s in plan.order()]
    return {"study": plan.config.name, "out": plan.out, "stages": stages, "totals": cost["totals"], "budget": cost.get("budget", {}),
            "datasets": cost.get("datasets", {}), "assumptions": cost.get("assumptions", []), "skipped": plan.skipped,
            "problems": plan.problems}
