"""Full-width rehearsal: the paper's architectures at full size (seeded random weights) on a multi-node Ray cluster.

Run: ``.venv/bin/python benchmarks/rehearsal.py [--hubert auto|yes|no] [--speakers N] [--keep DIR]``

1. Builds random-weight checkpoints in the real formats: s3prl WavLM Large (24 x 1024, 316 M parameters),
   the 1024-channel ECAPA-TDNN, and HuBERT Large when the plan's memory estimate of its joint actor fits
   what this machine has free (else it says why not).
2. Writes a study: an in-study synthetic corpus (a few minutes of audio, several shards), within- and
   across-model frame-level CKA (the models share one joint extraction actor), a PR probe on WavLM and an
   ASV probe on ECAPA (Ray Tune), data and results on S3 (a moto server on 127.0.0.1).
3. Runs it on Ray's fake multi-node autoscaler (a head with 0 CPUs, two to three worker nodes with
   {CPU: 1, GPU: 1}; the "GPUs" are fake, the models run on CPU) with the storage IO audit on, then the
   same config on a single-node Ray.
4. Prints the placement table (stage -> nodes and what ran there), the estimate-vs-measured table (bytes
   of the data tiers written and read per stage from the IO audit -- result files such as probe heads,
   tables and figures left out --, the model actor's peak memory from its own reports, against the plan's
   ``--dry-run --json`` figures as the run re-plans them from the built corpus), the driver's CPU share, and
   the largest difference between the two runs' outputs (CKA tables; probe metrics, which must be identical).

Nothing is asserted here; ``tests/study/test_rehearsal.py`` (slow) runs it and checks the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO, REPO / "tests", REPO / "tests" / "extract"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

#: CKA layers of each model (full width: 1024-dim transformer layers, ECAPA's 1024- and 3072-channel blocks).
#: All 25 WavLM Large layers would make one joint state 10 GB per shard (see the plan's estimate), too much here.
CKA_LAYERS = {"wavlm_large": ["hidden_0", "hidden_12", "hidden_24"], "hubert_large": ["hidden_0", "hidden_12", "hidden_24"],
              "ecapa": ["block0", "mfa"]}
#: the harness check (``--size tiny``): the same study on 2-layer models
TINY_CKA_LAYERS = {"wavlm_large": ["hidden_0", "hidden_2"], "hubert_large": ["hidden_0", "hidden_2"], "ecapa": ["block0", "mfa"]}
#: kept free for everything else: moto's in-memory objects, the drivers, the fake nodes' Ray processes, and other users
#: of this shared machine (one was seen holding 17 GB while a rehearsal ran)
MEMORY_MARGIN_BYTES = 10 * 2**30
#: a worker node: one (fake) GPU and one CPU, so a model actor fills a node and the stage tasks and probe trials
#: run on others; two are kept up, a third is launched on demand
WORKER = {"CPU": 1, "GPU": 1}


# ------------------------------------------------------------------ checkpoints
def build_checkpoints(folder: Path, hubert: bool, size: str = "full") -> dict[str, str]:
    """Random-weight checkpoints in the real formats; returns {model name: spec}. ``size="tiny"``: the harness check's small models."""
    import torch

    from layerlab.models import tiny
    from layerlab.models.formats import s3prl_hubert, s3prl_wavlm

    folder = folder / size
    folder.mkdir(parents=True, exist_ok=True)
    specs = {}
    wavlm = folder / "wavlm_large.pt"
    if not wavlm.exists():
        if size == "tiny":
            tiny.build_s3prl_wavlm(wavlm, seed=1, extractor_mode="layer_norm", normalize=True)
        else:
            from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

            torch.manual_seed(1)
            cfg = wavlm_large_cfg()
            s3prl_wavlm.write(str(wavlm), cfg, WavLM(WavLMConfig(cfg)).state_dict())
    specs["wavlm_large"] = f"s3prl:wavlm_local:{wavlm}"
    ecapa = folder / "ecapa_c1024.pt"
    if not ecapa.exists():
        tiny.build_layerlab_ecapa(str(ecapa), seed=2, config=tiny.TINY_ECAPA if size == "tiny" else tiny.ECAPA_C1024)
    specs["ecapa"] = f"ckpt:{ecapa}"
    if hubert:
        path = folder / "hubert_large.pt"
        if not path.exists() and size == "tiny":
            tiny.build_s3prl_hubert(path, seed=3)
        elif not path.exists():
            from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
            from s3prl.upstream.utils import merge_with_parent

            torch.manual_seed(3)
            task_cfg, model_cfg = hubert_large_cfgs()
            symbols = [[f"c{i}" for i in range(504)]]
            model = HubertModel(merge_with_parent(HubertConfig, model_cfg), merge_with_parent(HubertPretrainingConfig, task_cfg), symbols)
            s3prl_hubert.write(str(path), task_cfg, model_cfg, model.state_dict(), symbols)
        specs["hubert_large"] = f"s3prl:hubert_local:{path}"
    return specs


def wavlm_large_cfg() -> dict[str, Any]:
    """s3prl's wavlm_large configuration (layer-norm conv extractor, normalised waveform, 24 x 1024, 16 heads)."""
    from layerlab.models import tiny

    base = tiny.wavlm_cfg("base", extractor_mode="layer_norm", normalize=True)
    return {**base, "encoder_layers": 24, "encoder_embed_dim": 1024, "encoder_ffn_embed_dim": 4096, "encoder_attention_heads": 16}


def hubert_large_cfgs() -> tuple[dict[str, Any], dict[str, Any]]:
    """s3prl's hubert_large_ll60k configuration (24 x 1024, final_dim 768, layer-norm extractor)."""
    from layerlab.models import tiny

    task_cfg, model_cfg = tiny.hubert_cfgs("base", extractor_mode="layer_norm", normalize=True)
    model_cfg.update(encoder_layers=24, encoder_embed_dim=1024, encoder_ffn_embed_dim=4096, encoder_attention_heads=16, final_dim=768)
    return task_cfg, model_cfg


# ------------------------------------------------------------------ the study
def study_doc(specs: dict[str, str], speakers: int = 10, shard_bytes: int = 400_000, size: str = "full") -> dict[str, Any]:
    """The rehearsal study: full-size models, frame-level CKA within and across, a PR and an ASV probe."""
    probe_cfg = {"max_epochs": 2, "patience": 1, "batch_size": 8, "cpus_per_trial": 1, "intervals": False}
    return {
        "name": "rehearsal", "seed": 0, "parallel": 2, "parallel_extract": 1,
        "datasets": {"synth": {"synth": {"speakers": speakers, "read_per_speaker": 3, "keyword_repeats": 0, "unknown_per_speaker": 0,
                                         "silence_per_speaker": 0, "commands_per_speaker": 0, "style_sentences_per_speaker": 0,
                                         "content_dev_fraction": 0.25,  # a few talkers: several dev speakers (ASV dev trials)
                                         "max_shard_bytes": shard_bytes, "workers": 1}}},
        "models": {name: {"spec": spec} for name, spec in specs.items()},
        # device cpu: the worker nodes' GPUs are fake, so the actors' memory is the CPU estimate's (probe trials still hold GPUs)
        "extract": {"concurrency": [1, 1], "num_cpus_per_actor": 1, "batch_seconds": 20, "side_output_dtype": "float16", "tasks_per_actor": 1,
                    "device": "cpu"},
        "probe": {"tasks": [{"task": "pr", "models": ["wavlm_large"]}, {"task": "asv", "models": ["ecapa"]}],
                  "defaults": {"layers": "weighted", "tune_samples": 1, "config": probe_cfg}},
        "cka": {"within": {"levels": ["frame"]}, "across": {"levels": ["frame"], "joint_memory_gb": 20},
                "layers": {m: (TINY_CKA_LAYERS if size == "tiny" else CKA_LAYERS)[m] for m in specs}},
        "report": {"title": "full-width rehearsal"},
    }


def plan_of(doc: dict[str, Any], out: str = "/tmp/layerlab-rehearsal-plan") -> Any:
    """The study's plan (offline; its cost model estimates every stage)."""
    from layerlab.study.config import parse_study_config
    from layerlab.study.plan import build_plan

    return build_plan(parse_study_config(doc, "rehearsal.yaml"), out)


def joint_memory_estimate(doc: dict[str, Any]) -> tuple[str, float]:
    """(stage id, estimated peak bytes: host plus device) of the study's joint extraction group."""
    plan = plan_of(doc)
    joint = [s for s in plan.order() if "joint" in s.params]
    if not joint:
        raise ValueError(f"the rehearsal plan has no joint group: {plan.problems or [s.id for s in plan.order()]}")
    cost = plan.cost.stages[joint[0].id]
    return joint[0].id, cost.peak_memory_bytes + cost.gpu_memory_bytes


# ------------------------------------------------------------------ S3 and drivers
@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 and the AWS environment pointing at it (tests/helpers/moto_s3.py), with the bucket."""
    import boto3
    from helpers.moto_s3 import moto_s3 as moto_server

    with moto_server() as env:
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1").create_bucket(Bucket="rehearsal")
        yield env


def driver_env(extra: dict[str, str]) -> dict[str, str]:
    """Environment of a study driver subprocess: this checkout first, offline, no Ray auth."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_DATA_EXECUTION_NO_PROGRESS_TIMEOUT_S": "600", **extra}
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


def run_driver(config: Path, out: str, env: dict[str, str], timeout: float, log: Path) -> int:
    """``layerlab study CONFIG --out OUT`` in a subprocess (its own Ray driver); returns the exit code."""
    with open(log, "wb") as sink:
        return subprocess.run([sys.executable, "-m", "layerlab.cli", "study", str(config), "--out", out], env=env, stdout=sink,
                              stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO).returncode


def estimates_after(doc: dict[str, Any], out: str) -> dict[str, Any]:
    """The plan's cost table (``--dry-run --json``) as the run itself re-plans it: with the built corpus's exact sizes."""
    from layerlab.study.config import parse_study_config
    from layerlab.study.plan import build_plan
    from layerlab.study.runner import read_marker

    config = parse_study_config(doc, "rehearsal.yaml")
    corpus = {name: (read_marker(out, f"corpus/{name}", "done") or {}).get("result", {}).get("tasks", {}) for name in config.datasets}
    return build_plan(config, out, corpus).cost.to_json()


def cluster_nodes(address: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """``ray.nodes()`` of the cluster at ``address`` (asked from a subprocess: this process may hold another Ray)."""
    code = "import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); print(json.dumps(ray.nodes()))" % address
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ measurements
#: result files (probe heads and tables, CKA tables, figures, the report, markers): the cost model's ``results`` tier
RESULT_FOLDERS = ("probe", "cka", "report", "stages", "joint", "run.json", "study.json")


def io_by_stage(folder: Path, out: str) -> dict[str, dict[str, int]]:
    """Bytes written and read per stage, from the IO audit lines (each tagged with the stage that did it): all of them,
    and the data tiers alone (audio, frames, pooled, side-outputs: everything but result files under ``out``)."""
    rows: dict[str, dict[str, int]] = {}
    prefix = out.rstrip("/") + "/"
    for f in folder.glob("io-*.jsonl"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            row = rows.setdefault(r.get("stage") or "(driver)", {"write": 0, "read": 0, "write_data": 0, "read_data": 0})
            row[r["op"]] += int(r["bytes"])
            url = str(r["url"])
            if not (url.startswith(prefix) and url[len(prefix):].split("/", 1)[0] in RESULT_FOLDERS):
                row[f"{r['op']}_data"] += int(r["bytes"])
    return rows


@dataclass
class RunRecord:
    """One study run: its run.json, per-stage done markers' usage, IO per stage, plan estimates."""

    out: str
    run: dict[str, Any]
    io: dict[str, dict[str, int]] = field(default_factory=dict)
    estimates: dict[str, Any] | None = None
    nodes: list[dict[str, Any]] = field(default_factory=list)


def read_run(out: str) -> dict[str, Any]:
    from layerlab import storage

    return storage.read_json(storage.join(out, "run.json"))


def placement(record: RunRecord) -> list[dict[str, Any]]:
    """Per computed stage: the nodes its units ran on (head or worker), the roles there, CPU and GPU seconds."""
    head = {n["NodeID"] for n in record.nodes if n.get("Resources", {}).get("CPU", 0) == 0}
    rows = []
    for s in record.run["stages"]:
        usage = s.get("usage") or {}
        if s.get("reused") or not usage:
            continue
        units = usage.get("units") or []
        rows.append({"stage": s["id"], "nodes": sorted({str(u.get("node_id"))[-8:] for u in units}),
                     "on_head": sorted({u["role"] for u in units if u.get("node_id") in head}),
                     "roles": sorted({u["role"] for u in units}), "cpu_seconds": usage.get("cpu_seconds", 0.0),
                     "gpu_seconds": usage.get("gpu_seconds", 0.0)})
    return rows


def actor_peak(record: RunRecord, stage: str) -> int:
    """The largest peak RSS a model actor of ``stage`` reported (bytes)."""
    s = next((s for s in record.run["stages"] if s["id"] == stage), None)
    units = ((s or {}).get("usage") or {}).get("units") or []
    return max([int(u.get("peak_rss_bytes") or 0) for u in units if u.get("role") == "model actor"] or [0])


def estimate_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Estimate vs measured per stage: bytes written, bytes read, actor peak memory (where the plan gives an estimate)."""
    plan = {s["id"]: s for s in (record.estimates or {}).get("stages", [])}
    rows = []
    for s in record.run["stages"]:
        if s.get("reused") or s["status"] != "done":
            continue
        est = plan.get(s["id"], {})
        io = record.io.get(s["id"], {"write_data": 0, "read_data": 0})
        data = {k: sum(v for t, v in (est.get(f"{k}_by_tier") or {}).items() if t != "results") for k in ("written", "read")}
        row = {"stage": s["id"], "written": io["write_data"], "written_est": data["written"] if est else None, "read": io["read_data"],
               "read_est": data["read"] if est else None, "peak": actor_peak(record, s["id"]) or None,
               "peak_est": (est.get("peak_memory_bytes") if actor_peak(record, s["id"]) else None)}
        rows.append(row)
    return rows


def ratio(measured: float | None, estimate: float | None) -> float | None:
    if not measured or not estimate:
        return None
    return measured / estimate


def compare_outputs(a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """Largest CKA difference between the runs' tables and whether every probe metric is identical."""
    import numpy as np
    import pandas as pd

    from layerlab import storage
    from layerlab.cka.tables import read_matrix
    from layerlab.study.reuse import resolve
    from layerlab.study.runner import read_marker

    worst, tables, probes, mismatched = 0.0, 0, 0, []
    for s in a.run["stages"]:
        if s["status"] != "done":
            continue
        sid = s["id"]
        if sid.startswith("cka/"):
            # done-markers are relocatable: paths under --out are stored as {out}/...
            done_a = resolve(read_marker(a.out, sid, "done")["result"], a.out)  # type: ignore[index]
            done_b = resolve(read_marker(b.out, sid, "done")["result"], b.out)  # type: ignore[index]
            for ta, tb in zip(done_a["tables"], done_b["tables"]):
                ma, mb = read_matrix(ta), read_matrix(tb)
                assert ma[1:3] == mb[1:3], (ta, tb)
                worst = max(worst, float(np.abs(ma[0] - mb[0]).max()))
                tables += 1
        elif sid.startswith("probe/"):
            rel = sid.split("/", 1)[1]
            ma = pd.read_parquet(storage.join(a.out, "probe", rel, "metrics.parquet"), storage_options=None)
            mb = pd.read_parquet(storage.join(b.out, "probe", rel, "metrics.parquet"), storage_options=None)
            cols = ["model", "task", "probe", "split", "metric", "value"]
            probes += 1
            if not ma[cols].reset_index(drop=True).equals(mb[cols].reset_index(drop=True)):
                mismatched.append(sid)
    return {"cka_max_abs_diff": worst, "cka_tables": tables, "probes": probes, "probes_differing": mismatched}


# ------------------------------------------------------------------ the whole rehearsal
def rehearse(work: Path, hubert: str = "auto", speakers: int = 10, timeout: float = 5400, say: Any = print, size: str = "full") -> dict[str, Any]:
    """Build, run on the fake cluster and on one node, measure and compare; returns every figure (see the module doc)."""
    import psutil
    import yaml

    from fake_autoscaler import fake_cluster, fake_env

    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base_specs = build_checkpoints(work / "models", hubert=False, size=size)
    decision: dict[str, Any] = {"available_bytes": int(psutil.virtual_memory().available), "margin_bytes": MEMORY_MARGIN_BYTES}
    if hubert != "no":  # HuBERT Large's shape from s3prl's hub row: its checkpoint is built only when it will run
        hub = "s3prl:hubert_large_ll60k" if size == "full" else build_checkpoints(work / "models", True, size)["hubert_large"]
        _, est = joint_memory_estimate(study_doc({**base_specs, "hubert_large": hub}, speakers, size=size))
        decision["with_hubert_estimate_bytes"] = int(est)
        decision["hubert"] = hubert == "yes" or est + MEMORY_MARGIN_BYTES < decision["available_bytes"]
        if not decision["hubert"]:
            decision["why_not"] = (f"HuBERT Large would raise the joint actor's estimated peak to {est / 2**30:.1f} GiB; with a "
                                   f"{MEMORY_MARGIN_BYTES / 2**30:.0f} GiB margin that exceeds the {decision['available_bytes'] / 2**30:.1f} GiB free now")
    specs = build_checkpoints(work / "models", hubert=True, size=size) if decision.get("hubert") else base_specs
    doc = study_doc(specs, speakers, size=size)
    decision["joint_stage"], decision["joint_estimate_bytes"] = joint_memory_estimate(doc)
    config = work / "rehearsal.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    say(f"models: {', '.join(specs)}; joint actor estimate {decision['joint_estimate_bytes'] / 2**30:.2f} GiB; "
        f"{'HuBERT Large: ' + decision['why_not'] if 'why_not' in decision else ''}")
    results: dict[str, Any] = {"decision": decision, "models": specs}
    with moto_s3() as s3:
        audit = work / "io"
        shutil.rmtree(audit, ignore_errors=True)
        audit.mkdir()
        cluster_out = "s3://rehearsal/cluster"
        cluster_dir = work / "cluster"
        shutil.rmtree(cluster_dir, ignore_errors=True)
        cluster_dir.mkdir()
        with fake_cluster(cluster_dir, worker_resources=dict(WORKER), max_workers=3, min_workers=2, ready_timeout=180) as address:
            env = driver_env({**fake_env(), **s3, "RAY_ADDRESS": address, "LAYERLAB_IO_AUDIT": str(audit),
                              "PYTHONPATH": str(REPO)})
            t1 = time.perf_counter()
            rc = run_driver(config, cluster_out, env, timeout, work / "cluster-driver.log")
            results["cluster_wall_seconds"] = round(time.perf_counter() - t1, 1)
            nodes = cluster_nodes(address, env)
        if rc != 0:
            raise RuntimeError(f"the cluster run failed (exit {rc}): {(work / 'cluster-driver.log').read_text()[-3000:]}")
        cluster = RunRecord(cluster_out, read_run(cluster_out), io_by_stage(audit, cluster_out), estimates_after(doc, cluster_out), nodes)
        single_out = "s3://rehearsal/single"
        t1 = time.perf_counter()
        rc = run_driver(config, single_out, driver_env({**s3}), timeout, work / "single-driver.log")
        results["single_wall_seconds"] = round(time.perf_counter() - t1, 1)
        if rc != 0:
            raise RuntimeError(f"the single-node run failed (exit {rc}): {(work / 'single-driver.log').read_text()[-3000:]}")
        single = RunRecord(single_out, read_run(single_out))
        results.update(placement=placement(cluster), estimates=estimate_rows(cluster), usage=cluster.run["usage"],
                       single_usage=single.run["usage"], compare=compare_outputs(cluster, single),
                       worker_nodes=sorted(n["NodeID"][-8:] for n in nodes if n["Resources"].get("CPU", 0) > 0))
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return results


def render(results: dict[str, Any]) -> str:
    """The tables of a rehearsal as text."""
    gib = 2**30
    lines = [f"models: {', '.join(results['models'])}"]
    d = results["decision"]
    lines.append(f"joint actor memory estimate: {d['joint_estimate_bytes'] / gib:.2f} GiB" +
                 (f"; HuBERT Large left out: {d['why_not']}" if "why_not" in d else ""))
    lines.append("placement (stage -> nodes; roles; CPU s / GPU s):")
    for r in results["placement"]:
        head = f"  ON HEAD: {r['on_head']}" if r["on_head"] else ""
        lines.append(f"  {r['stage']:<48} {','.join(r['nodes']):<20} {'; '.join(r['roles']):<44} {r['cpu_seconds']:8.1f} {r['gpu_seconds']:8.1f}{head}")
    lines.append("estimate vs measured (MB of the data tiers: audio, frames, pooled, side-outputs; ratio measured/estimate):")
    for r in results["estimates"]:
        cells = []
        for key in ("written", "read", "peak"):
            m, e = r[key], r[f"{key}_est"]
            q = ratio(m, e)
            cells.append(f"{key} {0 if m is None else m / 1e6:9.1f} / {'n/a' if e is None else f'{e / 1e6:9.1f}'}" + (f" ({q:.2f})" if q else ""))
        lines.append(f"  {r['stage']:<48} " + " | ".join(cells))
    u = results["usage"]
    lines.append(f"driver CPU {u['driver_cpu_seconds']:.1f} s of {u['total_cpu_seconds']:.1f} s total = {100 * (u['driver_cpu_share'] or 0):.2f} %")
    c = results["compare"]
    lines.append(f"cluster vs single node: {c['cka_tables']} CKA tables, max |diff| {c['cka_max_abs_diff']:.2e}; "
                 f"{c['probes']} probes, differing: {c['probes_differing'] or 'none'}")
    lines.append(f"wall: cluster run {results['cluster_wall_seconds']} s, single node {results['single_wall_seconds']} s, all {results['wall_seconds']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubert", choices=("auto", "yes", "no"), default="auto", help="HuBERT Large: when memory allows (auto)")
    parser.add_argument("--speakers", type=int, default=10, help="synthetic talkers (3 read sentences each)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (checkpoints are reused); default a temp folder")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--size", choices=("full", "tiny"), default="full", help="tiny: the same study on 2-layer models (checks the harness)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="layerlab-rehearsal-"))
    try:
        results = rehearse(work, args.hubert, args.speakers, size=args.size)
        print(render(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
