"""The training function every Ray Train worker runs: build the recipe, resume, train, evaluate, checkpoint.

Checkpoints hold ``state.pt``: recipe name, completed epoch, step inside the epoch, global step,
the recipe's state (models, optimiser, schedules) and the metric history, so a resumed run
continues from the saved step with its earlier metrics. Rank 0 evaluates, writes
``metrics.parquet`` after every epoch and the final model through the format writers.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import numpy as np
import torch

from layerlab.train.config import load_config
from layerlab.train.recipes import recipe_class
from layerlab.train.recipes.base import Recipe, WorkerInfo

STATE_FILE = "state.pt"
LOG_EVERY_STEPS = 20
SCHEDULE_VALUES = {"lr", "teacher_temp", "margin"}  # logged per step, not averaged per epoch


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""


class RecipeMismatch(ValueError):
    """A checkpoint written by another recipe was offered for resuming."""


def save_state(recipe: Recipe, epoch: int, step_in_epoch: int, global_step: int, history: list[dict]) -> dict[str, Any]:
    """The checkpoint payload (plain containers and tensors: loads with weights_only=True)."""
    return {"recipe": recipe.name, "epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
            "recipe_state": recipe.state_dict(), "history": history}


def load_state(directory: str, recipe: str) -> dict[str, Any]:
    """Read a checkpoint folder's state and check it belongs to ``recipe``."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        raise RecipeMismatch(f"checkpoint {directory}: no {STATE_FILE}; not a layerlab training checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("recipe") != recipe:
        raise RecipeMismatch(
            f"checkpoint {directory} was written by recipe {state.get('recipe')!r}, not {recipe!r}; "
            "resume with the same recipe or train into a fresh --out"
        )
    return state


def _report(metrics: dict[str, Any], state: dict[str, Any] | None, rank: int) -> None:
    """ray.train.report on every rank; rank 0 attaches the checkpoint."""
    import ray.train

    if state is None or rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory(prefix="layerlab-ckpt-") as tmp:
        torch.save(state, os.path.join(tmp, STATE_FILE))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _rows(epoch: int, step: int, values: dict[str, float]) -> list[dict]:
    return [{"epoch": epoch, "step": step, "metric": k, "value": float(v)} for k, v in values.items()]


def write_metrics(out: str, history: list[dict]) -> None:
    """``metrics.parquet`` (epoch, step, metric, value), atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from layerlab import storage

    table = pa.Table.from_pylist(history, schema=pa.schema([("epoch", pa.int64()), ("step", pa.int64()),
                                                            ("metric", pa.string()), ("value", pa.float64())]))
    with storage.atomic_local_then_upload(storage.join(out, "metrics.parquet"), ".parquet") as tmp:
        pq.write_table(table, str(tmp))


def _fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def train_loop(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train worker entry point: ``loop_config`` = {recipe, config (dict), data, out}."""
    import ray.train
    from ray.train.torch import get_device

    name, data, out = loop_config["recipe"], loop_config["data"], loop_config["out"]
    config = load_config(name, loop_config["config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if not config.ray.use_gpu:
        torch.set_num_threads(max(1, int(config.ray.cpus_per_worker)))
    device = get_device() if config.ray.use_gpu else torch.device("cpu")
    info = WorkerInfo(rank=rank, world=world, device=device, data=data, out=out)
    recipe: Recipe = recipe_class(name)(config, info)
    steps = recipe.steps_per_epoch
    epoch, step_in_epoch, global_step, history = 0, 0, 0, []
    resumed_from = None
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = load_state(d, name)
        recipe.load_state_dict(state["recipe_state"])
        epoch, step_in_epoch, global_step, history = state["epoch"], state["step_in_epoch"], state["global_step"], list(state["history"])
        resumed_from = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step}
        print(f"[{name}] resuming at epoch {epoch + 1}, step {step_in_epoch}/{steps} (global step {global_step})", flush=True)
    elif rank == 0:  # epoch 0 = the untrained backbone: the random-weights baseline
        history += _rows(0, 0, recipe.evaluate(0))
        print(f"[{name}] random init: " + ", ".join(f"{r['metric']} {r['value']:.4f}" for r in history), flush=True)
    t_start, steps_done_here = time.perf_counter(), 0
    cpu_start = time.process_time()
    last_good = resumed_from
    while epoch < config.epochs:
        sums: dict[str, float] = {}
        n = 0
        for s in range(step_in_epoch, steps):
            rng = np.random.default_rng([config.seed, rank, global_step])
            values = recipe.train_step(epoch, global_step, rng)
            if not math.isfinite(values["loss"]):
                where = (f"last good checkpoint: epoch {last_good['epoch']}, step {last_good['step_in_epoch']} into the next "
                         f"(global step {last_good['global_step']}), kept under {out}/ray" if last_good else "no checkpoint was written yet")
                raise TrainingDiverged(f"recipe {name}: loss is {values['loss']} at epoch {epoch + 1} step {s + 1} "
                                       f"(global step {global_step + 1}); stopped ({where}). Lower lr or check the data.")
            global_step += 1
            steps_done_here += 1
            n += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if rank == 0 and global_step % LOG_EVERY_STEPS == 0:
                history += _rows(epoch + 1, global_step, {"train_" + k if not k.startswith("train_") else k: v for k, v in values.items()})
            if config.checkpoint_every_steps and (s + 1) % config.checkpoint_every_steps == 0 and s + 1 < steps:
                _report({"epoch": epoch, "global_step": global_step}, save_state(recipe, epoch, s + 1, global_step, history), rank)
                last_good = {"epoch": epoch, "step_in_epoch": s + 1, "global_step": global_step}
        epoch += 1
        step_in_epoch = 0
        means = {("train_" + k if not k.startswith("train_") else k) + "_epoch": v / max(n, 1)
                 for k, v in sums.items() if k not in SCHEDULE_VALUES}
        evals = recipe.evaluate(epoch) if rank == 0 else {}
        if not all(math.isfinite(v) for v in evals.values()):
            raise TrainingDiverged(f"recipe {name}: evaluation after epoch {epoch} is not finite ({evals}); the weights "
                                   f"diverged, this epoch is not checkpointed. Lower lr or check the data.")
        if rank == 0:
            history += _rows(epoch, global_step, {**means, **evals})
            write_metrics(out, history)
            elapsed = time.perf_counter() - t_start
            eta = elapsed / max(steps_done_here, 1) * (config.epochs - epoch) * steps
            shown = ", ".join(f"{k} {v:.4f}" for k, v in {**means, **evals}.items())
            print(f"[{name}] epoch {epoch}/{config.epochs} step {global_step}: {shown} | "
                  f"{elapsed / 60:.1f} min, ETA {_fmt_seconds(eta)}", flush=True)
        _report({"epoch": epoch, "global_step": global_step, **evals}, save_state(recipe, epoch, 0, global_step, history), rank)
        last_good = {"epoch": epoch, "step_in_epoch": 0, "global_step": global_step}
    result: dict[str, Any] = {}
    if rank == 0:
        from layerlab import storage

        meta = {"recipe": name, "epochs": config.epochs, "global_step": global_step, "data": data}
        result = recipe.export(storage.join(out, "checkpoint.pt"), meta)
        final = {r["metric"]: r["value"] for r in history if r["epoch"] == config.epochs}
        result.update(history=history, counts=recipe.summary_counts(), speakers=recipe.summary_speakers(), resumed_from=resumed_from,
                      final=final, primary_metric=recipe.primary_metric, higher_is_better=recipe.higher_is_better,
                      steps_per_epoch=steps, global_step=global_step,
                      worker_cpu_seconds=round(time.process_time() - cpu_start, 1),
                      worker_train_seconds=round(time.perf_counter() - t_start, 1))
        if hasattr(recipe, "extra_summary"):
            result.update(recipe.extra_summary())
    return result
