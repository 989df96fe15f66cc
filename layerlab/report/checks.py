"""Report checks that read the study index: the leakage statement, probes at the epoch cap, the instrument check."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from layerlab.report.load import WEIGHTED, CKAMatrix, probe_summary
from layerlab.report.tables import primary_metric


def leakage_statement(index: dict[str, Any]) -> dict[str, Any]:
    """Upstream training speakers (model info ``training_speakers``) vs every probe's test speakers, counted per trained model x task.

    Returns {"text", "pairs": [{model, task, overlap, test_speakers}], "overlapping", "not_recorded", "allow_overlap"}.
    """
    models = index.get("models", {})
    trained = {n: i for n, i in models.items() if i.get("trained") or "training_speakers" in i}
    pairs, missing = [], []
    for p in index.get("probes", []):
        info = trained.get(p["model"])
        if info is None:
            continue
        test = probe_summary(p).get("test_speakers")
        if test is None or info.get("training_speakers") is None:
            missing.append(f"{models[p['model']].get('label', p['model'])} × {p['task'].upper()}")
            continue
        overlap = sorted(set(map(str, info["training_speakers"])) & set(map(str, test)))
        pairs.append({"model": p["model"], "task": p["task"], "overlap": len(overlap), "test_speakers": len(test), "examples": overlap[:5]})
    allow = bool(index.get("allow_overlap"))
    bad = [q for q in pairs if q["overlap"]]
    if not trained:
        text = "Leakage: no model was trained in this study, so no upstream training can overlap a probe's test speakers."
    elif bad:
        text = "Leakage: upstream training OVERLAPS probe test speakers — " + "; ".join(
            f"{models[q['model']].get('label', q['model'])} × {q['task'].upper()}: {q['overlap']} of {q['test_speakers']} test speakers were in training"
            for q in bad) + "."
    elif pairs:
        text = f"Leakage: training speakers and probe test speakers are disjoint for every trained model × task ({len(pairs)} pairs checked)."
    else:
        text = "Leakage: not checked — training_speakers or test_speakers not recorded."
    if missing:
        text += f" Not recorded (not checked): {', '.join(missing)}."
    if allow:
        text += " WARNING: the study config sets allow_overlap: true, so upstream training was allowed to overlap probe dev/test speakers."
    return {"text": text, "pairs": pairs, "overlapping": len(bad), "not_recorded": missing, "allow_overlap": allow}


def capped_probes(index: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """{(model, task, probe): convergence} for every probe that stopped at the epoch cap (CONTRACTS §4)."""
    out = {}
    for p in index.get("probes", []):
        for probe, c in (probe_summary(p).get("convergence") or {}).items():
            if isinstance(c, dict) and c.get("stopped_by") == "max_epochs":
                out[(p["model"], p["task"], probe)] = c
    return out


def _best_on_dev(metrics: pd.DataFrame, model: str, task: str, layers: list[str]) -> tuple[str, pd.Series] | None:
    m = metrics[(metrics["model"] == model) & (metrics["task"] == task) & (metrics["probe"] != WEIGHTED)].copy()
    if m.empty:
        return None
    m["metric"] = m["metric"].str.lower()
    metric = primary_metric(m, task)
    dev = m[(m["split"] == "dev") & (m["metric"] == metric)].drop_duplicates("probe", keep="last").set_index("probe")
    dev = dev[dev.index.isin(layers)] if layers else dev
    if dev.empty:
        return None
    hib = bool(dev["higher_is_better"].iloc[0])
    best = dev["value"].idxmax() if hib else dev["value"].idxmin()
    return str(best), dev.loc[best]


#: |debiased CKA| below this counts as "CKA ≈ 0" in the instrument check
CKA_ZERO = 0.1


def _cka_checks(maps: Sequence[CKAMatrix], name: str, label: str, check: str, zero: bool,
                groups: Callable[[CKAMatrix], list[tuple[str, list[tuple[str, str]]]]]) -> list[dict[str, Any]]:
    """One line per (map, group of layer pairs): the group's debiased within-model CKA is ≈ 0 (``zero``: its largest
    |CKA| < CKA_ZERO) or clearly above it (its smallest CKA > CKA_ZERO). ``groups(map)`` -> [(what, pairs)]."""
    within = [m for m in maps if m.mode == "within" and m.model_a == name and m.estimator == "debiased"]
    if not within:
        return [{"model": name, "check": check, "passed": None, "text": f"{label}: no debiased within-model CKA map: not checked"}]
    want = f"≈ 0 (|CKA| < {CKA_ZERO})" if zero else f"clearly positive (> {CKA_ZERO})"
    out = []
    for mp in within:
        for what, pairs in groups(mp):
            missing = sorted({x for p in pairs for x in p if x not in mp.layers_a})
            if missing or not pairs:
                out.append({"model": name, "check": check, "passed": None,
                            "text": f"{label}: {', '.join(missing) or what} not in the {mp.level} CKA map"})
                continue
            values = [float(mp.value[mp.layers_a.index(a), mp.layers_b.index(b)]) for a, b in pairs]
            worst = max(values, key=abs) if zero else min(values)
            ok = bool(abs(worst) < CKA_ZERO) if zero else bool(worst > CKA_ZERO)
            which = "" if len(pairs) == 1 else ("largest in size " if zero else "smallest ")
            out.append({"model": name, "check": check, "passed": ok,
                        "text": f"{label}: debiased CKA ({mp.level}) of {what} should be {want}: {which}{worst:.3f}"})
    return out


def _layer_groups(layers: Sequence[str]) -> Callable[[CKAMatrix], list[tuple[str, list[tuple[str, str]]]]]:
    """``cka_zero: [layer, ...]``: each layer paired with every other layer of the map."""
    return lambda mp: [(f"{layer} with every other layer", [(layer, o) for o in mp.layers_b if o != layer] if layer in mp.layers_a else [(layer, layer)])
                       for layer in layers]


def _pair_groups(pairs: Sequence[Sequence[str]]) -> Callable[[CKAMatrix], list[tuple[str, list[tuple[str, str]]]]]:
    """``cka_zero_pairs`` / ``cka_positive_pairs: [[a, b], ...]``: one group per pair."""
    return lambda mp: [(f"{a} × {b}", [(a, b)]) for a, b in pairs]


def chance_level(task: str, metric: str, higher_is_better: bool, classes: dict[str, int] | None) -> float | None:
    """What a probe that learned nothing scores: 1 / classes for a single-label accuracy (the classes present in the test
    split, as the study index passes them), 1.0 (empty output) for an error rate."""
    if not higher_is_better:
        return 1.0 if metric in ("per", "wer", "cer") else None
    if classes and len(classes) == 1:
        return 1.0 / max(1, int(next(iter(classes.values()))))
    return None


def instrument_check(metrics: pd.DataFrame, weights: pd.DataFrame, models: dict[str, Any], split: str = "test",
                     maps: Sequence[CKAMatrix] = (), classes: dict[tuple[str, str], dict[str, int]] | None = None) -> list[dict[str, Any]]:
    """Pass/fail lines for each planted model against its declared expectations (model info ``expect``).

    Understood keys: ``<task>_best`` (the best per-layer probe on dev is that layer), ``chance_layers``
    with ``chance`` = {task: chance value} (those layers' test intervals reach chance), ``<task>_top_weight``
    (the largest contribution share on that task), ``cka_zero`` (layers whose debiased within-model CKA
    with every other layer is ≈ 0). Returns [{model, check, passed (bool|None), text}].
    """
    lines = []
    for name, info in models.items():
        if not info.get("planted"):
            continue
        expect = info.get("expect")
        label = info.get("label", name)
        if not expect:
            lines.append({"model": name, "check": "expect", "passed": None, "text": f"{label}: no declared expectation table (info['expect']): check skipped."})
            continue
        layers = list(info.get("layers") or [])
        for key, want in expect.items():
            if key.endswith("_best"):
                task = key[: -len("_best")]
                got = _best_on_dev(metrics, name, task, layers)
                ok = None if got is None else got[0] == want
                text = f"{label}: best {task.upper()} layer on dev should be {want}: " + ("no per-layer results" if got is None else f"got {got[0]}")
                lines.append({"model": name, "check": key, "passed": ok, "text": text})
            elif key.endswith("_top_weight"):
                task = key[: -len("_top_weight")]
                w = weights[(weights["model"] == name) & (weights["task"] == task)]
                if w.empty or not w["contribution"].notna().any():
                    lines.append({"model": name, "check": key, "passed": None, "text": f"{label}: {task.upper()} contribution shares not recorded"})
                    continue
                top = str(w.loc[w["contribution"].idxmax(), "layer"])
                lines.append({"model": name, "check": key, "passed": top == want,
                              "text": f"{label}: largest {task.upper()} contribution share should be {want}: got {top}"})
            elif key == "cka_zero":
                lines += _cka_checks(maps, name, label, key, True, _layer_groups(want))
            elif key in ("cka_zero_pairs", "cka_positive_pairs"):
                lines += _cka_checks(maps, name, label, key, key == "cka_zero_pairs", _pair_groups(want))
            elif key == "chance_layers":
                chance = expect.get("chance") or {}
                if not chance:
                    lines.append({"model": name, "check": key, "passed": None, "text": f"{label}: chance layers {want} declared without chance levels: not checked"})
                for task, level in chance.items():
                    task_layers = list(want)
                    if isinstance(level, (list, tuple)):  # {task: [layers at chance]}: the level follows from the task
                        task_layers, level = list(level), None
                    m = metrics[(metrics["model"] == name) & (metrics["task"] == task) & (metrics["split"] == split)].copy()
                    m["metric"] = m["metric"].str.lower()
                    metric = primary_metric(m, task)
                    m = m[m["metric"] == metric].drop_duplicates("probe", keep="last").set_index("probe")
                    if level is None and not m.empty:
                        level = chance_level(task, str(metric), bool(m["higher_is_better"].iloc[0]), (classes or {}).get((name, task)))
                    if level is None:
                        lines.append({"model": name, "check": key, "passed": None, "text": f"{label}: chance level of {task.upper()} unknown: not checked"})
                        continue
                    for layer in task_layers:
                        if layer not in m.index:
                            lines.append({"model": name, "check": key, "passed": None, "text": f"{label}: {layer} has no {task.upper()} probe"})
                            continue
                        r = m.loc[layer]
                        hib = bool(r["higher_is_better"])
                        ok = bool(r["ci_low"] <= level) if hib else bool(r["ci_high"] >= level)
                        lines.append({"model": name, "check": key, "passed": ok,
                                      "text": f"{label}: {layer} should be at chance on {task.upper()} ({level:.3f}): {r['value']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"})
    return lines
