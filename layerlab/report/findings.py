"""The paper's three findings, recomputed from the study's numbers, each with a verdict, a sentence and its numbers.

Four verdicts, kept apart:
  * ``supported``: the numbers show the claim (a paired interval of the difference excludes 0 in the
    claimed direction; for "unrelated", the whole interval lies inside the stated equivalence bound);
  * ``contradicted``: the numbers show the opposite (the interval excludes 0 the other way);
  * ``inconclusive``: the data exist but the effect is within noise;
  * ``untestable``: too few models / layers / groups, or a table the test needs was not recorded
    (the sentence says what is missing and how many are needed).

Per-layer claims ("peaks / falls / better than") use frame-level layers only (model info
``layer_levels``), depth relative among them; the best layer is chosen on dev and compared on test
with a paired jackknife of the difference over the same speakers/utterances (``replicates.parquet``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from layerlab.metrics.ci import Interval, paired_difference
from layerlab.report.load import WEIGHTED, CKAMatrix
from layerlab.report.tables import PERCENT_METRICS, primary_metric

CONTENT = ("pr", "ks", "ic")
SPEAKER = ("sid", "asv")
VERDICTS = ("supported", "contradicted", "inconclusive", "untestable")
#: finding 1's equivalence bound: "unrelated" means |rho| < EQUIVALENCE_BOUND with the whole interval inside
EQUIVALENCE_BOUND = 0.5
#: fewest frame-level layers for a per-layer profile claim (first, best, last distinct)
MIN_PROFILE_LAYERS = 3


@dataclass
class Finding:
    """One finding: a verdict, a sentence with the numbers, the evidence lines, and the numbers as a dict."""

    id: str
    claim: str
    verdict: str  # one of VERDICTS
    sentence: str
    evidence: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"finding {self.id}: verdict {self.verdict!r} is not one of {VERDICTS}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _show(v: float, metric: str) -> str:
    return f"{100 * v:.1f}%" if metric in PERCENT_METRICS else f"{v:.3f}"


def _diff(v: float, metric: str) -> str:
    return f"{100 * v:+.1f} points" if metric in PERCENT_METRICS else f"{v:+.3f}"


# ---------------------------------------------------------------- finding 1: rank correlation over models


def _z(confidence: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + confidence / 2))


def spearman_interval(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Spearman rho of x and y with a Fisher-z interval using the Bonett-Wright SE sqrt((1 + rho²/2)/(n-3)).

    Bonett & Wright (2000) give this SE for Spearman's rho (the Pearson 1/sqrt(n-3) under-covers);
    it needs n >= 4. Returns (rho, low, high); nan when undefined (constant ranks, n < 4).
    """
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    rho = float(spearmanr(x, y).statistic)
    r = float(np.clip(rho, -0.9999, 0.9999))
    se = math.sqrt((1 + r * r / 2) / (n - 3))
    z = math.atanh(r)
    half = _z(confidence) * se
    return rho, math.tanh(z - half), math.tanh(z + half)


def equivalence_min_models(bound: float = EQUIVALENCE_BOUND, confidence: float = 0.95) -> int:
    """Fewest models at which a Spearman interval (rho = 0, Bonett-Wright SE) can fit inside (-bound, bound)."""
    need = (_z(confidence) / math.atanh(bound)) ** 2  # n - 3 must exceed this (se at rho = 0 is 1/sqrt(n-3))
    return int(math.floor(need)) + 4


def _task_scores(metrics: pd.DataFrame, tasks: Sequence[str], split: str) -> tuple[pd.DataFrame, list[str], dict[str, bool]]:
    """Per model x task: value of the weighted-sum probe's primary metric."""
    m = metrics[(metrics["probe"] == WEIGHTED) & (metrics["split"] == split)].copy()
    m["metric"] = m["metric"].str.lower()
    values, used, hib = {}, [], {}
    for task in tasks:
        metric = primary_metric(m, task)
        if metric is None:
            continue
        sub = m[(m["task"] == task) & (m["metric"] == metric)].drop_duplicates("model", keep="last").set_index("model")
        values[task] = sub["value"]
        hib[task] = bool(sub["higher_is_better"].iloc[0])
        used.append(task)
    return pd.DataFrame(values), used, hib


def _composite(values: np.ndarray, higher: Sequence[bool]) -> np.ndarray:
    """Mean rank of each model over tasks (higher = better on every task); values [models, tasks]."""
    from scipy.stats import rankdata

    signed = values * np.where(np.asarray(higher), 1.0, -1.0)
    return rankdata(signed, axis=0).mean(-1)


def content_vs_speaker(metrics: pd.DataFrame, models: dict[str, Any], split: str, bound: float = EQUIVALENCE_BOUND,
                       confidence: float = 0.95) -> Finding:
    """(1) Content ability is unrelated to speaker ability: an equivalence test on Spearman's rho across models."""
    need = equivalence_min_models(bound, confidence)
    claim = (f"Content ability (PR, KS, IC) is largely unrelated to speaker ability (SID, ASV) across models "
             f"(unrelated: |Spearman ρ| < {bound:.1f}, the whole {confidence:.0%} interval inside (−{bound:.1f}, {bound:.1f})).")
    fid = "content_vs_speaker"
    learned = [n for n, m in models.items() if not m.get("baseline") and not m.get("planted") and not m.get("control_of")]
    cv, ctasks, chib = _task_scores(metrics, CONTENT, split)
    sv, stasks, shib = _task_scores(metrics, SPEAKER, split)
    numbers: dict[str, Any] = {"bound": bound, "confidence": confidence, "models_needed": need, "split": split}
    if not ctasks or not stasks:
        missing = "content" if not ctasks else "speaker"
        return Finding(fid, claim, "untestable", f"Untestable: the study has no {missing}-task results to correlate; "
                       f"an equivalence test at |ρ| < {bound:.1f} needs at least {need} learned models with both.", numbers=numbers)
    names = [n for n in learned if n in cv.dropna().index and n in sv.dropna().index]
    numbers["n_models"] = len(names)
    if len(names) < 4:
        return Finding(fid, claim, "untestable",
                       f"Untestable: {len(names)} learned model(s) have both content and speaker results; an interval for ρ needs at least 4, "
                       f"and an equivalence test at |ρ| < {bound:.1f} needs at least {need}.", numbers=numbers)
    content = _composite(cv.loc[names].to_numpy(float), [chib[t] for t in ctasks])
    speaker = _composite(sv.loc[names].to_numpy(float), [shib[t] for t in stasks])
    rho, lo, hi = spearman_interval(content, speaker, confidence)
    numbers.update({"rho": rho, "ci_low": lo, "ci_high": hi, "content_tasks": ctasks, "speaker_tasks": stasks,
                    "ci_method": "Fisher z, Bonett-Wright SE", "models": names})
    evidence = [f"{n}: content rank {c:.1f}, speaker rank {s:.1f} (of {len(names)}, higher = better)" for n, c, s in zip(names, content, speaker)]
    stats = (f"Spearman ρ = {rho:+.2f} ({confidence:.0%} CI [{lo:+.2f}, {hi:+.2f}], Fisher z with the Bonett-Wright SE, n = {len(names)} models; "
             f"content = mean rank on {', '.join(t.upper() for t in ctasks)}, speaker = mean rank on {', '.join(t.upper() for t in stasks)}, {split} split; "
             f"equivalence bound |ρ| < {bound:.1f})")
    if math.isnan(rho):
        return Finding(fid, claim, "inconclusive", f"Inconclusive: the rankings are constant, so ρ is undefined ({len(names)} models).", evidence, numbers)
    if lo > 0 or hi < 0:
        return Finding(fid, claim, "contradicted", f"Contradicted: content and speaker rankings are related, {stats}; the interval excludes 0.", evidence, numbers)
    if len(names) < need:
        return Finding(fid, claim, "untestable",
                       f"Untestable: {stats}; with {len(names)} models no {confidence:.0%} interval can lie inside (−{bound:.1f}, {bound:.1f}) — "
                       f"that needs at least {need} models. An interval containing 0 is not evidence that the two are unrelated.", evidence, numbers)
    if -bound < lo and hi < bound:
        return Finding(fid, claim, "supported", f"Supported: {stats}; the whole interval lies inside (−{bound:.1f}, {bound:.1f}).", evidence, numbers)
    return Finding(fid, claim, "inconclusive",
                   f"Inconclusive: {stats}; the interval contains 0 but reaches beyond ±{bound:.1f}.", evidence, numbers)


# ---------------------------------------------------------------- per-layer profiles (frame-level layers only)


def frame_layers(info: dict[str, Any], present: Sequence[str]) -> tuple[list[str], str]:
    """A model's frame-level layers among ``present`` (in model order) and how they were decided.

    From model info ``layer_levels`` when recorded, else ``frame_layers`` (layers with a frame rate);
    without either, a name-independent rule: no layer is dropped, and the caller's sentence says so.
    """
    order = list(info.get("layers") or [])
    ordered = [n for n in order if n in present] + [n for n in present if n not in order]
    levels = info.get("layer_levels")
    if levels:
        return [n for n in ordered if levels.get(n, "frame") == "frame"], "layer_levels"
    if info.get("frame_layers"):
        frames = set(info["frame_layers"])
        return [n for n in ordered if n in frames], "frame_layers"
    return ordered, "not recorded"


def relative_depth(layer: str, layers: Sequence[str]) -> float:
    """Depth of ``layer`` among ``layers`` (0 = first, 1 = last)."""
    return list(layers).index(layer) / max(1, len(layers) - 1)


@dataclass
class Profile:
    """One model x task's per-layer results on frame-level layers: dev and test values, test CIs."""

    model: str
    task: str
    metric: str
    layers: list[str]
    dev: np.ndarray
    test: np.ndarray
    low: np.ndarray
    high: np.ndarray
    higher_is_better: bool
    levels_source: str
    dropped: list[str]

    @property
    def best(self) -> int:
        """Index of the best layer chosen on dev."""
        sign = 1.0 if self.higher_is_better else -1.0
        return int(np.nanargmax(sign * self.dev))


def profile(metrics: pd.DataFrame, model: str, info: dict[str, Any], task: str = "pr", split: str = "test") -> Profile | None:
    """A model's per-layer profile on ``task`` (frame-level layers only; dev values to choose, ``split`` values to report)."""
    m = metrics[(metrics["task"] == task) & (metrics["model"] == model) & (metrics["probe"] != WEIGHTED)].copy()
    if m.empty:
        return None
    m["metric"] = m["metric"].str.lower()
    metric = primary_metric(m, task)
    m = m[m["metric"] == metric]
    dev = m[m["split"] == "dev"].drop_duplicates("probe", keep="last").set_index("probe")
    test = m[m["split"] == split].drop_duplicates("probe", keep="last").set_index("probe")
    present = [p for p in test.index if p in dev.index]
    names, source = frame_layers(info, present)
    dropped = [p for p in present if p not in names]
    if not names:
        return None
    return Profile(model, task, metric, names, dev.loc[names, "value"].to_numpy(float), test.loc[names, "value"].to_numpy(float),
                   test.loc[names, "ci_low"].to_numpy(float), test.loc[names, "ci_high"].to_numpy(float),
                   bool(test["higher_is_better"].iloc[0]), source, dropped)


def _reps(replicates: pd.DataFrame | None, model: str, task: str, probe: str, split: str, metric: str) -> dict[str, float]:
    if replicates is None or replicates.empty:
        return {}
    r = replicates[(replicates["model"] == model) & (replicates["task"] == task) & (replicates["probe"] == probe)
                   & (replicates["split"] == split) & (replicates["metric"].str.lower() == metric)]
    return {str(g): float(v) for g, v in zip(r["group"], r["value"])}


def paired_better(replicates: pd.DataFrame | None, prof: Profile, i: int, j: int, split: str, confidence: float = 0.95) -> Interval | None:
    """Paired jackknife interval of "layer i better than layer j" (positive = i better), or None without replicates."""
    a, b = prof.layers[i], prof.layers[j]
    ra, rb = _reps(replicates, prof.model, prof.task, a, split, prof.metric), _reps(replicates, prof.model, prof.task, b, split, prof.metric)
    if len(ra) < 2 or set(ra) != set(rb):
        return None
    sign = 1.0 if prof.higher_is_better else -1.0
    iv = paired_difference(sign * prof.test[i], {g: sign * v for g, v in ra.items()}, sign * prof.test[j], {g: sign * v for g, v in rb.items()}, confidence)
    return iv


def _direction(iv: Interval | None) -> str:
    """'better' / 'worse' / 'within noise' / 'not recorded' for a paired interval of (i better than j)."""
    if iv is None:
        return "not recorded"
    return "better" if iv.low > 0 else "worse" if iv.high < 0 else "within noise"


def _iv_text(iv: Interval | None, metric: str, higher: bool) -> str:
    if iv is None:
        return "paired difference not recorded (no replicates.parquet)"
    return (f"paired difference {_diff(iv.estimate, metric)} [{_diff(iv.low, metric)}, {_diff(iv.high, metric)}] "
            f"({iv.method}, {iv.n_groups} groups; positive = better)")


def _vote(prof: Profile | None, replicates: pd.DataFrame | None, split: str, expect_deep: bool, label: str) -> tuple[str, str, dict[str, Any]]:
    """One model's vote on "the content peak lies deep" (expect_deep) or "peaks early then falls" (not expect_deep).

    The best frame-level layer is chosen on dev. If it lies in the claimed half, the claim needs it to
    beat the opposite end (first layer for deep, last for early) on test by a paired interval; if it
    lies in the other half and beats the claimed end, that contradicts the claim.
    """
    if prof is None:
        return "untestable", f"{label}: no per-layer PR results on frame-level layers with both a dev and a {split} row (dev chooses the best layer)", {}
    n = len(prof.layers)
    info: dict[str, Any] = {"layers": prof.layers, "levels_source": prof.levels_source, "dropped_utterance_layers": prof.dropped}
    if n < MIN_PROFILE_LAYERS:
        return "untestable", f"{label}: {n} frame-level layer(s); a profile claim needs at least {MIN_PROFILE_LAYERS}", info
    b = prof.best
    depth = relative_depth(prof.layers[b], prof.layers)
    deep = depth >= 0.5
    other = 0 if deep else n - 1
    iv = paired_better(replicates, prof, b, other, split) if other != b else None
    d = _direction(iv)
    info.update({"best_on_dev": prof.layers[b], "relative_depth": depth, "compared_with": prof.layers[other],
                 "test_best": prof.test[b], "test_other": prof.test[other],
                 "difference": None if iv is None else {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "n_groups": iv.n_groups}})
    text = (f"{label}: best frame-level layer on dev {prof.layers[b]} (relative depth {depth:.2f} of {n} frame-level layers), test "
            f"{prof.metric.upper()} {_show(prof.test[b], prof.metric)} [{_show(prof.low[b], prof.metric)}, {_show(prof.high[b], prof.metric)}] vs "
            f"{prof.layers[other]} {_show(prof.test[other], prof.metric)}: {_iv_text(iv, prof.metric, prof.higher_is_better)}")
    if prof.dropped:
        text += f"; utterance-level layers left out of the profile: {', '.join(prof.dropped)}"
    if prof.levels_source == "not recorded":
        text += "; layer levels not recorded: every layer treated as frame-level"
    if d == "not recorded":
        return "untestable", text, info
    if d != "better":
        return "inconclusive", text, info
    return ("supported" if deep == expect_deep else "contradicted"), text, info


def _combine(votes: Sequence[str]) -> str:
    """All testable votes agree -> that verdict; any testable disagreement or noise -> inconclusive; none testable -> untestable."""
    testable = [v for v in votes if v != "untestable"]
    if not testable:
        return "untestable"
    if all(v == "supported" for v in testable):
        return "supported"
    if all(v == "contradicted" for v in testable):
        return "contradicted"
    return "inconclusive"


def _counts(votes: Sequence[str]) -> str:
    return ", ".join(f"{votes.count(v)} {v}" for v in VERDICTS if votes.count(v))


#: how the findings name their lines of evidence (``numbers["evidence"]`` lists the ones a verdict rests on)
EVIDENCE_SGD = "SGD per-layer PR probes"
EVIDENCE_CKA = "CKA speaker-late x SSL deep vs shallow"
EVIDENCE_TRAINING_FREE = "training-free phone profiles (closed-form held-out accuracy)"


def _training_free_votes(tf_profiles: dict[str, Profile] | None, tf_replicates: pd.DataFrame | None, models: dict[str, Any], family: str,
                         split: str, expect_deep: bool) -> tuple[list[str], list[str], dict[str, Any]]:
    """Votes of the training-free phone profiles (second line of evidence): the same rule as the SGD probes' (best layer on dev, paired test)."""
    votes, evidence, per_model = [], [], {}
    for name, info in models.items():
        if info.get("family") != family or info.get("control_of") or not tf_profiles or name not in tf_profiles:
            continue
        v, text, nums = _vote(tf_profiles[name], tf_replicates, split, expect_deep, f"{info.get('label', name)}, training-free phone profile")
        votes.append(v)
        evidence.append(f"{text} → {v}")
        per_model[name] = {"vote": v, **nums}
    return votes, evidence, per_model


def _evidence_used(lines: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """Names of the lines of evidence with at least one testable vote."""
    return [name for name, votes in lines if any(v != "untestable" for v in votes)]


def ssl_deep_content(metrics: pd.DataFrame, models: dict[str, Any], split: str, replicates: pd.DataFrame | None = None,
                     tf_profiles: dict[str, Profile] | None = None, tf_replicates: pd.DataFrame | None = None) -> Finding:
    """(2) Per speech-SSL model: the best frame-level PR layer (on dev) lies deep and beats the first layer (paired, on test).

    A second line of evidence, when the study ran training-free profiles: the closed-form phone accuracy profile
    by the same rule. The verdict combines every testable vote of both lines; the sentence names the lines used.
    """
    claim = "Deeper layers of speech-SSL models specialise in linguistic content."
    votes, evidence, per_model = [], [], {}
    for name, info in models.items():
        if info.get("family") != "speech_ssl" or info.get("control_of"):
            continue
        prof = profile(metrics, name, info, "pr", split)
        v, text, nums = _vote(prof, replicates, split, True, f"{info.get('label', name)} (speech_ssl)")
        votes.append(v)
        evidence.append(f"{text} → {v}")
        per_model[name] = {"vote": v, **nums}
    tf_votes, tf_evidence, tf_models = _training_free_votes(tf_profiles, tf_replicates, models, "speech_ssl", split, True)
    used = _evidence_used([(EVIDENCE_SGD, votes), (EVIDENCE_TRAINING_FREE, tf_votes)])
    numbers = {"split": split, "chosen_on": "dev", "models": per_model, "training_free": tf_models, "evidence": used}
    if not votes and not tf_votes:
        return Finding("ssl_deep_content", claim, "untestable", "Untestable: no speech-SSL model in this study has per-layer PR probes "
                       "or a training-free phone profile.", evidence, numbers)
    verdict = _combine(votes + tf_votes)
    why = {"supported": "in every testable model the best frame-level phone layer (chosen on dev) lies in the upper half and beats the first layer on test by a paired interval",
           "contradicted": "in every testable model the best frame-level phone layer (chosen on dev) lies in the lower half and beats the last layer on test by a paired interval",
           "inconclusive": "the models (or the lines of evidence) disagree, or the differences are within noise (paired intervals containing 0)",
           "untestable": "no model could be tested (fewer than 3 frame-level layers, or no replicates for a paired comparison)"}[verdict]
    parts = [f"{EVIDENCE_SGD} in {len(votes)} speech-SSL models: {_counts(votes)}" if votes else f"no {EVIDENCE_SGD}"]
    if tf_votes:
        parts.append(f"{EVIDENCE_TRAINING_FREE} in {len(tf_votes)} models: {_counts(tf_votes)}")
    return Finding("ssl_deep_content", claim, verdict, f"{verdict.capitalize()}: {why} ({'; '.join(parts)}; evidence used: "
                   f"{', '.join(used) or 'none testable'}).", evidence + tf_evidence, numbers)


# ---------------------------------------------------------------- finding 3: speaker models, with the CKA control


def _block_value(values: pd.DataFrame, rows: Sequence[str], cols: Sequence[str]) -> float:
    sel = values[values["layer_a"].isin(rows) & values["layer_b"].isin(cols)]
    return float(sel["value"].mean()) if not sel.empty else float("nan")


def cka_control(mp: CKAMatrix, spk_layers: Sequence[str], ssl_layers: Sequence[str], speaker_rows: bool, confidence: float = 0.95) -> tuple[str, str, dict[str, Any]]:
    """Speaker-late x SSL-deep vs speaker-late x SSL-shallow (the control), paired over the CKA replicates' groups."""
    k_s, k_l = max(1, len(spk_layers) // 3), max(1, len(ssl_layers) // 3)
    late, shallow, deep = list(spk_layers[-k_s:]), list(ssl_layers[:k_l]), list(ssl_layers[-k_l:])
    tidy = mp.tidy()
    if not speaker_rows:
        tidy = tidy.rename(columns={"layer_a": "layer_b", "layer_b": "layer_a"})
    est_deep, est_shallow = _block_value(tidy, late, deep), _block_value(tidy, late, shallow)
    nums: dict[str, Any] = {"speaker_late": late, "ssl_deep": deep, "ssl_shallow": shallow, "late_x_deep": est_deep, "late_x_shallow": est_shallow}
    head = (f"CKA ({mp.level}, {mp.estimator}) speaker late layers {', '.join(late)} × SSL deep {', '.join(deep)} = {est_deep:.2f} vs "
            f"× SSL shallow {', '.join(shallow)} (control) = {est_shallow:.2f}")
    if len(spk_layers) < MIN_PROFILE_LAYERS or len(ssl_layers) < MIN_PROFILE_LAYERS:
        return "untestable", head + f"; needs at least {MIN_PROFILE_LAYERS} frame-level layers on each side", nums
    if set(deep) & set(shallow):
        return "untestable", head + "; the SSL model has too few layers to separate deep from shallow", nums
    if mp.replicates is None or mp.replicates.empty:
        return "untestable", head + "; no CKA replicates recorded, so no paired interval (CKA replicates parquet missing)", nums
    reps = mp.replicates if speaker_rows else mp.replicates.rename(columns={"layer_a": "layer_b", "layer_b": "layer_a"})
    rd, rs = {}, {}
    for g, part in reps.groupby("group"):
        rd[str(g)], rs[str(g)] = _block_value(part, late, deep), _block_value(part, late, shallow)
    if len(rd) < 2 or any(math.isnan(v) for v in list(rd.values()) + list(rs.values())):
        return "untestable", head + f"; CKA replicates cover {len(rd)} groups or miss these blocks", nums
    iv = paired_difference(est_shallow, rs, est_deep, rd, confidence)  # positive: late layers less like SSL deep than SSL shallow
    nums["difference"] = {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "n_groups": iv.n_groups, "group_by": mp.group_by}
    text = head + f"; shallow − deep = {iv.estimate:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}] ({iv.method}, {iv.n_groups} {(mp.group_by + ' ') if mp.group_by else ''}groups)"
    if iv.low > 0:
        return "supported", text, nums
    if iv.high < 0:
        return "contradicted", text, nums
    return "inconclusive", text, nums


def speaker_models_discard_content(metrics: pd.DataFrame, maps: Sequence[CKAMatrix], models: dict[str, Any], split: str,
                                   replicates: pd.DataFrame | None = None, tf_profiles: dict[str, Profile] | None = None,
                                   tf_replicates: pd.DataFrame | None = None) -> Finding:
    """(3) Speaker models: PR peaks early (frame-level layers) then falls; their late layers are less like SSL deep than SSL shallow layers."""
    claim = "Speaker models represent phonemes early and discard linguistic information in later layers."
    votes, evidence, per_model = [], [], {}
    for name, info in models.items():
        if info.get("family") != "speaker" or info.get("control_of"):
            continue
        prof = profile(metrics, name, info, "pr", split)
        v, text, nums = _vote(prof, replicates, split, False, info.get("label", name))
        votes.append(v)
        evidence.append(f"{text} → {v}")
        per_model[name] = {"vote": v, **nums}
    cka_votes, pairs = [], {}
    for mp in maps:
        if mp is None or mp.mode != "across":
            continue
        fa, fb = models.get(mp.model_a, {}), models.get(mp.model_b, {})
        if {fa.get("family"), fb.get("family")} != {"speaker", "speech_ssl"} or fa.get("control_of") or fb.get("control_of"):
            continue
        speaker_rows = fa.get("family") == "speaker"
        spk, ssl = (mp.model_a, mp.model_b) if speaker_rows else (mp.model_b, mp.model_a)
        spk_layers, _ = frame_layers(models[spk], mp.layers_a if speaker_rows else mp.layers_b)
        ssl_layers, _ = frame_layers(models[ssl], mp.layers_b if speaker_rows else mp.layers_a)
        v, text, nums = cka_control(mp, spk_layers, ssl_layers, speaker_rows)
        cka_votes.append(v)
        evidence.append(f"{models[spk].get('label', spk)} × {models[ssl].get('label', ssl)}: {text} → {v}")
        pairs[f"{spk}|{ssl}|{mp.level}"] = {"vote": v, **nums}
    tf_votes, tf_evidence, tf_models = _training_free_votes(tf_profiles, tf_replicates, models, "speaker", split, False)
    evidence += tf_evidence
    used = _evidence_used([(EVIDENCE_SGD, votes), (EVIDENCE_CKA, cka_votes), (EVIDENCE_TRAINING_FREE, tf_votes)])
    numbers = {"split": split, "chosen_on": "dev", "models": per_model, "cka_pairs": pairs, "training_free": tf_models, "evidence": used}
    if not votes and not cka_votes and not tf_votes:
        return Finding("speaker_discard", claim, "untestable",
                       "Untestable: the study has neither per-layer PR probes of a speaker model nor CKA between a speaker model and a speech-SSL model.", evidence, numbers)
    verdict = _combine(votes + cka_votes + tf_votes)
    parts = []
    if votes:
        parts.append(f"PR profile on frame-level layers (best chosen on dev, paired test difference) in {len(votes)} speaker models: {_counts(votes)}")
    else:
        parts.append("no per-layer PR probes of a speaker model")
    if cka_votes:
        parts.append(f"CKA of speaker-late layers with SSL deep vs SSL shallow layers (paired) in {len(cka_votes)} pairs: {_counts(cka_votes)}")
    else:
        parts.append("no speaker × speech-SSL CKA map")
    if tf_votes:
        parts.append(f"{EVIDENCE_TRAINING_FREE} of {len(tf_votes)} speaker models (peak early, then fall): {_counts(tf_votes)}")
    return Finding("speaker_discard", claim, verdict, f"{verdict.capitalize()}: " + "; ".join(parts) + f"; evidence used: {', '.join(used) or 'none testable'}.",
                   evidence, numbers)


def compute_findings(metrics: pd.DataFrame, weights: pd.DataFrame, maps: Sequence[CKAMatrix | None], models: dict[str, Any], split: str,
                     replicates: pd.DataFrame | None = None, tf_profiles: dict[str, Profile] | None = None,
                     tf_replicates: pd.DataFrame | None = None) -> list[Finding]:
    """All three findings, in the paper's order (``weights`` kept for callers; the verdicts rest on probes and CKA, and for
    findings 2 and 3 also on the training-free phone profiles when given: ``layerlab.report.encodes.training_free_profiles``)."""
    usable = [m for m in maps if m is not None]
    return [content_vs_speaker(metrics, models, split), ssl_deep_content(metrics, models, split, replicates, tf_profiles, tf_replicates),
            speaker_models_discard_content(metrics, usable, models, split, replicates, tf_profiles, tf_replicates)]
