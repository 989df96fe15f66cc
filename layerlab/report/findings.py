"""The paper's three findings, recomputed from the study's numbers, each with evidence and CIs.

A finding says "supported" only when the numbers show it (intervals separated where a difference is
claimed); otherwise it says "not supported" or "inconclusive" and why — never a canned sentence.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from layerlab.report.load import WEIGHTED, CKAMatrix
from layerlab.report.tables import PERCENT_METRICS, primary_metric

CONTENT = ("pr", "ks", "ic")
SPEAKER = ("sid", "asv")
Z95 = 1.959964


@dataclass
class Finding:
    """One finding: a verdict, a sentence with the numbers, and the evidence lines behind it."""

    id: str
    claim: str
    verdict: str  # supported | partly supported | not supported | inconclusive
    sentence: str
    evidence: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _show(v: float, metric: str) -> str:
    return f"{100 * v:.1f}%" if metric in PERCENT_METRICS else f"{v:.3f}"


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1 = smallest) along axis -2 (the models) of an array [..., models, columns]."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-2)


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman rho of x[i] and y[i] for each row i (nan where a row is constant)."""
    rx, ry = _ranks(x[..., None])[..., 0], _ranks(y[..., None])[..., 0]
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _task_scores(metrics: pd.DataFrame, tasks: Sequence[str], split: str) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, bool]]:
    """Per model x task: value and standard error of the weighted-sum probe's primary metric."""
    m = metrics[(metrics["probe"] == WEIGHTED) & (metrics["split"] == split)].copy()
    m["metric"] = m["metric"].str.lower()
    values, errors, used, hib = {}, {}, [], {}
    for task in tasks:
        metric = primary_metric(m, task)
        if metric is None:
            continue
        sub = m[(m["task"] == task) & (m["metric"] == metric)].drop_duplicates("model", keep="last").set_index("model")
        values[task] = sub["value"]
        errors[task] = (sub["ci_high"] - sub["ci_low"]).abs() / (2 * Z95)
        hib[task] = bool(sub["higher_is_better"].iloc[0])
        used.append(task)
    return pd.DataFrame(values), pd.DataFrame(errors), used, hib


def _composite(values: np.ndarray, higher: Sequence[bool]) -> np.ndarray:
    """Mean rank of each model over tasks (higher = better on every task); values [..., models, tasks]."""
    signed = values * np.where(np.asarray(higher), 1.0, -1.0)
    return _ranks(signed).mean(-1)


def content_vs_speaker(metrics: pd.DataFrame, models: dict[str, Any], split: str, draws: int = 2000, seed: int = 0) -> Finding:
    """(1) Rank correlation across models between content (PR, KS, IC) and speaker (SID, ASV) ability."""
    claim = "Content ability (PR, KS, IC) is largely unrelated to speaker ability (SID, ASV) across models."
    learned = [n for n, m in models.items() if not m.get("baseline")]
    cv, ce, ctasks, chib = _task_scores(metrics, CONTENT, split)
    sv, se, stasks, shib = _task_scores(metrics, SPEAKER, split)
    if not ctasks or not stasks:
        missing = "content" if not ctasks else "speaker"
        return Finding("content_vs_speaker", claim, "not supported", f"Not supported: the study has no {missing}-task results to correlate.")
    names = [n for n in learned if n in cv.dropna().index and n in sv.dropna().index]
    if len(names) < 3:
        return Finding("content_vs_speaker", claim, "not supported",
                       f"Not supported: a rank correlation needs at least 3 learned models with both content and speaker results; the study has {len(names)}.")
    cv, ce, sv, se = (df.loc[names].to_numpy(float) for df in (cv, ce.fillna(0), sv, se.fillna(0)))
    ch, sh = [chib[t] for t in ctasks], [shib[t] for t in stasks]
    content, speaker = _composite(cv, ch), _composite(sv, sh)
    rho = float(_spearman_rows(content[None], speaker[None])[0])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(names), (draws, len(names)))  # resample models, and each metric within its CI
    c = rng.normal(cv[pick], ce[pick])
    s = rng.normal(sv[pick], se[pick])
    boot = _spearman_rows(_composite(c, ch), _composite(s, sh))
    boot = boot[~np.isnan(boot)]
    lo, hi = (np.percentile(boot, [2.5, 97.5]) if len(boot) > 20 else (np.nan, np.nan))
    stats = f"Spearman ρ = {rho:+.2f} (95% CI [{lo:+.2f}, {hi:+.2f}], n = {len(names)} models; content = mean rank on {', '.join(t.upper() for t in ctasks)}, speaker = mean rank on {', '.join(t.upper() for t in stasks)}, {split} split)"
    evidence = [f"{n}: content rank {c:.1f}, speaker rank {s:.1f} (of {len(names)}, higher = better)" for n, c, s in zip(names, content, speaker)]
    if np.isnan(rho) or np.isnan(lo):
        return Finding("content_vs_speaker", claim, "inconclusive", f"Inconclusive: {stats}; the rankings have ties that leave ρ undefined.", evidence)
    if lo > 0 or hi < 0:
        return Finding("content_vs_speaker", claim, "not supported", f"Not supported: content and speaker rankings are related, {stats}.", evidence)
    if abs(rho) < 0.5:
        return Finding("content_vs_speaker", claim, "supported", f"Supported: {stats}; the interval includes 0.", evidence)
    return Finding("content_vs_speaker", claim, "inconclusive",
                   f"Inconclusive: {stats}; the interval includes 0 but the point estimate is large — too few models to tell.", evidence)


def _depth(layer: str, layers: Sequence[str]) -> float:
    return layers.index(layer) / max(1, len(layers) - 1) if layer in layers else float("nan")


def _centroid(weights: pd.DataFrame, model: str, tasks: Sequence[str], layers: Sequence[str]) -> float:
    """Weight-averaged relative depth (0 = first layer, 1 = last) of a model's learned weights over ``tasks``."""
    sub = weights[(weights["model"] == model) & (weights["task"].isin(tasks))]
    if sub.empty or not layers:
        return float("nan")
    per_task = [float(sum(w * _depth(l, layers) for l, w in zip(g["layer"], g["normalized_weight"])) / max(g["normalized_weight"].sum(), 1e-12))
                for _, g in sub.groupby("task")]
    return float(np.nanmean(per_task))


@dataclass
class Profile:
    """A model's per-layer PR profile: best layer, its depth, and the last layer for comparison."""

    metric: str
    layers: list[str]
    values: np.ndarray
    low: np.ndarray
    high: np.ndarray
    higher_is_better: bool

    @property
    def best(self) -> int:
        return int(np.nanargmax(self.values) if self.higher_is_better else np.nanargmin(self.values))

    def separated(self, i: int, j: int) -> bool:
        """Whether layer i is better than layer j with non-overlapping CIs."""
        return bool(self.low[i] > self.high[j]) if self.higher_is_better else bool(self.high[i] < self.low[j])


def pr_profile(metrics: pd.DataFrame, model: str, layers: Sequence[str], split: str) -> Profile | None:
    """A model's per-layer phone-recognition profile (CTC PR, else frame-wise PR)."""
    for task in ("pr", "pr-frame"):
        m = metrics[(metrics["task"] == task) & (metrics["split"] == split) & (metrics["model"] == model) & (metrics["probe"] != WEIGHTED)].copy()
        if not m.empty:
            break
    else:
        return None
    m["metric"] = m["metric"].str.lower()
    metric = primary_metric(m, task)
    m = m[m["metric"] == metric].drop_duplicates("probe", keep="last").set_index("probe")
    names = [n for n in layers if n in m.index] or list(m.index)
    if len(names) < 2:
        return None
    return Profile(metric, names, m.loc[names, "value"].to_numpy(float), m.loc[names, "ci_low"].to_numpy(float),
                   m.loc[names, "ci_high"].to_numpy(float), bool(m["higher_is_better"].iloc[0]))


def ssl_deep_content(metrics: pd.DataFrame, weights: pd.DataFrame, models: dict[str, Any], split: str) -> Finding:
    """(2) Per model, where phone information peaks; whether speech-SSL deep layers specialise in content."""
    claim = "Deeper layers of speech-SSL models specialise in linguistic content."
    evidence, ssl_votes = [], []
    for name, info in models.items():
        prof = pr_profile(metrics, name, info.get("layers", []), split)
        if prof is None:
            continue
        b = prof.best
        depth = b / max(1, len(prof.layers) - 1)
        centroid = _centroid(weights, name, ["pr"], prof.layers)
        c_content, c_speaker = _centroid(weights, name, CONTENT, prof.layers), _centroid(weights, name, SPEAKER, prof.layers)
        line = (f"{info.get('label', name)} ({info.get('family')}): PR peaks at {prof.layers[b]} (relative depth {depth:.2f}), "
                f"{prof.metric.upper()} {_show(prof.values[b], prof.metric)} [{_show(prof.low[b], prof.metric)}, {_show(prof.high[b], prof.metric)}]; "
                f"PR weight centroid {centroid:.2f}; content vs speaker weight centroid {c_content:.2f} vs {c_speaker:.2f}")
        evidence.append(line)
        if info.get("family") == "speech_ssl":
            beats_first = prof.separated(b, 0) if b != 0 else False
            ssl_votes.append(depth >= 0.5 and beats_first and not (c_content < c_speaker))
    if not evidence:
        return Finding("ssl_deep_content", claim, "not supported", "Not supported: the study has no per-layer PR probe results.")
    if not ssl_votes:
        return Finding("ssl_deep_content", claim, "not supported",
                       "Not supported: no speech-SSL model has per-layer PR results in this study, so the claim cannot be tested; per-model peaks are listed below.", evidence)
    k = sum(ssl_votes)
    verdict = "supported" if k == len(ssl_votes) else "partly supported" if k else "not supported"
    return Finding("ssl_deep_content", claim, verdict,
                   f"{verdict.capitalize()}: in {k} of {len(ssl_votes)} speech-SSL models phone information peaks in the upper half of the layers, "
                   "better than the first layer beyond the CIs, with content-task weights no shallower than speaker-task weights.", evidence)


def _block(mp: CKAMatrix, rows: slice, cols: slice) -> tuple[float, float, float]:
    """Mean CKA over a block and the mean of its cells' CI bounds (nan without bootstrap)."""
    v = float(np.nanmean(mp.value[rows, cols]))
    if mp.low is None or mp.high is None:
        return v, float("nan"), float("nan")
    return v, float(np.nanmean(mp.low[rows, cols])), float(np.nanmean(mp.high[rows, cols]))


def _thirds(n: int) -> tuple[slice, slice]:
    k = max(1, n // 3)
    return slice(0, k), slice(n - k, n)


def speaker_models_discard_content(metrics: pd.DataFrame, maps: Sequence[CKAMatrix], models: dict[str, Any], split: str) -> Finding:
    """(3) Speaker models: phone information peaks early then falls; their late layers are unlike speech-SSL deep layers."""
    claim = "Speaker models represent phonemes early and discard linguistic information in later layers."
    evidence, votes = [], []
    speakers = [n for n, m in models.items() if m.get("family") == "speaker"]
    for name in speakers:
        prof = pr_profile(metrics, name, models[name].get("layers", []), split)
        if prof is None:
            continue
        b, last = prof.best, len(prof.layers) - 1
        falls = b < last and prof.separated(b, last)
        early = b / max(1, last) < 0.5
        votes.append(early and falls)
        evidence.append(f"{models[name].get('label', name)}: PR peaks at {prof.layers[b]} (depth {b / max(1, last):.2f}), "
                        f"{_show(prof.values[b], prof.metric)} [{_show(prof.low[b], prof.metric)}, {_show(prof.high[b], prof.metric)}] vs last layer {prof.layers[last]} "
                        f"{_show(prof.values[last], prof.metric)} [{_show(prof.low[last], prof.metric)}, {_show(prof.high[last], prof.metric)}]"
                        + ("" if falls else " (no drop beyond the CIs)"))
    cka_votes = []
    for mp in maps:
        if mp.mode != "across":
            continue
        fam = (models.get(mp.model_a, {}).get("family"), models.get(mp.model_b, {}).get("family"))
        if set(fam) != {"speaker", "speech_ssl"}:
            continue
        spk_rows = fam[0] == "speaker"
        value = mp.value if spk_rows else mp.value.T
        low = None if mp.low is None else (mp.low if spk_rows else mp.low.T)
        high = None if mp.high is None else (mp.high if spk_rows else mp.high.T)
        view = CKAMatrix(mp.dataset, mp.mode, mp.level, mp.estimator, "", "", [], [], value, low, high)
        spk_early, spk_late = _thirds(value.shape[0])
        _, ssl_deep = _thirds(value.shape[1])
        late, late_lo, late_hi = _block(view, spk_late, ssl_deep)
        early, early_lo, early_hi = _block(view, spk_early, ssl_deep)
        spk, ssl = (mp.model_a, mp.model_b) if spk_rows else (mp.model_b, mp.model_a)
        separated = not np.isnan(late_hi) and late_hi < early_lo
        cka_votes.append(late < early and separated)
        evidence.append(f"CKA ({mp.level}) {models[spk].get('label', spk)} late layers x {models[ssl].get('label', ssl)} deep layers = {late:.2f} "
                        f"(mean cell CI [{late_lo:.2f}, {late_hi:.2f}]) vs its early layers x the same = {early:.2f} [{early_lo:.2f}, {early_hi:.2f}]")
    if not votes and not cka_votes:
        return Finding("speaker_discard", claim, "not supported",
                       "Not supported: the study has neither per-layer PR results for a speaker model nor CKA between a speaker model and a speech-SSL model.", evidence)
    parts, ok = [], []
    if votes:
        parts.append(f"phone information peaks early and falls beyond the CIs in {sum(votes)} of {len(votes)} speaker models")
        ok.append(all(votes))
    if cka_votes:
        parts.append(f"late speaker layers are less similar to speech-SSL deep layers than early ones (CIs separated) in {sum(cka_votes)} of {len(cka_votes)} pairs")
        ok.append(all(cka_votes))
    any_ok = any(votes) or any(cka_votes)
    verdict = "supported" if all(ok) else "partly supported" if any_ok else "not supported"
    return Finding("speaker_discard", claim, verdict, f"{verdict.capitalize()}: " + "; ".join(parts) + ".", evidence)


def compute_findings(metrics: pd.DataFrame, weights: pd.DataFrame, maps: Sequence[CKAMatrix], models: dict[str, Any], split: str) -> list[Finding]:
    """All three findings, in the paper's order."""
    return [content_vs_speaker(metrics, models, split), ssl_deep_content(metrics, weights, models, split),
            speaker_models_discard_content(metrics, maps, models, split)]
