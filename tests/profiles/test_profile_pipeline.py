"""`layerlab profile` end to end on real caches: the streamed, per-shard, merged profile equals a direct computation
on the cache's items; references without labels are skipped with their reason; bad input is one error line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from layerlab.cli import app
from layerlab.profile.pipeline import NothingToProfile, ProfileJob, make_pilot, prepare, run_profile

EPS = (1e-3, 1e-1, 10.0)


def _basis(a: np.ndarray) -> np.ndarray:
    u, s, _ = np.linalg.svd(a - a.mean(0), full_matrices=False)
    return u[:, s > 1e-9 * s[0]]


def _cca_mean(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Mean of the top min(rank x, k - 1) canonical correlations of items x with one-hot labels y (k classes present)."""
    bx, bz = _basis(x), _basis(np.eye(y.max() + 1)[y][:, np.unique(y)])
    rho = np.linalg.svd(bx.T @ bz, compute_uv=False)
    return float(rho[: min(bx.shape[1], k - 1)].mean())


def _accuracy(x: np.ndarray, y: np.ndarray, split: np.ndarray, classes: int) -> tuple[float, float]:
    """Least squares (augmented-system lstsq) on train for each ridge, chosen on dev (ties: larger), scored on test."""
    tr = split == "train"
    xm = x[tr].mean(0)
    xc = x[tr] - xm
    z = np.eye(classes)[y[tr]]
    zc = z - z.mean(0)
    seen = z.sum(0) > 0
    dev_acc, test_acc = [], []
    for e in EPS:
        lam = e * np.trace(xc.T @ xc) / x.shape[1]
        b = np.linalg.lstsq(np.vstack([xc, np.sqrt(lam) * np.eye(x.shape[1])]), np.vstack([zc, np.zeros((x.shape[1], classes))]), rcond=None)[0]
        scores = (x - xm) @ b + z.mean(0)
        scores[:, ~seen] = -np.inf
        pred = scores.argmax(1)
        ok = seen[y]
        dev_acc.append(float(np.mean(pred[(split == "dev") & ok] == y[(split == "dev") & ok])))
        test_acc.append(float(np.mean(pred[(split == "test") & ok] == y[(split == "test") & ok])))
    best = len(EPS) - 1 - int(np.argmax(np.asarray(dev_acc)[::-1]))
    return dev_acc[best], test_acc[best]


def _frame_items(cache_url: str, span_means: bool = False) -> tuple[list[str], dict[str, list]]:
    """Per frame-level layer: items (frames or span means), phone labels, speakers, pr splits; read straight from the cache."""
    from layerlab.cache import open_cache

    cache = open_cache(cache_url)
    rows = cache.source_rows()
    phones = sorted({a[0] for al in rows["alignment"] for a in al})
    index = {p: i for i, p in enumerate(phones)}
    names = [m.name for m in cache.layers if m.level == "frame"]
    out: dict[str, list] = {n: [[], [], [], []] for n in names}
    for row in cache.iter_frames(names):
        al = rows.at[row.id, "alignment"]
        cls = np.array([index[a[0]] for a in al])
        for n in names:
            x = row.frames[n].astype(np.float64)
            span = cache.layer(n).spans_to_frames([a[1] for a in al], [a[2] for a in al], len(x))
            if span_means:
                ids = np.unique(span[span >= 0])
                items, labels = np.stack([x[span == j].mean(0) for j in ids]), cls[ids]
            else:
                items, labels = x[span >= 0], cls[span[span >= 0]]
            out[n][0].append(items)
            out[n][1].append(labels)
            out[n][2] += [rows.at[row.id, "speaker"]] * len(labels)
            out[n][3] += [dict(rows.at[row.id, "splits"])["pr"]] * len(labels)
    return names, {n: [np.concatenate(v[0]), np.concatenate(v[1]), np.array(v[2]), np.array(v[3])] for n, v in out.items()}


@pytest.fixture(scope="module")
def wavlm_profile(wavlm_profile_cache: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[ProfileJob, dict, pd.DataFrame, pd.DataFrame]:
    job = ProfileJob(wavlm_profile_cache, "phone,phone_span,speaker,keyword,word_span,style", clusters=6, pilot_frames=400, ridges=EPS,
                     cca_ridge=0.0, batch_rows=97)  # small batches: many partial updates per group and shard
    out = tmp_path_factory.mktemp("wavlm_profile")
    summary = run_profile(job, str(out), model="wavlm")
    return job, summary, pd.read_parquet(summary["table"]), pd.read_parquet(summary["replicates"])


def _value(df: pd.DataFrame, ref: str, layer: str, measure: str, split: str = "test") -> float:
    sel = df[(df["reference"] == ref) & (df["layer"] == layer) & (df["measure"] == measure) & (df["split"] == (split if measure == "accuracy" else "all"))]
    assert len(sel) == 1, (ref, layer, measure)
    return float(sel["value"].iloc[0])


def test_frame_phone_profile_equals_a_direct_computation_on_the_frames(wavlm_profile) -> None:
    job, _, df, reps = wavlm_profile
    names, items = _frame_items(job.cache_url)
    assert set(df[df["reference"] == "phone"]["layer"]) == set(names)
    for n in names:
        x, y, spk, split = items[n]
        assert _value(df, "phone", n, "cca_mean") == pytest.approx(_cca_mean(x, y, len(np.unique(y))), abs=1e-8)
        dev, test = _accuracy(x, y, split, y.max() + 1)
        assert _value(df, "phone", n, "accuracy", "dev") == pytest.approx(dev, abs=1e-12)
        assert _value(df, "phone", n, "accuracy") == pytest.approx(test, abs=1e-12)
        keep = spk != "spk0"  # the jackknife replicate leaving speaker spk0 out
        loo = reps[(reps["reference"] == "phone") & (reps["layer"] == n) & (reps["measure"] == "cca_mean") & (reps["group"] == "spk0")]
        assert float(loo["value"].iloc[0]) == pytest.approx(_cca_mean(x[keep], y[keep], len(np.unique(y[keep]))), abs=1e-8)


def test_span_pooled_profile_equals_a_direct_computation_on_span_means(wavlm_profile) -> None:
    job, _, df, _ = wavlm_profile
    names, items = _frame_items(job.cache_url, span_means=True)
    for n in names:
        x, y, _, split = items[n]
        assert _value(df, "phone_span", n, "cca_mean") == pytest.approx(_cca_mean(x, y, len(np.unique(y))), abs=1e-8)
        assert _value(df, "phone_span", n, "accuracy") == pytest.approx(_accuracy(x, y, split, y.max() + 1)[1], abs=1e-12)
        assert int(df[(df["reference"] == "phone_span") & (df["layer"] == n) & (df["measure"] == "cca_mean")]["n"].iloc[0]) == len(y)


def test_pnmi_counts_every_labelled_frame_with_the_pilot_codebook(wavlm_profile) -> None:
    from layerlab.metrics.information import contingency_scores

    job, _, df, _ = wavlm_profile
    pilot = make_pilot(prepare(job))
    names, items = _frame_items(job.cache_url)
    for n, book in zip(names, pilot.codebooks):
        x, y, _, _ = items[n]
        units = np.linalg.norm(x[:, None, :] - book[None].astype(np.float64), axis=2).argmin(1)
        table = np.zeros((job.clusters, y.max() + 1))
        np.add.at(table, (units, y), 1)
        assert _value(df, "phone", n, "pnmi") == pytest.approx(contingency_scores(table)["pnmi"], abs=1e-6)


def test_utterance_keyword_accuracy_equals_least_squares_on_the_pooled_means(wavlm_profile) -> None:
    from layerlab.cache import open_cache

    job, _, df, _ = wavlm_profile
    cache = open_cache(job.cache_url)
    pooled = cache.read_pooled()
    rows = cache.source_rows(pooled.ids)
    words = sorted({dict(l)["ks"] for l in rows["labels"]})
    y = np.array([words.index(dict(l)["ks"]) for l in rows["labels"]])
    split = np.array([dict(s)["ks"] for s in rows["splits"]])
    for n in cache.metadata.layer_names:
        x = pooled.mean[n].astype(np.float64)
        assert _value(df, "keyword", n, "accuracy") == pytest.approx(_accuracy(x, y, split, len(words))[1], abs=1e-12)


def test_references_without_labels_are_skipped_with_their_reason_and_intervals_stay_in_range(wavlm_profile) -> None:
    _, summary, df, _ = wavlm_profile
    skipped = {s["reference"]: s["reason"] for s in summary["skipped"]}
    assert "word alignments" in skipped["word_span"] and "style labels" in skipped["style"]
    assert {r["name"] for r in summary["references"]} == {"phone", "phone_span", "speaker", "keyword"}
    assert not df["value"].isna().any()
    ci = df.dropna(subset=["ci_low"])
    assert len(ci) and ((ci["ci_low"] >= 0) & (ci["ci_high"] <= 1) & (ci["ci_low"] <= ci["value"]) & (ci["value"] <= ci["ci_high"])).all()
    speaker_acc = df[(df["reference"] == "speaker") & (df["measure"] == "accuracy") & (df["split"] == "test")]
    assert (speaker_acc["n_groups"] == 5).all()  # SID holds out utterances of all five speakers: intervals over them
    assert Path(summary["figure"]).stat().st_size > 1000


def test_a_pooled_only_cache_skips_frame_references_and_nothing_left_is_an_error(fbank_pooled_cache: str, tmp_path: Path) -> None:
    summary = run_profile(ProfileJob(fbank_pooled_cache, "phone,speaker", intervals=False), str(tmp_path / "a"))
    assert "no frames tier" in summary["skipped"][0]["reason"]
    df = pd.read_parquet(summary["table"])
    assert set(df["reference"]) == {"speaker"} and df["ci_low"].isna().all()
    with pytest.raises(NothingToProfile, match="no frames tier"):
        run_profile(ProfileJob(fbank_pooled_cache, "phone,word_span"), str(tmp_path / "b"))


def test_bad_input_is_one_error_line(wavlm_profile_cache: str, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["profile", "--cache", wavlm_profile_cache, "--reference", "phone,phonme", "--out", str(tmp_path / "o")])
    assert bad.exit_code == 2 and "error: unknown reference(s) phonme; known: phone, phone_span" in bad.output and "Traceback" not in bad.output
    big_k = CliRunner().invoke(app, ["profile", "--cache", wavlm_profile_cache, "--reference", "phone", "--clusters", "50", "--pilot-frames", "40",
                                     "--out", str(tmp_path / "o")])
    assert big_k.exit_code == 2 and "error: --clusters 50: k must be below the number of frames" in big_k.output
    assert len([line for line in big_k.output.splitlines() if line.startswith("error:")]) == 1
    helped = CliRunner().invoke(app, ["profile", "--help"])
    assert helped.exit_code == 0 and "Example:" in helped.output


def test_on_ray_equals_the_local_run(wavlm_profile, ray_session, tmp_path: Path) -> None:
    from layerlab.profile.distributed import run_profile_on_ray

    job, _, df, _ = wavlm_profile
    summary = run_profile_on_ray(job, str(tmp_path / "ray"), model="wavlm")
    got = pd.read_parquet(summary["table"])
    merged = df.merge(got, on=["reference", "layer", "measure", "split"], suffixes=("", "_ray"))
    assert len(merged) == len(df)
    np.testing.assert_allclose(merged["value_ray"], merged["value"], rtol=0, atol=1e-9)


def test_pass_two_from_memory_equals_reading_the_shards_again(wavlm_profile, tmp_path: Path) -> None:
    from dataclasses import replace

    job, summary, df, _ = wavlm_profile
    again = run_profile(replace(job, references="phone,keyword", held_mb=0), str(tmp_path / "reread"), model="wavlm")
    got = pd.read_parquet(again["table"])
    acc = got[got["measure"] == "accuracy"].merge(df, on=["reference", "layer", "measure", "split"], suffixes=("", "_mem"))
    assert len(acc) == len(got[got["measure"] == "accuracy"]) > 0
    np.testing.assert_allclose(acc["value"], acc["value_mem"], rtol=0, atol=1e-12)
