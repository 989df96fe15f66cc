"""Joint extraction on the session's Ray pool: GE2E + FBANK + tiny WavLM in one actor -> three caches + joint CKA states.

The joint states read by ``layerlab cka --from-side-output joint`` equal CKA computed from the two
models' frames tiers (<= 1e-6: the side-output sees the tier's fp16 values, ``side_output_dtype``).
"""

from __future__ import annotations

import numpy as np
import pytest

from layerlab.cache import open_cache
from layerlab.extract import CKASideOutput, ExtractConfig

pytestmark = pytest.mark.usefixtures("ray_session")


@pytest.fixture(scope="module")
def joint_run(wavlm_spec, corpus, tmp_path_factory):
    from layerlab.extract.joint import extract_joint

    out = str(tmp_path_factory.mktemp("joint") / "caches")
    cfg = ExtractConfig(progress=False, tier="frames", side_output_dtype="float16", cka=[CKASideOutput(name="all")])
    summary = extract_joint(["ge2e", "fbank", f"wavlm={wavlm_spec}"], corpus[0], out, cfg)
    return out, summary


def _table(url):
    from layerlab.cka.tables import read_matrix

    matrix, names_a, names_b, _ = read_matrix(url)
    return matrix, names_a, names_b


def test_joint_extraction_writes_one_cache_per_model_and_joint_states(joint_run, corpus):
    out, s = joint_run
    assert s.ok and list(s.members) == ["ge2e", "fbank", "wavlm"]
    expected = sorted(corpus[1])
    for name in s.members:
        cache = open_cache(f"{out}/{name}")
        assert cache.manifest.complete and cache.verify_files() == []
        assert sorted(r.id for r in cache.iter_frames()) == expected  # every model kept the same utterances, once
        assert [(q["id"], q["stage"]) for q in cache.quarantine().to_pylist()] == [("utt007", "ingest"), ("utt004", "model")]
    assert [j.rsplit("/", 3)[-3] + "/" + j.rsplit("/", 1)[-1] for j in s.joint] == ["ge2e/joint-fbank", "ge2e/joint-wavlm", "fbank/joint-wavlm"]
    assert open_cache(f"{out}/fbank").manifest.shards.keys() == open_cache(f"{out}/wavlm").manifest.shards.keys()
    assert len(s.shards) == s.members["ge2e"].shards_total == 3  # per-shard time and memory reported
    assert all(c.joint_state_mb > 0 and set(c.model_seconds) == {"ge2e", "fbank", "wavlm"} for c in s.shards)
    assert "joint state MB" in s.render()


def test_cka_from_joint_side_output_equals_cka_from_the_two_frames_tiers(joint_run, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    out, _ = joint_run
    for a, b in (("fbank", "wavlm"), ("wavlm", "fbank")):  # stored in fbank's cache; wavlm -> fbank reads it swapped
        side = run_cka(CKAJob(f"{out}/{a}", f"{out}/{b}", side_output="joint"), str(tmp_path / f"side-{a}-{b}"))
        tiers = run_cka(CKAJob(f"{out}/{a}", f"{out}/{b}"), str(tmp_path / f"tiers-{a}-{b}"))
        assert len(side["tables"]) == len(tiers["tables"]) == 3  # A x A, B x B, A x B
        for got_url, want_url in zip(side["tables"], tiers["tables"]):
            got, want = _table(got_url), _table(want_url)
            assert got[1:] == want[1:] and got[0].shape == want[0].shape
            assert np.abs(got[0] - want[0]).max() <= 1e-6
        cross = _table(side["tables"][2])[0]
        assert np.all((cross > 0) & (cross < 1))  # a real cross block, not trivially 0 or 1


def test_layer_selection_and_errors_of_the_joint_reader(joint_run, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    out, _ = joint_run
    full = run_cka(CKAJob(f"{out}/fbank", f"{out}/wavlm", side_output="joint"), str(tmp_path / "full"))
    one = run_cka(CKAJob(f"{out}/fbank", f"{out}/wavlm", side_output="joint", layers_b=["hidden_2"]), str(tmp_path / "one"))
    f, o = _table(full["tables"][2]), _table(one["tables"][2])
    assert o[2] == ["hidden_2"]
    assert np.abs(f[0][:, f[2].index("hidden_2")] - o[0][:, 0]).max() <= 1e-9  # a sub-selection reads the same blocks
    with pytest.raises(ValueError, match="minibatch|biased or debiased"):
        CKAJob(f"{out}/fbank", f"{out}/wavlm", side_output="joint", estimator="minibatch")
    with pytest.raises(ValueError, match="no joint side-output"):
        CKAJob(f"{out}/fbank", f"{out}/fbank", side_output="joint")


def test_cli_reads_the_joint_side_output(joint_run, tmp_path):
    from typer.testing import CliRunner

    from layerlab.cli import app

    out, _ = joint_run
    result = CliRunner().invoke(app, ["cka", "--a", f"{out}/ge2e", "--b", f"{out}/fbank", "--from-side-output", "joint",
                                      "--estimator", "debiased", "--out", str(tmp_path / "cka"), "--on-ray"])
    assert result.exit_code == 0, result.output
    assert sum(line.endswith(".parquet") for line in result.output.splitlines()) == 3  # A x A, B x B, A x B


def test_every_second_moment_measure_from_the_joint_side_output_equals_the_two_frames_tiers(joint_run, tmp_path):
    from layerlab.cka.pipeline import CKAJob, run_cka

    out, _ = joint_run
    measures = "linear_cka,cca_r2,cca_mean,svcca,pwcca,procrustes,ridge_r2"
    side = run_cka(CKAJob(f"{out}/fbank", f"{out}/wavlm", side_output="joint", measures=measures), str(tmp_path / "side"))
    tiers = run_cka(CKAJob(f"{out}/fbank", f"{out}/wavlm", measures=measures), str(tmp_path / "tiers"))
    for name in measures.split(","):
        got_urls, want_urls = side["measures"][name]["tables"], tiers["measures"][name]["tables"]
        assert len(got_urls) == len(want_urls) == (4 if name in ("pwcca", "ridge_r2") else 3)
        for got_url, want_url in zip(got_urls, want_urls):
            got, want = _table(got_url), _table(want_url)
            assert got[1:] == want[1:] and np.isfinite(got[0]).all()
            assert np.abs(got[0] - want[0]).max() <= 1e-6, (name, got_url)
