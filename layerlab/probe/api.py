"""``run_probe``: one (cache, task) -> weighted-sum and per-layer probes swept on Ray Tune -> tables, weights, figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from layerlab import storage
from layerlab.probe.config import ProbeConfig
from layerlab.probe.results import WEIGHTED, metric_rows, weight_rows, write_parquet
from layerlab.probe.source import ProbeSource, open_source
from layerlab.probe.sweep import RUNNERS, TrialOutcome, local_configs, param_space, run_local, run_sweep
from layerlab.probe.tasks import get_task
from layerlab.probe.tasks.base import TaskDef, folds_to_run
from layerlab.probe.train import evaluate_state
from layerlab.settings import check, clear_output, fingerprint, hash_of, plain, record, recorded_settings

LAYER_MODES = ("weighted", "each", "both")
#: the probe's settings record (what ``summary.json`` was made with; checked on every rerun)
SETTINGS_NAME = "settings.json"
HP_KEYS = ("lr", "weight_decay", "hidden")


def _best(outcomes: list[TrialOutcome], higher: bool, what: str) -> TrialOutcome:
    """The trial with the best dev metric; ties go to the lowest trial id (deterministic whatever order Tune returns)."""
    ok = sorted((o for o in outcomes if o.state is not None and o.best_dev == o.best_dev), key=lambda o: o.trial_id)
    if not ok:
        errors = "; ".join(o.error for o in outcomes if o.error) or "no trial reported a dev metric"
        raise RuntimeError(f"{what}: every trial failed ({errors})")
    return max(ok, key=lambda o: o.best_dev if higher else -o.best_dev)  # max keeps the first of equals


def _evaluate(source: ProbeSource, tdef: TaskDef, cfg: ProbeConfig, layers: list[str], outcome: TrialOutcome,
              model_name: str, probe: str, seed: int, evaluations: list | None = None) -> tuple[list[dict[str, Any]], Any, Any]:
    """Dev and test metrics (with intervals) of a trial's best-dev state; returns (rows, model, bound task)."""
    bound = tdef.bind(source, tdef, cfg, layers)
    assert outcome.state is not None
    rows: list[dict[str, Any]] = []
    model = None
    for split in ("dev", "test"):
        model, ev = evaluate_state(bound, outcome.config, outcome.state["best_state"], split, cfg)
        rows += metric_rows(model_name, tdef.name, probe, split, ev, tdef.higher_is_better, cfg.ci_level if cfg.intervals else None)
        if evaluations is not None:  # folds: probe.folds takes the mean over folds of these
            evaluations.append((probe, split, ev))
    return rows, model, bound


def _trial_rows(outcomes: list[TrialOutcome], model_name: str, task: str, probe_of: Callable[[TrialOutcome], str]) -> list[dict[str, Any]]:
    return [{"model": model_name, "task": task, "probe": probe_of(o), "trial_id": o.trial_id,
             **{k: o.config.get(k) for k in HP_KEYS}, "best_dev": o.best_dev, "epochs": o.epochs, "stopped_by": o.stopped_by,
             "best_epoch": o.best_epoch, "max_epochs": o.max_epochs, "error": o.error} for o in outcomes]


def split_speakers(bound: Any) -> dict[str, list[str]]:
    """Sorted speaker ids per split of a bound task (empty when it has no speaker column)."""
    rows, splits = getattr(bound, "rows", None), getattr(bound, "splits", None)
    if rows is None or splits is None or "speaker" not in rows:
        return {}
    return {s: sorted({str(v) for v in rows.loc[ids, "speaker"] if str(v) != ""}) for s, ids in splits.ids.items()}


def _cosine(source: ProbeSource, tdef: TaskDef, cfg: ProbeConfig, model_name: str, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    bound = tdef.bind(source, tdef, cfg, [l.name for l in source.layers])
    rows = []
    for split in ("dev", "test"):
        for layer, ev in bound.score_layers(split).items():
            rows += metric_rows(model_name, tdef.name, layer, split, ev, tdef.higher_is_better, cfg.ci_level if cfg.intervals else None)
    return rows, bound.info


def weighted_layers(source: ProbeSource, tdef: TaskDef) -> list[str]:
    """The layers the weighted sum takes: all, except utterance-level ones for per-frame targets.

    An utterance-level layer (a pooled statistic, an embedding) repeated on every frame says nothing about
    which phone a frame holds; in a phone probe's sum it only adds a wide projection to learn (ECAPA's
    pooled statistics are 3x the widest frame layer). Such layers are still probed one by one.
    """
    frame_level = [l.name for l in source.layers if not l.utterance_level]
    return frame_level if tdef.frame_targets and frame_level else [l.name for l in source.layers]


def run_probe(cache: str, task: str, out: str, *, layers: str = "both", tune_samples: int = 1, scheduler: str | None = None,
              config: ProbeConfig | None = None, seed: int = 0, runner: str = "tune", evaluations: list | None = None,
              overwrite: bool = False, trust_tune_state: bool = False, verify: bool = True, allow_partial: bool = False) -> dict[str, Any]:
    """Train ``task``'s probe on the weighted sum of all layers and/or on each layer alone; write results under ``out``.

    Inputs are validated before any training (errors name the cache, task and what is missing). A rerun
    with the same ``out`` and the same settings (``out/settings.json``) resumes interrupted Tune experiments;
    other settings stop with :class:`~layerlab.settings.SettingsMismatch` naming the differing keys, unless
    ``overwrite`` (start afresh: what ``out`` holds is removed first). ``runner="local"`` runs the same trials one
    after another in this process instead of on Ray Tune (small probes on one machine). Returns the summary
    (also ``out/summary.json``). A task whose dataset gives folds runs each fold as test (``layerlab.probe.folds``).
    ``trust_tune_state``: restore an earlier Tune experiment under ``out`` (a pickle) instead of recomputing it;
    ``verify``/``allow_partial``: as for every cache read (checksums; an unfinished cache's finished shards).
    """
    start = time.perf_counter()
    cfg = config or ProbeConfig()
    if layers not in LAYER_MODES:
        raise ValueError(f"layers must be one of {', '.join(LAYER_MODES)}, got {layers!r}")
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if runner == "local" and scheduler not in (None, "", "none", "fifo"):
        raise ValueError(f"scheduler {scheduler!r} early-stops trials on Ray Tune; use runner 'tune' or no scheduler")
    if tune_samples < 1:
        raise ValueError(f"tune_samples must be >= 1, got {tune_samples}")
    tdef = get_task(task)
    source = open_source(cache, verify=verify, allow_partial=allow_partial)
    out = str(out).rstrip("/")
    settings = probe_settings(source, task, layers=layers, tune_samples=tune_samples, scheduler=scheduler, config=cfg, seed=seed, runner=runner)
    if not overwrite:
        check(out, storage.join(out, SETTINGS_NAME), settings, "probe results")  # before any work: other settings stop here
    folds = folds_to_run(source, tdef, cfg)
    if folds:
        from layerlab.probe.folds import run_folds

        start_output(out, settings, overwrite, source.url)

        return run_folds(folds, cfg, out, lambda c, o, evs: run_probe(cache, task, o, layers=layers, tune_samples=tune_samples, scheduler=scheduler,
                                                                   config=c, seed=seed, runner=runner, evaluations=evs,
                                                                   trust_tune_state=trust_tune_state, verify=verify, allow_partial=allow_partial),
                         model=source.model, task=task, directions=tdef.higher_is_better)
    model_name = source.model
    all_layers = [l.name for l in source.layers]
    metrics: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    weights: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"model": model_name, "cache": source.url, "task": task, "layers": all_layers, "seed": seed,
                               "config": cfg.model_dump(mode="json"), "runner": runner,
                               "settings": settings, "settings_fingerprint": fingerprint(settings)}
    convergence: dict[str, dict[str, Any]] = {}
    usage: list[dict[str, Any]] = []  # Tune trials' usage units (local trials run in this process)
    if not tdef.trains:
        metrics, info = _cosine(source, tdef, cfg, model_name, seed)
        start_output(out, settings, overwrite, source.url)
        summary["task_info"] = info
        summary["speakers"] = split_speakers(tdef.bind(source, tdef, cfg, all_layers))
    else:
        bound = tdef.bind(source, tdef, cfg, all_layers)  # validate everything before Ray starts
        start_output(out, settings, overwrite, source.url)  # inputs are valid: from here on the folder holds this probe's work
        summary["task_info"] = bound.info
        summary["speakers"] = split_speakers(bound)
        higher = tdef.higher_is_better[tdef.primary]
        mode = "max" if higher else "min"
        hp = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "hidden": cfg.hidden}
        tune_url = storage.join(out, "tune")
        if layers in ("weighted", "both"):
            summed = weighted_layers(source, tdef)
            summary["weighted_layers"] = summed
            if runner == "local":
                outcomes = run_local(source, task, cfg, layers=summed, configs=local_configs(cfg, tune_samples, seed),
                                     name="weighted_sum", seed=seed)
            else:
                outcomes = run_sweep(source, task, cfg, layers=summed, storage_url=tune_url, name="weighted_sum",
                                     space=param_space(cfg, tune_samples), samples=tune_samples, scheduler=scheduler, mode=mode, seed=seed,
                                     trust_tune_state=trust_tune_state, within=out)
            usage += [o.usage for o in outcomes if o.usage]
            best = _best(outcomes, higher, f"{source.url}: task {task!r}: weighted-sum sweep")
            rows, model, wbound = _evaluate(source, tdef, cfg, summed, best, model_name, WEIGHTED, seed, evaluations)
            metrics += rows
            summary["speakers"] = split_speakers(wbound)
            convergence[WEIGHTED] = best.convergence()
            if getattr(wbound, "scales", None) is not None:  # "scale" normalisation: each layer's divisor (training split)
                summary["layer_scales"] = {n: float(v) for n, v in zip(summed, wbound.scales)}
            raw, contribution = wbound.importance(model)
            weights += weight_rows(model_name, task, summed, raw, contribution)
            trials += _trial_rows(outcomes, model_name, task, lambda o: WEIGHTED)
            hp = {k: best.config[k] for k in HP_KEYS if k in best.config}
            _save_head(out, best)
            summary["best"] = {"probe": WEIGHTED, **hp, "dev": best.best_dev, "epochs": best.epochs, "stopped_by": best.stopped_by}
        if layers in ("each", "both"):
            if len(all_layers) == 1 and layers == "both":
                # one layer: the weighted sum is that layer (s3prl bypasses the sum), so the profile is the same probe
                metrics += [{**r, "probe": all_layers[0]} for r in metrics if r["probe"] == WEIGHTED]
                if WEIGHTED in convergence:
                    convergence[all_layers[0]] = dict(convergence[WEIGHTED])
            else:
                if runner == "local":
                    outcomes = run_local(source, task, cfg, layers=all_layers, configs=local_configs(cfg, 1, seed, hp, ("layer", all_layers)),
                                         name="per_layer", seed=seed)
                else:
                    from ray import tune

                    outcomes = run_sweep(source, task, cfg, layers=all_layers, storage_url=tune_url, name="per_layer",
                                         space={**hp, "layer": tune.grid_search(all_layers)}, samples=1, scheduler=None, mode=mode, seed=seed,
                                         trust_tune_state=trust_tune_state, within=out)
                usage += [o.usage for o in outcomes if o.usage]
                for o in sorted(outcomes, key=lambda o: all_layers.index(o.config["layer"])):
                    if o.state is None:
                        raise RuntimeError(f"{source.url}: task {task!r}: per-layer probe of {o.config['layer']!r} failed ({o.error})")
                    metrics += _evaluate(source, tdef, cfg, [o.config["layer"]], o, model_name, o.config["layer"], seed, evaluations)[0]
                    convergence[str(o.config["layer"])] = o.convergence()
                trials += _trial_rows(outcomes, model_name, task, lambda o: str(o.config["layer"]))
    if tdef.trains:
        summary["convergence"] = convergence
    if usage:
        summary["trial_usage"] = usage
    summary["test_speakers"] = summary.get("speakers", {}).get("test", [])
    summary.update(_write(out, metrics, trials, weights))
    test = [r for r in metrics if r["split"] == "test"]
    summary["test"] = {f"{r['probe']}/{r['metric']}": r["value"] for r in test}
    summary["wall_seconds"] = round(time.perf_counter() - start, 2)
    storage.write_json(storage.join(out, "summary.json"), summary)
    return summary


def probe_settings(source: ProbeSource, task: str, *, layers: str, tune_samples: int, scheduler: str | None, config: ProbeConfig,
                   seed: int, runner: str) -> dict[str, Any]:
    """The settings a probe's results depend on (recorded in ``settings.json``; a resume must match them).

    The cache enters by its identity (model, layers, dims, tiers, source dataset checksum), not its URL, so
    a moved or copied cache still resumes; where it is goes into the record beside the settings.
    """
    reader = getattr(source, "reader", None)
    identity = reader.metadata.identity() if reader is not None and hasattr(reader.metadata, "identity") else {"url": source.url}
    no_scheduler = scheduler in (None, "", "none", "fifo")
    return plain({"task": task, "layers": layers, "tune_samples": tune_samples, "scheduler": None if no_scheduler else scheduler,
                  "config": config.model_dump(mode="json"), "seed": seed, "runner": runner, "cache": hash_of(identity)})


def start_output(out: str, settings: dict[str, Any], overwrite: bool, cache_url: str) -> None:
    """Record the settings this probe runs with (``overwrite``: remove what ``out`` held first); resumes compare with them."""
    url = storage.join(out, SETTINGS_NAME)
    if overwrite:
        clear_output(out)
    if recorded_settings(url) is None:
        storage.write_json(url, record(settings, command="probe", cache_url=cache_url))


def _save_head(out: str, best: TrialOutcome) -> None:
    import io

    import torch

    buf = io.BytesIO()
    assert best.state is not None
    torch.save({"config": best.config, "state_dict": best.state["best_state"], "best_dev": best.best_dev}, buf)
    storage.atomic_write_bytes(storage.join(out, "head.pt"), buf.getvalue())


def _write(out: str, metrics: list[dict[str, Any]], trials: list[dict[str, Any]], weights: list[dict[str, Any]]) -> dict[str, Any]:
    from layerlab.probe.figures import plot_layer_profile, plot_layer_weights
    from layerlab.probe.results import METRIC_COLUMNS, REPLICATE_COLUMNS, WEIGHT_COLUMNS, replicate_rows

    files = {}
    mdf = pd.DataFrame(metrics, columns=METRIC_COLUMNS)
    write_parquet(mdf, storage.join(out, "metrics.parquet"))
    files["metrics"] = "metrics.parquet"
    write_parquet(pd.DataFrame(replicate_rows(metrics), columns=REPLICATE_COLUMNS), storage.join(out, "replicates.parquet"))
    files["replicates"] = "replicates.parquet"
    if trials:
        write_parquet(pd.DataFrame(trials), storage.join(out, "trials.parquet"))
        files["trials"] = "trials.parquet"
    if weights:
        wdf = pd.DataFrame(weights, columns=WEIGHT_COLUMNS)
        write_parquet(wdf, storage.join(out, "layer_weights.parquet"))
        plot_layer_weights(wdf, storage.join(out, "figures", "layer_weights.png"))
        files.update(layer_weights="layer_weights.parquet", weights_figure="figures/layer_weights.png")
    primary = mdf.groupby(["model", "task"], sort=False)["metric"].transform("first")
    plot_layer_profile(mdf[mdf["metric"] == primary], storage.join(out, "figures", "layer_profile.png"))
    files["profile_figure"] = "figures/layer_profile.png"
    if "head" not in files and storage.exists(storage.join(out, "head.pt")):
        files["head"] = "head.pt"
    return {"outputs": files}
