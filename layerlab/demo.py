"""The embedded default job: synthetic corpus -> activation caches on local Ray -> CKA maps and speaker EERs.

Everything runs offline on this machine: the corpus is spoken by espeak-ng, ``ge2e`` is the real
pretrained GE2E encoder shipped in the resemblyzer wheel, ``fbank``/``mfcc`` are the SUPERB
baselines. Every stage resumes: a rerun skips a finished corpus and finished cache shards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from layerlab import storage

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


class DemoConfig(BaseModel):
    """What the demo builds and measures (``configs/demo.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    speakers: int = Field(48, ge=4, description="synthetic talkers in the corpus")
    seed: int = 0
    models: list[str] = Field(default_factory=lambda: ["ge2e", "fbank"], min_length=1)
    concurrency: tuple[int, int] = (1, 2)
    batch_seconds: float = 40.0

    @classmethod
    def from_yaml(cls, url: str) -> "DemoConfig":
        """Load and validate a YAML file; one-line errors name the file and the field."""
        from layerlab.config import load_config

        return load_config(cls, url)


def cache_name(spec: str) -> str:
    """A folder name for a model spec (``s3prl:wavlm_base`` -> ``s3prl_wavlm_base``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in spec)


def _corpus_is_current(corpus: str, config: DemoConfig) -> bool:
    from layerlab.data.manifest import read_manifest

    try:
        m = read_manifest(corpus)
    except FileNotFoundError:
        return False
    saved = m.extra.get("config", {})
    return saved.get("speakers") == config.speakers and saved.get("seed") == config.seed


def build_corpus(out: str, config: DemoConfig, say: Any) -> str:
    """Build (or reuse) the demo corpus under ``out/corpus``."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    corpus = storage.join(out, "corpus")
    if _corpus_is_current(corpus, config):
        say(f"corpus: reusing {corpus}")
        return corpus
    say(f"corpus: building {config.speakers} synthetic speakers into {corpus}")
    summary = build_synth_corpus(corpus, SynthConfig(speakers=config.speakers, seed=config.seed), overwrite=True)  # the demo owns its folder
    say(summary.render())
    return corpus


def extract_models(corpus: str, out: str, config: DemoConfig, say: Any) -> dict[str, str]:
    """Pooled cache + per-shard frame-level CKA side-output for every model; returns spec -> cache URL."""
    from layerlab.extract import extract
    from layerlab.extract.config import CKASideOutput, ExtractConfig

    caches = {}
    for spec in config.models:
        url = storage.join(out, "cache", cache_name(spec))
        cfg = ExtractConfig(tier="pooled", concurrency=config.concurrency, batch_seconds=config.batch_seconds,
                            cka=[CKASideOutput(name="frames")])
        summary = extract(spec, corpus, url, cfg)
        say(summary.render() if hasattr(summary, "render") else str(summary))
        if summary.shards_failed:
            raise RuntimeError(f"extraction of {spec} failed on shards {sorted(summary.shards_failed)}")
        caches[spec] = url
    return caches


def frame_level_cka(caches: dict[str, str], out: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Within-model frame-level CKA from the extraction side-outputs (frames were never stored)."""
    from layerlab.cache import open_cache
    from layerlab.cka.heatmap import HeatmapPanel, write_heatmaps
    from layerlab.cka.state_io import accumulator_from_state
    from layerlab.cka.tables import write_matrix

    panels, results, layer_names = [], {}, {}
    for spec, url in caches.items():
        cache = open_cache(url)
        state = cache.cka_merged("frames")
        if state is None:
            continue
        acc = accumulator_from_state(state)
        names = [n for n, r in zip(cache.metadata.layer_names, cache.metadata.frame_rates_hz) if r is not None]
        for estimator in ("biased", "debiased"):
            mat = np.asarray(acc.using(estimator).compute())
            write_matrix(storage.join(out, "cka", f"frame_{estimator}_{cache_name(spec)}.parquet"), mat, names, names,
                         estimator=estimator, level="frame", model_a=spec, model_b=spec)
            results[f"{spec}:{estimator}"] = mat.round(4).tolist()
        layer_names[spec] = names
        n_frames = int(getattr(acc, "n", 0))
        panels.append(HeatmapPanel(np.asarray(acc.using("biased").compute()), f"{spec}: biased CKA, frame level, {n_frames} frames",
                                   f"{spec} layer", f"{spec} layer", names_a=names, names_b=names))
    if panels:
        write_heatmaps(storage.join(out, "cka", "frame_within.png"), panels)
    return results, layer_names


def utterance_level_cka(caches: dict[str, str], out: str) -> dict[str, Any]:
    """Joint utterance-level CKA (pooled means) of the first two models: A x A, B x B, A x B."""
    from layerlab.cka.pipeline import CKAJob, run_cka

    specs = list(caches)
    job = CKAJob(caches[specs[0]], caches[specs[1]] if len(specs) > 1 else None, estimator="biased", level="utterance", group_by="speaker")
    return run_cka(job, storage.join(out, "cka", "utterance"), bootstrap=50)


def speaker_verification(corpus: str, caches: dict[str, str]) -> dict[str, dict[str, float]]:
    """EER per layer on the corpus's held-out ASV trials: cosine of per-utterance mean vectors.

    Vectors are centred on the mean of the ASV *training* speakers' utterances first (the usual
    mean subtraction of speaker verification; without it a common offset dominates every cosine).
    """
    from layerlab.cache import open_cache
    from layerlab.data.shards import read_metadata, read_table
    from layerlab.metrics import eer

    trials = read_table(corpus, "asv_trials").to_pylist()
    meta = read_metadata(corpus, columns=("id", "splits")).to_pylist()
    train_ids = [r["id"] for r in meta if dict(r["splits"] or []).get("asv") == "train"]
    out: dict[str, dict[str, float]] = {}
    for spec, url in caches.items():
        pooled = open_cache(url).read_pooled()  # every layer in one pass over the shards
        ids = pooled.ids
        out[spec] = {}
        for layer, vecs in pooled.mean.items():
            index = {u: i for i, u in enumerate(ids)}
            train = [index[u] for u in train_ids if u in index]
            vecs = vecs - vecs[train].mean(axis=0) if train else vecs
            unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            pos, neg = [], []
            for t in trials:
                if t["enrol"] in index and t["test"] in index:
                    score = float(unit[index[t["enrol"]]] @ unit[index[t["test"]]])
                    (pos if t["label"] else neg).append(score)
            if pos and neg:
                out[spec][layer] = round(100 * eer(np.r_[pos, neg], np.r_[np.ones(len(pos)), np.zeros(len(neg))]), 2)
    return out


def run_demo(out: str, config: DemoConfig | None = None, say: Any = print) -> dict[str, Any]:
    """Run the whole embedded-default job into ``out``; returns (and writes) ``summary.json``."""
    config = config or (DemoConfig.from_yaml(str(DEFAULT_CONFIG)) if DEFAULT_CONFIG.exists() else DemoConfig())
    t0 = time.perf_counter()
    corpus = build_corpus(out, config, say)
    t_corpus = time.perf_counter() - t0
    caches = extract_models(corpus, out, config, say)
    t_extract = time.perf_counter() - t0 - t_corpus
    frame, frame_layers = frame_level_cka(caches, out)
    utterance = utterance_level_cka(caches, out)
    eer = speaker_verification(corpus, caches)
    summary = {
        "corpus": corpus,
        "caches": caches,
        "seconds": {"corpus": round(t_corpus, 1), "extract": round(t_extract, 1), "total": round(time.perf_counter() - t0, 1)},
        "frame_cka": frame,
        "frame_cka_layers": frame_layers,
        "utterance_cka": {"tables": utterance["tables"], "heatmap": utterance["heatmap"], "n_utterances": utterance["n_utterances"]},
        "asv_eer_percent_by_layer": eer,
    }
    storage.write_json(storage.join(out, "summary.json"), summary)
    say(render(summary))
    return summary


def _matrix_lines(mat: list[list[float]], names: list[str]) -> list[str]:
    """A CKA matrix as an aligned text table with layer names on both axes."""
    width = max(6, *(len(n) for n in names))
    lines = ["  " + " " * width + " " + " ".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, mat):
        lines.append("  " + f"{name:>{width}} " + " ".join(f"{v:>{width}.3f}" for v in row))
    return lines


def render(summary: dict[str, Any]) -> str:
    """Human-readable end-of-run report."""
    lines = ["", "== layerlab demo ==", f"corpus: {summary['corpus']}"]
    for spec, url in summary["caches"].items():
        lines.append(f"cache {spec}: {url}")
    lines.append("speaker verification EER (%) on held-out synthetic speakers, per layer (cosine of mean vectors):")
    for spec, per_layer in summary["asv_eer_percent_by_layer"].items():
        note = "  (normalised per utterance, as SUPERB's baseline: its means carry no speaker information, ~50% is expected)" if spec in ("fbank", "mfcc") else ""
        lines.append(f"  {spec}: " + ", ".join(f"{k} {v:.1f}" for k, v in per_layer.items()) + note)
    for key, mat in summary["frame_cka"].items():
        if key.endswith(":biased"):
            spec = key.split(":")[0]
            names = summary.get("frame_cka_layers", {}).get(spec) or [str(i) for i in range(len(mat))]
            lines.append(f"frame-level CKA within {spec} (biased):")
            lines += _matrix_lines(mat, names)
    lines.append("utterance-level CKA (pooled means, bootstrap over speakers):")
    for url in summary["utterance_cka"]["tables"]:
        lines.append(f"  table: {url}")
    lines.append(f"  heatmap: {summary['utterance_cka']['heatmap']}")
    lines.append(f"time: {summary['seconds']}")
    return "\n".join(lines)
