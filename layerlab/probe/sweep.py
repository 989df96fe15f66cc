"""Ray Tune sweeps of probes: the weighted-sum probe over a search space (optionally ASHA), per-layer probes as a grid.

Every trial reads the one cache: the source (rows + pooled matrices) is put in the object store once
by ``tune.with_parameters`` and reaches each trial zero-copy; frames are streamed by each trial from
the cache URL. Trials checkpoint their training state, so a killed sweep resumes with
``Tuner.restore``. Storage is any fsspec URL (``s3://`` included).

Nothing under an output folder is unpickled unless the user says so: a trial's state is saved as
tensors (``state.pt``, loaded with ``torch.load(weights_only=True)``) plus JSON (``state.json``). Tune's
own experiment state is a pickle, so an existing experiment is restored only when this process
created it or the caller trusts it (``trust_tune_state``: ``layerlab probe --trust-tune-state``, a
study's ``trust_tune_state: true``); otherwise it is set aside (deleted, inside ``--out``) and the sweep
starts afresh, saying so.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any

from layerlab import storage
from layerlab.probe.config import ProbeConfig

STATE_FILE = "state.pt"  # tensors only (model, optimizer, best-dev state): torch.load(weights_only=True)
STATE_JSON = "state.json"  # the rest of the training state (epoch, best metric, history, ...)
#: keys of the training state that are tensors or plain containers of tensors (saved in STATE_FILE)
TENSOR_KEYS = ("model", "optimizer", "best_state")
#: Tune experiments this process created (restoring those unpickles nothing written by anyone else)
_CREATED: set[str] = set()


class UntrustedState(ValueError):
    """A saved trial state that is not plain tensors + JSON (a pickle with code, or damaged): refused, never unpickled."""


def save_state(directory: str, snap: dict[str, Any]) -> None:
    """Write a trial's training state as tensors (``state.pt``) + JSON (``state.json``)."""
    import torch

    torch.save({k: snap[k] for k in TENSOR_KEYS if snap.get(k) is not None}, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, STATE_JSON), "w") as f:
        json.dump({k: v for k, v in snap.items() if k not in TENSOR_KEYS}, f)


def load_state(directory: str) -> dict[str, Any]:
    """Read a state written by :func:`save_state`; never unpickles code (UntrustedState names the file otherwise)."""
    import torch

    path = os.path.join(directory, STATE_FILE)
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        with open(os.path.join(directory, STATE_JSON)) as f:
            rest = json.load(f)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError (a pickle with code), damage, a missing half: one reason
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UntrustedState(f"{path}: not a layerlab trial state (tensors + state.json), refused without unpickling it "
                             f"({type(exc).__name__}: {first[:200]}); delete the probe's tune/ folder to recompute") from None
    if not isinstance(tensors, dict) or not isinstance(rest, dict) or set(tensors) - set(TENSOR_KEYS):
        raise UntrustedState(f"{path}: unexpected trial state layout; delete the probe's tune/ folder to recompute")
    return {**rest, **tensors}


@dataclass
class TrialOutcome:
    """One finished (or stopped) trial: its hyperparameters, best dev metric, epochs and best-dev model state."""

    trial_id: str
    config: dict[str, Any]
    best_dev: float
    epochs: int
    state: dict[str, Any] | None
    error: str | None = None
    stopped_by: str = ""  # patience | max_epochs | scheduler (ASHA stopped it) | "" (failed)
    best_epoch: int = 0
    max_epochs: int = 0
    usage: dict[str, Any] | None = None  # where the trial ran and its CPU/GPU seconds (a layerlab.usage unit)

    def convergence(self) -> dict[str, Any]:
        """The summary.json record of this trial (CONTRACTS §4)."""
        return {"stopped_by": self.stopped_by, "epochs": self.epochs, "best_epoch": self.best_epoch, "max_epochs": self.max_epochs}


def _trial(config: dict[str, Any], *, source: Any, task_name: str, cfg_json: str, layers: list[str], seed: int) -> None:
    """Tune function trainable: bind the task (one layer if ``config['layer']``), train, report every epoch."""
    import torch
    from ray import tune

    from layerlab.probe.tasks import get_task
    from layerlab.probe.train import fit
    from layerlab.usage import Meter

    meter = Meter()
    cfg = ProbeConfig.model_validate_json(cfg_json)
    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))
    task = get_task(task_name)
    bound = task.bind(source, task, cfg, [config["layer"]] if "layer" in config else layers)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            resume = load_state(d)

    import ray

    gpus = len(ray.get_gpu_ids())

    def report(metrics: dict[str, float], snap: dict[str, Any] | None) -> None:
        metrics = {**metrics, **{f"usage_{k}": v for k, v in meter.unit("tune trial", gpus=gpus).items() if k != "role"}}
        if snap is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_state(d, snap)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))

    fit(bound, config, cfg, seed=seed, report=report, resume=resume)


def ensure_ray() -> None:
    """Start or join Ray when it is not running (``RAY_ADDRESS`` joins a cluster; embedded local Ray otherwise)."""
    from layerlab.runtime import init_ray

    init_ray(quiet=True)


def _count(space: dict[str, Any], samples: int) -> int:
    """Trials an experiment runs: samples times the size of every grid."""
    total = samples
    for value in space.values():
        if isinstance(value, dict) and "grid_search" in value:
            total *= len(value["grid_search"])
    return total


def _progress(name: str, total: int) -> Any:
    """A Tune callback advancing a progress bar (layerlab.progress) as trials finish."""
    from ray import tune

    from layerlab.progress import progress_bar

    class TrialProgress(tune.Callback):
        def setup(self, **info: Any) -> None:
            self.bar = progress_bar(total, f"probe {name}", "trial")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.bar.update(1)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.bar.update(1)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            self.bar.close()

    return TrialProgress()


def _storage(url: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Tune from any fsspec URL."""
    if storage.is_local(url):
        path = url.removeprefix("file://")
        return os.path.abspath(path), None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = storage.url_to_fs(url)
    return path, PyFileSystem(FSSpecHandler(fs))


def _resources(cfg: ProbeConfig) -> dict[str, float]:
    """Explicit CPUs per trial; a fractional GPU only when the cluster has GPUs."""
    import ray

    res = {"cpu": cfg.cpus_per_trial}
    if ray.cluster_resources().get("GPU", 0) > 0 and cfg.gpus_per_trial > 0:
        res["gpu"] = cfg.gpus_per_trial
    return res


def param_space(cfg: ProbeConfig, samples: int) -> dict[str, Any]:
    """Fixed hyperparameters for one sample; otherwise SUPERB-style log-uniform lr and the configured choices."""
    from ray import tune

    if samples <= 1:
        return {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "hidden": cfg.hidden}
    s = cfg.search
    return {"lr": tune.loguniform(*s.lr), "weight_decay": tune.choice(list(s.weight_decay)), "hidden": tune.choice(list(s.hidden))}


def _restorable(exp_url: str, exp_path: str, fs: Any, trusted: bool, within: str) -> bool:
    """Whether to restore the Tune experiment at ``exp_path``: it exists and this process made it or the caller trusts it.

    An untrusted one (Tune's state is a pickle: restoring it would run whatever code it holds) is deleted
    and the sweep starts afresh; its trials are recomputed.
    """
    from ray import tune

    if not tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        return False
    if storage.normalise(exp_url) in _CREATED:
        return True
    if trusted:
        check_states(exp_url)  # Tune's pickles are trusted; trial states still load as tensors + JSON only
        return True
    print(f"note: {exp_url}: an earlier Tune sweep is there; its state is a pickle and is not restored without "
          "--trust-tune-state (study: trust_tune_state: true): starting the sweep afresh", file=sys.stderr, flush=True)
    storage.remove(exp_url, recursive=True, within=within)
    return False


def check_states(exp_url: str) -> None:
    """Load every trial state under a Tune experiment as tensors + JSON on the driver: UntrustedState names a bad one
    (a pickle with code placed there is refused here, in one line, instead of failing trials one by one)."""
    fs, root = storage.url_to_fs(exp_url)
    for path in sorted(p for p in fs.find(root) if p.endswith("/" + STATE_FILE)):
        folder = path.rsplit("/", 1)[0]
        if storage.is_local(exp_url):
            load_state(folder)
            continue
        with tempfile.TemporaryDirectory() as d:
            for name in (STATE_FILE, STATE_JSON):
                if fs.exists(f"{folder}/{name}"):
                    fs.get_file(f"{folder}/{name}", os.path.join(d, name))
            try:
                load_state(d)
            except UntrustedState as exc:
                raise UntrustedState(str(exc).replace(os.path.join(d, STATE_FILE), f"{exp_url}/{path[len(root.rstrip('/')) + 1:]}")) from None


def quiet_tune(verbose: bool) -> None:
    """Tune's experiment box and TensorBoard hint (its new output engine) only with ``verbose``; the legacy engine at
    verbosity 0 prints nothing. Read by Tune when a sweep starts (one sweep at a time per driver)."""
    os.environ["RAY_AIR_NEW_OUTPUT"] = "1" if verbose else "0"


def run_sweep(source: Any, task_name: str, cfg: ProbeConfig, *, layers: list[str], storage_url: str, name: str,
              space: dict[str, Any], samples: int, scheduler: str | None, mode: str, seed: int = 0,
              trust_tune_state: bool = False, within: str | None = None) -> list[TrialOutcome]:
    """Run (or resume) one Tune experiment and return every trial's outcome with its best-dev state.

    ``within``: the output folder the experiment lies in (an untrusted earlier experiment is deleted there).
    """
    from ray import tune

    from layerlab.progress import verbose

    from layerlab.probe.tasks import get_task

    ensure_ray()
    trainable = tune.with_resources(
        tune.with_parameters(_trial, source=source, task_name=task_name, cfg_json=cfg.model_dump_json(), layers=layers, seed=seed),
        _resources(cfg),
    )
    path, fs = _storage(storage_url)
    exp_path = f"{path.rstrip('/')}/{name}"
    exp_url = storage.join(storage_url, name)
    quiet_tune(verbose())
    if _restorable(exp_url, exp_path, fs, trust_tune_state, within or storage_url):
        tuner = tune.Tuner.restore(exp_path, trainable=trainable, resume_unfinished=True, resume_errored=True, storage_filesystem=fs)
    else:
        from ray.tune.search import BasicVariantGenerator

        sched = None
        if scheduler == "asha":
            from ray.tune.schedulers import ASHAScheduler

            cap = cfg.epochs_for(get_task(task_name).tier)[0]
            sched = ASHAScheduler(time_attr="epoch", max_t=cap, grace_period=min(cfg.asha_grace_period, cap),
                                  reduction_factor=cfg.asha_reduction_factor)
        elif scheduler not in (None, "", "none", "fifo"):
            raise ValueError(f"unknown scheduler {scheduler!r}; use 'asha' or none")
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(metric="dev_metric", mode=mode, num_samples=samples, scheduler=sched, reuse_actors=True,
                                        search_alg=BasicVariantGenerator(random_state=seed),
                                        max_concurrent_trials=cfg.max_concurrent_trials),
            run_config=tune.RunConfig(name=name, storage_path=path, storage_filesystem=fs, verbose=1 if verbose() else 0,
                                      callbacks=[_progress(name, _count(space, samples))],
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                      failure_config=tune.FailureConfig(max_failures=1)),
        )
        _CREATED.add(storage.normalise(exp_url))
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    grid = tuner.fit()
    outcomes = []
    for r in grid:
        state = None
        if r.checkpoint is not None:
            with r.checkpoint.as_directory() as d:
                state = load_state(d)
        metrics = r.metrics or {}
        epochs, cap = int(metrics.get("epoch", 0)), int(metrics.get("max_epochs", 0))
        stopped = "" if r.error is not None or not metrics else (
            "patience" if metrics.get("stopped_by_patience") else "max_epochs" if epochs >= cap else "scheduler")
        outcomes.append(TrialOutcome(
            trial_id=str(metrics.get("trial_id", os.path.basename(str(r.path)))), config=dict(r.config or {}),
            best_dev=float(metrics.get("best_dev", float("nan"))), epochs=epochs, state=state,
            error=None if r.error is None else f"{type(r.error).__name__}: {r.error}",
            stopped_by=stopped, best_epoch=int(metrics.get("best_epoch", 0)), max_epochs=cap,
            usage=trial_usage(metrics),
        ))
    return outcomes


def trial_usage(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """The layerlab.usage unit a trial reported with its last metrics (None for a trial that reported nothing)."""
    found = {k[len("usage_"):]: v for k, v in metrics.items() if k.startswith("usage_")}
    return {"role": "tune trial", **found} if found else None


RUNNERS = ("tune", "local")


def local_configs(cfg: ProbeConfig, samples: int, seed: int, fixed: dict[str, Any] | None = None,
                  grid: tuple[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """The trials the local runner runs: ``fixed`` values (or ``samples`` seeded draws from the search space) x a grid."""
    import numpy as np

    if fixed is not None or samples <= 1:
        base = [dict(fixed) if fixed is not None else {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "hidden": cfg.hidden}]
    else:
        rng = np.random.default_rng(seed)
        s = cfg.search
        base = [{"lr": float(np.exp(rng.uniform(np.log(s.lr[0]), np.log(s.lr[1])))),
                 "weight_decay": float(s.weight_decay[rng.integers(len(s.weight_decay))]),
                 "hidden": int(s.hidden[rng.integers(len(s.hidden))])} for _ in range(samples)]
    if grid is None:
        return base
    key, values = grid
    return [{**b, key: v} for b in base for v in values]


def run_local(source: Any, task_name: str, cfg: ProbeConfig, *, layers: list[str], configs: list[dict[str, Any]], name: str,
              seed: int = 0) -> list[TrialOutcome]:
    """Run trials one after another in this process (no Ray): the same training and outcomes as a Tune sweep.

    For small probes on one machine, where a Tune experiment's start-up (trial processes importing torch,
    checkpoint syncing) costs more than the training itself. No early stopping across trials, and a killed
    run restarts its trials.
    """
    from layerlab.probe.tasks import get_task
    from layerlab.probe.train import fit
    from layerlab.progress import progress_bar

    import torch

    torch.set_num_threads(max(1, int(cfg.cpus_per_trial)))  # as a Tune trial would get (process-wide: the driver's share)
    task = get_task(task_name)
    outcomes = []
    bar = progress_bar(len(configs), f"probe {task_name} {name}", "trial")
    for i, config in enumerate(configs):
        bound = task.bind(source, task, cfg, [config["layer"]] if "layer" in config else layers)
        try:
            result = fit(bound, config, cfg, seed=seed)
            outcomes.append(TrialOutcome(f"{name}_{i:05d}", dict(config), result.best_dev, result.epochs, {"best_state": result.best_state},
                                         stopped_by=result.stopped_by, best_epoch=result.best_epoch, max_epochs=result.max_epochs))
        except (FloatingPointError, RuntimeError) as exc:  # a diverged trial is recorded like Tune records an errored one
            outcomes.append(TrialOutcome(f"{name}_{i:05d}", dict(config), float("nan"), 0, None, f"{type(exc).__name__}: {exc}"))
        bar.update(1)
    bar.close()
    return outcomes
