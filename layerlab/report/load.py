"""Read the study's result tables: probe metrics and layer weights (contract schemas), CKA matrices."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from layerlab import storage

METRIC_COLUMNS = ["model", "task", "probe", "split", "metric", "value", "ci_low", "ci_high", "n", "higher_is_better"]
#: columns added by CONTRACTS §1; old tables lack them and get these defaults
METRIC_DEFAULTS: dict[str, Any] = {"n_groups": 0, "grouping": "", "ci_method": "", "note": ""}
WEIGHT_COLUMNS = ["model", "task", "layer", "weight", "normalized_weight"]
REPLICATE_COLUMNS = ["model", "task", "probe", "split", "metric", "group", "value"]
WEIGHTED = "weighted_sum"


def read_parquet(url: str) -> pd.DataFrame:
    """One Parquet file at any storage URL as a DataFrame; errors name the file."""
    try:
        return pq.read_table(io.BytesIO(storage.read_bytes(url))).to_pandas()
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - a corrupt table is reported with its URL
        raise ValueError(f"{url}: not a readable Parquet table ({exc})") from exc


def _check(df: pd.DataFrame, columns: list[str], url: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{url}: missing columns {missing} (expected {columns})")
    return df


def load_metrics(probes: list[dict[str, Any]]) -> pd.DataFrame:
    """All probe metrics, the ``model`` column set to the study's model name (the spec kept in ``spec``)."""
    frames = []
    for p in probes:
        if not storage.exists(p["metrics"]):
            continue
        df = _check(read_parquet(p["metrics"]), METRIC_COLUMNS, p["metrics"]).copy()
        for col, default in METRIC_DEFAULTS.items():
            df[col] = df[col].fillna(default) if col in df.columns else default
        df["spec"] = df["model"]
        df["model"], df["task"], df["dataset"] = p["model"], p["task"], p["dataset"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=METRIC_COLUMNS + list(METRIC_DEFAULTS) + ["spec", "dataset"])
    out = pd.concat(frames, ignore_index=True)
    out["n_groups"] = out["n_groups"].astype(int)
    return out


def load_replicates(probes: list[dict[str, Any]]) -> pd.DataFrame:
    """Leave-one-group-out replicates of every probe metric (CONTRACTS §2); empty when no probe recorded them."""
    frames = []
    for p in probes:
        url = p.get("replicates") or (storage.join(p["dir"], "replicates.parquet") if p.get("dir") else None)
        if not url or not storage.exists(url):
            continue
        df = _check(read_parquet(url), REPLICATE_COLUMNS, url).copy()
        df["model"], df["task"] = p["model"], p["task"]
        df["group"] = df["group"].astype(str)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=REPLICATE_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def probe_summary(p: dict[str, Any]) -> dict[str, Any]:
    """A probe's convergence and speakers (CONTRACTS §4): from the index entry, else its summary.json; {} when not recorded."""
    keys = ("convergence", "speakers", "test_speakers")
    if any(k in p for k in keys):
        return {k: p[k] for k in keys if k in p}
    url = p.get("summary") or (storage.join(p["dir"], "summary.json") if p.get("dir") else None)
    if not url or not storage.exists(url):
        return {}
    try:
        summary = json.loads(storage.read_bytes(url))
    except ValueError:
        return {}
    return {k: summary[k] for k in keys if k in summary}


def load_weights(probes: list[dict[str, Any]]) -> pd.DataFrame:
    """All learned layer weights (weighted-sum probes), keyed by the study's model name."""
    frames = []
    for p in probes:
        url = p.get("layer_weights")
        if not url or not storage.exists(url):
            continue
        df = _check(read_parquet(url), WEIGHT_COLUMNS, url).copy()
        if "contribution" not in df.columns:
            df["contribution"] = np.nan  # old table: no contribution share recorded (its normalized_weight is not one)
        df["model"], df["task"], df["dataset"] = p["model"], p["task"], p["dataset"]
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=WEIGHT_COLUMNS + ["contribution", "dataset"])
    return pd.concat(frames, ignore_index=True)


@dataclass
class CKAMatrix:
    """One CKA map with layer names; ``low``/``high`` its interval when the table has one; ``replicates`` (CONTRACTS §7) when recorded."""

    dataset: str
    mode: str
    level: str
    estimator: str
    model_a: str
    model_b: str
    layers_a: list[str]
    layers_b: list[str]
    value: np.ndarray
    low: np.ndarray | None
    high: np.ndarray | None
    replicates: pd.DataFrame | None = None
    group_by: str = ""

    def tidy(self) -> pd.DataFrame:
        """Long form: model_a, model_b, layer_a, layer_b, value, ci_low, ci_high, level, estimator, dataset."""
        ia, ib = np.meshgrid(range(len(self.layers_a)), range(len(self.layers_b)), indexing="ij")
        return pd.DataFrame({
            "dataset": self.dataset, "model_a": self.model_a, "model_b": self.model_b,
            "layer_a": [self.layers_a[i] for i in ia.ravel()], "layer_b": [self.layers_b[j] for j in ib.ravel()],
            "value": self.value.ravel(),
            "ci_low": self.low.ravel() if self.low is not None else np.nan,
            "ci_high": self.high.ravel() if self.high is not None else np.nan,
            "level": self.level, "estimator": self.estimator,
        })


def _matrix(df: pd.DataFrame, col: str, names_a: list[str], names_b: list[str]) -> np.ndarray:
    out = np.full((len(names_a), len(names_b)), np.nan)
    ia = {n: i for i, n in enumerate(names_a)}
    ib = {n: i for i, n in enumerate(names_b)}
    out[df["layer_a"].map(ia).to_numpy(), df["layer_b"].map(ib).to_numpy()] = df[col].to_numpy(dtype=np.float64)
    return out


def _ordered(df: pd.DataFrame, side: str, known: list[str]) -> list[str]:
    """Layer names of one side, in model order (index column, the study's layer list, or first appearance)."""
    names = list(dict.fromkeys(df[f"layer_{side}"]))
    if f"index_{side}" in df.columns:
        return [n for _, n in sorted(set(zip(df[f"index_{side}"], df[f"layer_{side}"])))]
    rank = {n: i for i, n in enumerate(known)}
    return sorted(names, key=lambda n: rank.get(n, len(rank)))


def load_cka(entry: dict[str, Any], models: dict[str, Any]) -> CKAMatrix | None:
    """The matrix of one CKA stage: within (A x A) or across (A x B, picked by its layer names)."""
    a, b = (entry["models"] * 2)[:2]
    want_a, want_b = models.get(a, {}).get("layers", []), models.get(b, {}).get("layers", [])
    chosen, chosen_reps = None, None
    reps = list(entry.get("replicates") or [])
    for k, url in enumerate(entry["tables"]):
        if not storage.exists(url):
            continue
        df = read_parquet(url)
        if "value" not in df.columns and "cka" in df.columns:
            df = df.rename(columns={"cka": "value"})
        _check(df, ["layer_a", "layer_b", "value"], url)
        if entry["mode"] == "within" or (set(df["layer_a"]) <= set(want_a) and set(df["layer_b"]) <= set(want_b) and url.endswith("_a_b.parquet")):
            chosen, chosen_reps = df, (reps[k] if k < len(reps) else None)
            break
        if set(df["layer_a"]) <= set(want_a) and set(df["layer_b"]) <= set(want_b) and set(want_a) != set(want_b):
            chosen, chosen_reps = df, (reps[k] if k < len(reps) else None)
    if chosen is None:
        return None
    la, lb = _ordered(chosen, "a", want_a), _ordered(chosen, "b", want_b)
    has_ci = "ci_low" in chosen.columns and chosen["ci_low"].notna().any()
    replicates = None
    if chosen_reps and storage.exists(chosen_reps):
        replicates = _check(read_parquet(chosen_reps), ["layer_a", "layer_b", "group", "value"], chosen_reps).copy()
        replicates["group"] = replicates["group"].astype(str)
    return CKAMatrix(entry["dataset"], entry["mode"], entry["level"], entry.get("estimator", ""), a, b, la, lb,
                     _matrix(chosen, "value", la, lb),
                     _matrix(chosen, "ci_low", la, lb) if has_ci else None, _matrix(chosen, "ci_high", la, lb) if has_ci else None,
                     replicates, str(entry.get("group_by") or ""))
