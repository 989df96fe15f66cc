"""``run_recipe``: train one recipe on Ray Train (TorchTrainer) and write checkpoint, metrics, curve, summary.

Output folder (any fsspec URL): ``checkpoint.pt`` (format writer; ``summary.json`` names the spec
that loads it), ``metrics.parquet`` (epoch, step, metric, value), ``curve.png``, ``summary.json``,
``run.json`` (recipe + config of the run) and ``ray/`` (Ray Train's resumable checkpoints).
Rerunning with the same ``out`` resumes from the latest checkpoint (epoch and step restored).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from layerlab import storage
from layerlab.settings import check, clear_output, fingerprint, record, recorded_settings, update_record
from layerlab.train.config import TrainConfig, load_config

RUN_NAME = "ray"
def worker_env(config: TrainConfig) -> dict[str, str]:
    """Env vars for Train workers: the shared worker environment plus thread counts matching the CPU share."""
    from layerlab import runtime

    threads = str(max(1, int(config.ray.cpus_per_worker)))
    # Ray Train patches print() in its workers to also log each line, which the driver then shows a second time
    extra = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    if os.environ.get("RAY_AUTH_MODE"):
        extra["RAY_AUTH_MODE"] = os.environ["RAY_AUTH_MODE"]
    return runtime.worker_env(extra)


def _storage(out: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train: a local folder, or any fsspec URL via pyarrow."""
    if storage.is_local(out):
        return os.path.abspath(out.removeprefix("file://")), None
    import pyarrow.fs

    fs, path = storage.url_to_fs(out)
    if storage.protocol_of(out) in ("s3", "s3a") and os.environ.get("AWS_ACCESS_KEY_ID"):
        # Ray Train's controller actor writes to this filesystem from a process that may have started
        # before the driver got its credentials (an already running Ray): let the credentials travel with it.
        import s3fs

        fs = s3fs.S3FileSystem(key=os.environ["AWS_ACCESS_KEY_ID"], secret=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                               token=os.environ.get("AWS_SESSION_TOKEN"), **storage._s3_options())
    return path.rstrip("/"), pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def train_settings(recipe: str, config: TrainConfig, data_checksum: str) -> dict[str, Any]:
    """What a training run's results depend on: recipe, config, and the corpus by its manifest checksum (not its URL)."""
    return {"recipe": recipe, "config": config.model_dump(mode="json"), "data": data_checksum}


#: config keys a rerun may change and still resume the run: more epochs continue it; checkpoint bookkeeping
RESUMABLE_KEYS = ("config.epochs", "config.keep_checkpoints", "config.checkpoint_every_steps")


def _check_previous_run(out: str, recipe: str, settings: dict[str, Any], data: str) -> dict[str, Any] | None:
    """Refuse another recipe's or other settings' output folder; return the summary of an identical finished run.

    Only :data:`RESUMABLE_KEYS` may differ (the record is then updated, naming what changed on resume).
    """
    marker = storage.join(out, "run.json")
    if not storage.exists(marker):
        return None
    previous = storage.read_json(marker)
    if previous.get("recipe") != recipe:
        raise ValueError(f"{out}: holds a {previous.get('recipe')!r} training run; cannot resume it as {recipe!r} (use a fresh --out, or --overwrite)")
    changed = check(out, marker, settings, f"a {recipe} training run", legacy={k: previous[k] for k in ("recipe", "config") if k in previous},
                    resumable=RESUMABLE_KEYS)
    if changed:
        update_record(marker, settings, changed, recipe=recipe, data=data, config=settings["config"])
        return None
    summary = storage.join(out, "summary.json")
    if storage.exists(summary):
        done = storage.read_json(summary)
        if done.get("complete"):
            return done
    return None


def _init_ray(config: TrainConfig) -> bool:
    """Start (or join, with RAY_ADDRESS) Ray unless it is already up; True if this call started it."""
    import ray

    from layerlab import runtime

    if ray.is_initialized():
        return False
    need = config.ray.num_workers * config.ray.cpus_per_worker
    runtime.init_ray(os.environ.get("RAY_ADDRESS") or "local", num_cpus=max(int(need + 0.999), os.cpu_count() or 1),
                     log_to_driver=True, configure_logging=False)
    return True


def _unwrap_error(exc: BaseException) -> BaseException:
    """The worker's original exception inside Ray Train's wrappers (for a one-line message)."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        for attr in ("worker_failures", "errors"):
            inner = getattr(cur, attr, None)
            if isinstance(inner, dict) and inner:
                cur = next(iter(inner.values()))
                break
        else:
            nxt = getattr(cur, "cause", None) or cur.__cause__
            if nxt is None:
                return cur
            cur = nxt
    return cur or exc


def fit(recipe: str, data: str, out: str, config: TrainConfig) -> dict[str, Any]:
    """Run the TorchTrainer; returns rank 0's result (history, counts, exported checkpoint)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from layerlab.train.loop import RecipeMismatch, TrainingDiverged, train_loop

    path, fs = _storage(out)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"recipe": recipe, "config": config.model_dump(mode="json"), "data": data, "out": out},
        scaling_config=ScalingConfig(num_workers=config.ray.num_workers, use_gpu=config.ray.use_gpu,
                                     resources_per_worker={"CPU": config.ray.cpus_per_worker}),
        run_config=RunConfig(name=RUN_NAME, storage_path=path, storage_filesystem=fs,
                             checkpoint_config=CheckpointConfig(num_to_keep=config.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=0),
                             worker_runtime_env={"env_vars": worker_env(config)}),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        inner = _unwrap_error(exc)
        if isinstance(inner, (TrainingDiverged, RecipeMismatch, ValueError)):
            raise type(inner)(str(inner).splitlines()[0] if isinstance(inner, ValueError) else str(inner)) from exc
        raise
    if result.error is not None:
        raise RuntimeError(f"training {recipe} into {out} failed: {result.error}")
    return dict(result.return_value or {})


def run_recipe(recipe: str, data: str, out: str, *, config: str | Path | BaseModel | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Train ``recipe`` ("supervised" | "dino" | "hubert") on the corpus at ``data`` into ``out``.

    Returns the summary (also ``out/summary.json``): ``model_spec`` loads the trained model,
    ``metrics`` holds the final epoch's values, ``wall_seconds`` the time of this call. A rerun into the
    same ``out`` resumes (or returns the finished run) only with the same recipe, config and corpus
    (``run.json`` records them); otherwise :class:`~layerlab.settings.SettingsMismatch` names the differing
    keys before anything is written, unless ``overwrite`` (start afresh: what ``out`` holds is removed).
    """
    from layerlab.data.manifest import read_manifest

    t0 = time.perf_counter()
    cfg = load_config(recipe, config)
    data, out = storage.canonical_url(data), storage.canonical_url(out)  # Train workers run in another working directory
    settings = train_settings(recipe, cfg, read_manifest(data).checksum())  # read_manifest: a clear error for a folder that is not a corpus
    if overwrite:
        clear_output(out)
    done = _check_previous_run(out, recipe, settings, data)
    if done is not None:
        return done
    if recorded_settings(storage.join(out, "run.json")) != settings:  # a new run, or a record of an older layerlab
        storage.write_json(storage.join(out, "run.json"), record(settings, recipe=recipe, data=data, config=settings["config"]))
    started = _init_ray(cfg)
    try:
        result = fit(recipe, data, out, cfg)
    finally:
        if started:
            import ray

            ray.shutdown()
    from layerlab.train.outputs import write_curve, write_summary

    curve = write_curve(out, recipe, result["history"], result["primary_metric"])
    summary = {
        "recipe": recipe, "data": data, "out": out, "complete": True, "config": settings["config"],
        "settings_fingerprint": fingerprint(settings),
        "model_spec": result["model_spec"], "checkpoint": result["checkpoint"],
        "metrics": result["final"], "primary_metric": result["primary_metric"],
        "random_init": {r["metric"]: r["value"] for r in result["history"] if r["epoch"] == 0},
        "best": _best(result["history"], result["primary_metric"], result["higher_is_better"]),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "epochs": cfg.epochs, "steps_per_epoch": result["steps_per_epoch"], "global_step": result["global_step"],
        "resumed_from": result["resumed_from"], "data_counts": result["counts"],
        "training_speakers": result.get("speakers", {}).get("training_speakers", []),
        "excluded_speakers": result.get("speakers", {}).get("excluded_speakers", {}),
        "num_workers": cfg.ray.num_workers, "use_gpu": cfg.ray.use_gpu, "curve": curve,
        "worker_cpu_seconds": result.get("worker_cpu_seconds"), "worker_train_seconds": result.get("worker_train_seconds"),
        **{k: v for k, v in result.items() if k.startswith("extra_")},
    }
    write_summary(out, summary)
    return summary


def _best(history: list[dict], metric: str, higher: bool) -> dict[str, float] | None:
    rows = [r for r in history if r["metric"] == metric and r["epoch"] > 0]
    if not rows:
        return None
    best = (max if higher else min)(rows, key=lambda r: r["value"])
    return {"epoch": best["epoch"], "value": best["value"]}
