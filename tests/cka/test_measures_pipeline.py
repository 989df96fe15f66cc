"""``layerlab cka --measure ...`` end to end on real-format caches: tables, intervals, heat maps, agreement, errors."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_cka_outputs import write_cache
from typer.testing import CliRunner

import measure_reference as ref
from layerlab.cka.measure_registry import MeasureOptions
from layerlab.cka.tables import read_matrix

ALL = "linear_cka,cca_r2,cca_mean,svcca,pwcca,procrustes,ridge_r2,rbf_cka,mutual_knn"


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("measures")
    a = write_cache(root / "wavlm", ["h0", "h1", "h2"], [6, 6, 6], 50, 20, seed=1)
    b = write_cache(root / "ecapa", ["e0", "e1"], [4, 5], 50, 20, seed=1)
    return a, b


@pytest.fixture(scope="module")
def run(caches, tmp_path_factory):
    from layerlab.cli import app

    a, b = caches
    out = tmp_path_factory.mktemp("out")
    result = CliRunner().invoke(app, ["cka", "--a", str(a), "--b", str(b), "--out", str(out), "--level", "utterance", "--measure", ALL,
                                      "--bootstrap", "1", "--group-by", "speaker", "--sample-size", "30", "--knn-k", "4", "--ridge", "1e-4"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_every_measure_writes_tables_replicates_and_a_heat_map(run):
    out, printed = run
    for name in ALL.split(","):
        stem = "cka_biased_utterance" if name == "linear_cka" else f"cka_{name}_utterance"
        blocks = ["a_a", "b_b", "a_b"] + (["b_a"] if name in ("pwcca", "ridge_r2") else [])
        for tag in blocks:
            table = pq.read_table(out / f"{stem}_{tag}.parquet")
            assert set(table.column("measure").to_pylist()) == {name}
            assert {"value", "note", "ci_low", "ci_high", "ci_group_by"} <= set(table.column_names)
            values = table.column("value").to_numpy(zero_copy_only=False)
            assert np.isfinite(values).all() and table.column("value").null_count == 0
            assert (out / f"{stem}_{tag}_replicates.parquet").exists()
            low, high = (table.column(c).to_numpy(zero_copy_only=False) for c in ("ci_low", "ci_high"))
            assert (low <= values + 1e-12).all() and (values <= high + 1e-12).all()
            if name == "procrustes":
                assert (values >= 0).all() and (high <= 2).all()
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"{stem}_a_b.parquet" in printed
    agreement = pq.read_table(out / "measure_agreement_utterance.parquet").to_pandas()
    assert set(agreement["block"]) == {"a_a", "b_b", "a_b"} and len(agreement) == 3 * 36
    row = agreement[(agreement.block == "a_b") & (agreement.measure_1 == "linear_cka") & (agreement.measure_2 == "procrustes")].iloc[0]
    assert row.n_pairs == 6 and "procrustes negated" in row.note and -1 <= row.spearman <= 1


def test_tables_equal_the_raw_data_reference(caches, run):
    """The utterance means read back from the pooled tiers, measured by the raw-data references."""
    from layerlab.cache import open_cache

    a, b = caches
    out, _ = run
    pooled = [open_cache(str(c)).read_pooled() for c in (a, b)]
    assert pooled[0].ids == pooled[1].ids
    xs = [pooled[0].mean[n].astype(np.float64) for n in ("h0", "h1", "h2")]
    ys = [pooled[1].mean[n].astype(np.float64) for n in ("e0", "e1")]
    checks = {"cca_mean": lambda x, y: ref.cca_mean(x, y, 1e-4), "pwcca": lambda x, y: ref.pwcca(x, y, 1e-4),
              "procrustes": ref.procrustes, "svcca": lambda x, y: ref.svcca(x, y, 0.99, 1e-4)}
    for name, fn in checks.items():
        ab = read_matrix(str(out / f"cka_{name}_utterance_a_b.parquet"))[0]
        want = np.array([[fn(x, y) for y in ys] for x in xs])
        np.testing.assert_allclose(ab, want, atol=1e-8, rtol=0)
    ba = read_matrix(str(out / "cka_pwcca_utterance_b_a.parquet"))[0]
    np.testing.assert_allclose(ba, [[ref.pwcca(y, x, 1e-4) for x in xs] for y in ys], atol=1e-8, rtol=0)
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["measures"]["rbf_cka"]["info"]["sample_size"] == 30 and summary["measures"]["rbf_cka"]["info"]["sample_seed"] == 0
    assert summary["measures"]["cca_r2"]["info"]["ridge"] == 1e-4 and summary["agreement"].endswith("measure_agreement_utterance.parquet")


def test_bad_measure_options_are_one_error_line(caches, tmp_path):
    from layerlab.cli import app

    a, _ = caches
    for args, text in ((["--measure", "cka,svcca"], "unknown measure 'cka' (allowed: linear_cka, cca_r2"),
                       (["--measure", "rbf_cka", "--sample-size", "5000", "--level", "utterance"], "--sample-size 5000: larger than the data (40 utterances"),
                       (["--measure", "mutual_knn", "--sample-size", "10", "--knn-k", "10"], "--knn-k 10: must be below the sample size"),
                       (["--measure", "svcca", "--estimator", "minibatch"], "--measure svcca: needs the full second moments")):
        result = CliRunner().invoke(app, ["cka", "--a", str(a), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and text in lines[0], result.output


def test_a_constant_layer_is_a_null_with_its_reason(tmp_path):
    from layerlab.cka import FeatureCKA
    from layerlab.cka.moment_measures import moment_matrices
    from layerlab.cka.tables import matrix_table

    rng = np.random.default_rng(0)
    x, c = rng.standard_normal((40, 3)), np.full((40, 2), 4.0)
    acc = FeatureCKA([3, 2])
    acc.update([x, c])
    out = moment_matrices(acc, ["linear_cka", "cca_mean", "procrustes"], names=["live", "flat"])
    for name, mat in out.items():
        assert np.isfinite(mat.values[0, 0]) and np.isnan(mat.values[0, 1]) and "flat: constant" in mat.notes[0, 1]
        table = matrix_table(mat.values, ["live", "flat"], ["live", "flat"], measure=name, notes=mat.notes)
        assert table.column("value").null_count == 3 and not np.isnan(table.column("value").to_numpy(zero_copy_only=False)[0])
        assert table.column("note").to_pylist()[1].startswith("flat: constant")


@pytest.mark.slow
def test_distributed_measures_equal_single_process(caches, tmp_path, ray_session):
    from layerlab.cka.pipeline import CKAJob, run_cka
    from layerlab.cka.reducer import run_cka_on_ray

    a, _ = caches
    measures = "linear_cka,cca_mean,pwcca,ridge_r2,mutual_knn"

    def job() -> CKAJob:
        return CKAJob(str(a), level="frame", measures=measures, options=MeasureOptions(sample_size=200, knn_k=5))

    single = run_cka(job(), str(tmp_path / "single"))
    dist = run_cka_on_ray(job(), str(tmp_path / "dist"), str(tmp_path / "ckpt.npz"))
    for name in measures.split(","):
        got, want = (read_matrix(s["measures"][name]["tables"][0])[0] for s in (dist, single))
        np.testing.assert_allclose(got, want, atol=1e-9)
