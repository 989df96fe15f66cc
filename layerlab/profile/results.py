"""From the merged per-group states to the profile: classifiers, measures, intervals, tables, figure, summary.

Measures per reference and layer (rows of ``profile.parquet``):

* ``cca_mean`` / ``cca_r2``: mean (squared) canonical correlation with the one-hot reference, all items;
* ``accuracy``: the least-squares classifier fitted on the train split, its ridge chosen on dev, scored on
  test (``chance``: the majority training class's accuracy on the same test items);
* ``pnmi``, ``label_purity``, ``unit_purity``: k-means units of the layer against the frame labels (phone).

Intervals: leave-one-speaker-out jackknife from the per-speaker states (as CKA's), bounded to [0, 1]
by :func:`layerlab.metrics.ci.bounded_interval` (accuracy over the test speakers' items).
"""

from __future__ import annotations

import io
import warnings
from typing import Any, Callable

import numpy as np
import pandas as pd

from layerlab import storage
from layerlab.profile.references import BoundReference
from layerlab.profile.solve import cca_with_reference, ridge_classifier
from layerlab.profile.state import LabelMoments

MEASURES = ("accuracy", "cca_mean", "cca_r2", "pnmi", "label_purity", "unit_purity")
COLUMNS = ["model", "reference", "level", "layer", "layer_index", "measure", "value", "ci_low", "ci_high", "ci_method", "n", "n_groups",
           "grouping", "split", "chance", "ridge", "note"]
REPLICATE_COLUMNS = ["model", "reference", "level", "layer", "measure", "split", "group", "value"]


def _copy(state: LabelMoments) -> LabelMoments:
    return LabelMoments.from_state_dict(state.state_dict())


def _sum(states: list[LabelMoments]) -> LabelMoments | None:
    if not states:
        return None
    out = _copy(states[0])
    for s in states[1:]:
        out.merge(s)
    return out


def fit_classifiers(prep: Any, groups: dict[str, dict[tuple[str, str], LabelMoments]]) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Per reference with a train split and dev/test items, one ridge classifier per layer fitted on the merged train states."""
    import torch

    from layerlab.cka.linalg import single_threaded

    with single_threaded(torch.device("cpu")):
        return _fit_classifiers(prep, groups)


def _fit_classifiers(prep: Any, groups: dict[str, dict[tuple[str, str], LabelMoments]]) -> tuple[dict[str, list[Any]], dict[str, str]]:
    classifiers: dict[str, list[Any]] = {}
    notes: dict[str, str] = {}
    for ref in prep.refs:
        states = groups.get(ref.name, {})
        train = _sum([s for (_, split), s in states.items() if split == "train"])
        held = [k for k in states if k[1] in ("dev", "test")]
        if train is None:
            notes[ref.name] = f"no held-out classifier: no item of the train split ({ref.split_rule})"
            continue
        if not any(k[1] == "test" for k in held):
            notes[ref.name] = f"no held-out classifier: no item of the test split ({ref.split_rule})"
            continue
        fitted = []
        for layer in range(len(train.dims)):
            if int(train.n[layer]) < 2:
                break
            fitted.append(ridge_classifier(train.blocks(layer), prep.job.ridges))
        if len(fitted) == len(train.dims):
            classifiers[ref.name] = fitted
        else:
            notes[ref.name] = "no held-out classifier: fewer than 2 training items in some layer"
    return classifiers, notes


def _interval(estimate: float, loo: list[float], units: float, units_left: list[float]) -> tuple[float, float, str, int]:
    """Bounded [0, 1] jackknife interval (NaN without 2 finite replicates)."""
    from layerlab.metrics.ci import MetricRange, bounded_interval

    ok = [i for i, v in enumerate(loo) if np.isfinite(v) and units_left[i] > 0]
    if len(ok) < 2 or not np.isfinite(estimate):
        return float("nan"), float("nan"), "", len(ok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iv = bounded_interval(estimate, [loo[i] for i in ok], units, [units_left[i] for i in ok], MetricRange(0.0, 1.0))
    return float(iv.low), float(iv.high), f"leave-one-speaker-out jackknife, {iv.method}", iv.n_groups


def _by_speaker(states: dict[tuple[str, str], LabelMoments]) -> dict[str, LabelMoments]:
    out: dict[str, list[LabelMoments]] = {}
    for (speaker, _), s in states.items():
        out.setdefault(speaker, []).append(s)
    return {k: _sum(v) for k, v in sorted(out.items())}  # type: ignore[misc]


def _choose_ridge(ref_scores: dict[tuple[str, str], dict[str, np.ndarray]], ridges: tuple[float, ...], layer: int) -> tuple[int, str]:
    """Index of the ridge with the best dev accuracy (ties: the larger ridge), or a fixed middle value without dev items."""
    correct = sum((v["correct"][layer] for k, v in ref_scores.items() if k[1] == "dev"), np.zeros(len(ridges), dtype=np.int64))
    total = sum(int(v["total"][layer]) for k, v in ref_scores.items() if k[1] == "dev")
    if total == 0:
        idx = int(np.argmin(np.abs(np.log10(np.asarray(ridges)) + 2.0)))
        return idx, f"no dev items: ridge fixed at eps={ridges[idx]:g}"
    acc = np.asarray(correct, dtype=np.float64) / total
    return len(ridges) - 1 - int(np.argmax(acc[::-1])), ""


def reference_rows(prep: Any, ref: BoundReference, states: dict[tuple[str, str], LabelMoments], scores: dict[tuple[str, str], dict[str, np.ndarray]] | None,
                   model: str, progress: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """All measure rows, leave-one-speaker-out replicates and the reasons of undefined measures (left out) of one reference."""
    job = prep.job
    names = prep.layers_of(ref)
    total = _sum(list(states.values()))
    if total is None:
        return [], [], []
    speakers = _by_speaker(states) if job.intervals else {}
    train = _sum([s for (_, split), s in states.items() if split == "train"])
    dev = _sum([s for (_, split), s in states.items() if split == "dev"])
    test = _sum([s for (_, split), s in states.items() if split == "test"])
    rows: list[dict[str, Any]] = []
    reps: list[dict[str, Any]] = []
    undefined: list[str] = []
    base = {"model": model, "reference": ref.name, "level": ref.level}

    def add(layer: int, measure: str, value: float, low: float, high: float, method: str, n: int, groups: int, split: str,
            chance: float = float("nan"), ridge: float = float("nan"), note: str = "", loo: dict[str, float] | None = None) -> None:
        if not np.isfinite(value):  # undefined (a constant layer, one class): no row, the reason goes to summary.json
            undefined.append(f"{measure} of layer {names[layer]} undefined: {note or 'no variance'}")
            return
        rows.append({**base, "layer": names[layer], "layer_index": layer, "measure": measure, "value": float(value), "ci_low": low, "ci_high": high,
                     "ci_method": method, "n": int(n), "n_groups": int(groups), "grouping": "speaker" if method else "", "split": split,
                     "chance": float(chance), "ridge": float(ridge), "note": note})
        for g, v in (loo or {}).items():
            reps.append({**base, "layer": names[layer], "measure": measure, "split": split, "group": g, "value": float(v)})

    for layer in range(len(names)):
        progress(f"{ref.name}: layer {names[layer]}")
        n = int(total.n[layer])
        if n < 2:
            continue
        cca = cca_with_reference(total.blocks(layer), job.cca_ridge)
        loo_mean: dict[str, float] = {}
        loo_r2: dict[str, float] = {}
        left: list[float] = []
        for spk, part in speakers.items():
            if n - int(part.n[layer]) < 2:
                continue
            r = cca_with_reference(total.blocks(layer, minus=part), job.cca_ridge)
            loo_mean[spk], loo_r2[spk] = r.mean, r.r2
            left.append(float(n - int(part.n[layer])))
        note = "; ".join(x for x in (cca.note, f"mean over the {cca.k} correlations a one-hot of these classes allows" if cca.k else "") if x)
        for measure, value, loo in (("cca_mean", cca.mean, loo_mean), ("cca_r2", cca.r2, loo_r2)):
            lo, hi, method, g = _interval(value, list(loo.values()), n, left)
            add(layer, measure, value, lo, hi, method, n, g, "all", ridge=job.cca_ridge, note=note, loo=loo if method else None)
        if ref.level == "frame" and total.units:
            table = total.unit_table(layer)
            from layerlab.metrics.information import contingency_scores

            est = contingency_scores(table)
            loo_scores = {spk: contingency_scores(total.unit_table(layer, minus=part)) for spk, part in speakers.items()
                          if int(part.units[layer].sum()) < int(table.sum())}
            units_left = [float(table.sum() - part.units[layer].sum()) for spk, part in speakers.items() if spk in loo_scores]
            for measure in ("pnmi", "label_purity", "unit_purity"):
                loo = {s: v[measure] for s, v in loo_scores.items()}
                lo, hi, method, g = _interval(est[measure], list(loo.values()), float(table.sum()), units_left)
                add(layer, measure, est[measure], lo, hi, method, int(table.sum()), g, "all",
                    note=f"k-means units: {prep.job.clusters} (codebook from the seeded pilot sample)", loo=loo if method else None)
        if scores is not None and train is not None:
            r, ridge_note = _choose_ridge(scores, job.ridges, layer)
            for split, held in (("dev", dev), ("test", test)):
                _accuracy_row(add, layer, split, held, train, scores, r, job, ridge_note, ref.split_rule)
    return rows, reps, undefined


def _accuracy_row(add: Callable[..., None], layer: int, split: str, held: LabelMoments | None, train: LabelMoments,
                  scores: dict[tuple[str, str], dict[str, np.ndarray]], r: int, job: Any, ridge_note: str, split_rule: str) -> None:
    """The held-out accuracy of ``split`` (dev: where the ridge was chosen; test: the result) with its speaker-jackknife interval."""
    groups = {k[0]: v for k, v in scores.items() if k[1] == split}
    c_tot = sum(int(v["correct"][layer][r]) for v in groups.values())
    t_tot = sum(int(v["total"][layer]) for v in groups.values())
    unseen = sum(int(v["unseen"][layer]) for v in groups.values())
    if t_tot == 0:
        return
    acc = c_tot / t_tot
    loo = {s: (c_tot - int(v["correct"][layer][r])) / (t_tot - int(v["total"][layer]))
           for s, v in groups.items() if t_tot - int(v["total"][layer]) > 0} if job.intervals else {}
    lo, hi, method, g = _interval(acc, list(loo.values()), t_tot, [float(t_tot - int(groups[s]["total"][layer])) for s in loo])
    chance = float("nan")
    if held is not None and int(held.n[layer]):
        seen = train.counts[layer] > 0
        chance = float(held.counts[layer][int(np.argmax(train.counts[layer]))]) / max(int(held.counts[layer][seen].sum()), 1)
    notes = [x for x in (ridge_note, f"{unseen} {split} items of classes unseen in training left out" if unseen else "",
                         f"train/dev/test: {split_rule}") if x]
    add(layer, "accuracy", acc, lo, hi, method, t_tot, g, split, chance=chance, ridge=job.ridges[r], note="; ".join(notes),
        loo=loo if method else None)


def _write_parquet(url: str, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    storage.atomic_write_bytes(url, buf.getvalue())


def finish(prep: Any, pilot: Any, groups: dict[str, dict[Any, LabelMoments]], classifiers: dict[str, list[Any]],
           scores: dict[str, dict[Any, dict[str, np.ndarray]]], out_url: str, counts: dict[str, Any], fit_notes: dict[str, str],
           timing: dict[str, float], *, model: str | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compute every measure with intervals and write ``profile.parquet``, ``profile_replicates.parquet``, ``profile.png``, ``summary.json``."""
    import time

    from layerlab.profile.figure import profile_figure

    import torch

    from layerlab.cka.linalg import single_threaded

    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    name = model or prep.info.name
    rows, reps = [], []
    undefined: dict[str, list[str]] = {}
    with single_threaded(torch.device("cpu")):  # many small decompositions: one thread (layerlab/cka/linalg.py)
        for ref in prep.refs:
            r, p, missing = reference_rows(prep, ref, groups.get(ref.name, {}), scores.get(ref.name) if ref.name in classifiers else None, name, say)
            rows += r
            reps += p
            if missing:
                undefined[ref.name] = missing
    timing["finish_s"] = time.perf_counter() - t0
    df = pd.DataFrame(rows, columns=COLUMNS)
    rep_df = pd.DataFrame(reps, columns=REPLICATE_COLUMNS)
    table = storage.join(out_url, "profile.parquet")
    rep_url = storage.join(out_url, "profile_replicates.parquet")
    _write_parquet(table, df)
    _write_parquet(rep_url, rep_df)
    png = storage.join(out_url, "profile.png")
    storage.atomic_write_bytes(png, profile_figure(df, f"{name}: training-free per-layer profiles"))
    job = prep.job
    summary = {
        "cache": prep.info.url, "model_spec": prep.info.model_spec, "model": name, "table": table, "replicates": rep_url, "figure": png,
        "references": [{"name": r.name, "level": r.level, "classes": len(r.classes), "layers": prep.layers_of(r), "split": r.split_rule,
                        "utterances": len(r.labels), "classifier": r.name in classifiers,
                        "note": "; ".join(([fit_notes[r.name]] if r.name in fit_notes else []) + undefined.get(r.name, [])[:4])}
                       for r in prep.refs],
        "skipped": prep.skipped, "pilot": pilot.record,
        "settings": {"clusters": pilot.clusters, "pilot_frames": job.pilot_frames, "kmeans_iters": job.kmeans_iters, "ridges": list(job.ridges),
                     "cca_ridge": job.cca_ridge, "seed": job.seed, "intervals": job.intervals,
                     "ridge_rule": "lambda = eps * tr(Cxx) / d, eps chosen per layer on dev accuracy (ties: the larger)"},
        "counts": counts, "n_shards": len(counts), "timing_s": {k: round(v, 3) for k, v in timing.items()},
    }
    storage.write_json(storage.join(out_url, "summary.json"), summary)
    return summary
