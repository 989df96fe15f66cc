"""A tiny study end to end on the local Ray: outputs, reuse on rerun, one change reruns only its stages, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from study_fixtures import tiny_study
from layerlab.study.config import parse_study_config
from layerlab.study.runner import run_study


def _run(doc: dict, out: Path):  # noqa: ANN202
    lines: list[str] = []
    return run_study(parse_study_config(doc, "tiny.yaml"), str(out), say=lines.append), lines


def test_tiny_study_runs_reuses_and_reruns_only_what_changed(tmp_path: Path, ray_session: None) -> None:
    out = tmp_path / "study"
    result, _ = _run(tiny_study(), out)
    assert not result.failed and not result.reused
    assert set(result.computed) == {"corpus/synth", "extract/synth/fbank", "extract/synth/mfcc", "cka/synth/within/fbank/utterance",
                                    "cka/synth/within/mfcc/utterance", "cka/synth/across/fbank__mfcc/utterance", "report"}
    page = (out / "report" / "index.html").read_text()
    assert page.count("<img src=\"data:image/png;base64,") == 1  # across only: one-layer models have no within map to show
    cka = pd.read_parquet(out / "report" / "tables" / "cka.parquet")
    across = cka[cka["model_a"] != cka["model_b"]]
    assert set(across["model_a"]) == {"fbank"} and set(across["model_b"]) == {"mfcc"} and across["ci_low"].notna().all()
    assert (across["ci_low"] <= across["ci_high"]).all() and across["value"].between(0, 1).all()
    run = json.loads((out / "run.json").read_text())
    assert run["failed"] == [] and run["report"].endswith("report/index.html")
    assert all(s["wall_seconds"] > 0 for s in run["stages"])

    again, lines = _run(tiny_study(), out)
    assert again.computed == [] and set(again.reused) == set(result.computed)  # nothing recomputed
    assert sum(line.startswith("[reuse]") for line in lines) == len(result.computed)

    doc = tiny_study()
    doc["cka"]["across"]["bootstrap"] = 12  # one setting of one comparison
    changed, _ = _run(doc, out)
    assert set(changed.computed) == {"cka/synth/across/fbank__mfcc/utterance", "report"}

    # a moved study reuses every stage where it now is (markers store paths relative to --out) ...
    tables = {p.name: pd.read_parquet(p) for p in (out / "report" / "tables").glob("*.parquet")}
    moved = tmp_path / "moved"
    shutil.move(str(out), str(moved))
    again, lines = _run(doc, moved)
    assert again.computed == [] and set(again.reused) == set(result.computed), lines
    # ... and a damaged stage is recomputed, saying so: a deleted CKA table (the size check of every rerun finds it), the report
    (moved / "cka" / "synth" / "within" / "fbank" / "utterance" / "cka_biased_utterance.parquet").unlink()
    shutil.rmtree(moved / "report")
    repaired, lines = _run(doc, moved)
    assert set(repaired.computed) == set(repaired.repaired) == {"cka/synth/within/fbank/utterance", "report"}, lines
    assert any(line.startswith("[repair] cka/synth/within/fbank/utterance: ") and "cka_biased_utterance.parquet: missing" in line for line in lines)
    rebuilt = {p.name: pd.read_parquet(p) for p in (moved / "report" / "tables").glob("*.parquet")}
    assert sorted(rebuilt) == sorted(tables)
    for name, table in tables.items():  # the report rebuilt from the moved results equals the original
        pd.testing.assert_frame_equal(rebuilt[name], table, check_exact=False, rtol=1e-9)


@pytest.mark.slow
def test_a_failed_stage_stops_the_study_cleanly_and_finished_stages_stay_reusable(tmp_path: Path, ray_session: None, s3_bucket: str) -> None:
    from layerlab import storage

    # a damaged checkpoint on S3: a local one is refused before the study starts (the plan load-checks local
    # checkpoints, tests/study/test_plan.py); remote ones are only named there, so this one fails in its stage
    broken = f"{s3_bucket}/broken.pt"
    storage.atomic_write_bytes(broken, b"not a checkpoint")
    out = tmp_path / "study"
    doc = tiny_study(models={"fbank": {"spec": "fbank"}, "broken": {"spec": f"s3prl:wavlm_local:{broken}"}}, parallel=1)
    result, lines = _run(doc, out)
    assert result.failed == ["extract/synth/broken"], lines
    assert "broken.pt" in result.records["extract/synth/broken"]["error"]
    assert result.records["cka/synth/across/fbank__broken/utterance"]["status"] == "not run"
    assert result.records["report"]["status"] == "done"  # the report still renders and says what failed
    page = (out / "report" / "index.html").read_text()
    assert "1 stage(s) failed: extract/synth/broken" in page
    assert (out / "stages" / "extract__synth__broken.failed.json").exists()

    # the same config once the checkpoint is repaired: the failed stages run, and the report is rendered again
    # (the one written after the failure must not be reused: it says a stage failed)
    from layerlab.models.tiny import build_s3prl_wavlm

    good = tmp_path / "good.pt"
    build_s3prl_wavlm(good)
    storage.atomic_write_bytes(broken, good.read_bytes())
    repaired, lines = _run(doc, out)
    assert not repaired.failed, lines
    assert {"extract/synth/broken", "cka/synth/across/fbank__broken/utterance", "report"} <= set(repaired.computed)
    assert "failed" not in (out / "report" / "index.html").read_text().split("stage(s) failed")[0][-40:]
    assert "1 stage(s) failed" not in (out / "report" / "index.html").read_text()

    fixed, _ = _run(tiny_study(models={"fbank": {"spec": "fbank"}}), out)
    assert not fixed.failed
    assert {"corpus/synth", "extract/synth/fbank"} <= set(fixed.reused)  # finished stages were kept


@pytest.mark.slow
def test_tiny_study_on_the_librispeech_excerpt_skips_tasks_without_labels(tmp_path: Path, ray_session: None, librispeech_excerpt: Path) -> None:
    from layerlab.study.dryrun import dry_run_plan, plan_summary

    doc = tiny_study(datasets={"libri": {"import": {"kind": "librispeech", "src": str(librispeech_excerpt)}}},
                     probe={"tasks": ["ks", "pr", "asr"]}, cka={"within": {"levels": ["utterance"]}, "across": {"levels": ["utterance"], "bootstrap": 10}})
    config = parse_study_config(doc, "tiny.yaml")
    planned = plan_summary(dry_run_plan(config, str(tmp_path / "study")))
    result, lines = _run(doc, tmp_path / "study")
    assert not result.failed, lines
    skipped = {s["task"]: s["reason"] for s in result.plan.skipped}
    assert set(skipped) == {"ks", "pr", "asr"} and "dataset 'libri' has no pr labels" in skipped["pr"]  # no transcripts or phones in the excerpt
    # the dry run planned exactly this (it used to plan PR probes the run then silently did not run), and the run said so
    assert {s["id"] for s in planned["stages"]} == set(result.records) and planned["skipped"] == result.plan.skipped
    assert {line for line in lines if line.startswith("[skip] ")} == {f"[skip] {t} on libri: {r}" for t, r in skipped.items()}
    assert plan_summary(dry_run_plan(config, str(tmp_path / "study")))["skipped"] == result.plan.skipped  # and still after the run
    cka = pd.read_parquet(tmp_path / "study" / "report" / "tables" / "cka.parquet")
    across = cka[(cka["model_a"] == "fbank") & (cka["model_b"] == "mfcc")]
    assert len(across) == 1 and 0 < across["value"].iloc[0] <= 1 and across["ci_low"].notna().all()  # bootstrap over 5 real speakers
    page = (tmp_path / "study" / "report" / "index.html").read_text()
    assert "has no ks labels" in page


@pytest.mark.slow
def test_study_cli_dry_run_then_run(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_study()))
    layerlab = str(Path(sys.executable).parent / "layerlab")
    dry = subprocess.run([layerlab, "study", str(config), "--out", str(tmp_path / "o"), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0 and "plan OK" in dry.stdout and not (tmp_path / "o").exists()


@pytest.mark.slow
def test_probe_stages_run_and_one_probe_setting_reruns_only_that_probe_and_the_report(tmp_path: Path, ray_session: None) -> None:
    out = tmp_path / "study"
    # parallel: 2 also checks that Tune-based stages never overlap in one driver (Tune's registry is process-global)
    # ASV-cosine as the second task (this tiny corpus has no KS, and its IC dev split holds no slot value seen in training:
    # an error by design)
    doc = tiny_study(probe={"tasks": [{"task": "sid", "layers": "both"}, {"task": "asv-cosine"}]}, cka=None, parallel=2)
    first, lines = _run(doc, out)
    assert not first.failed, lines
    assert {"probe/synth/fbank/sid", "probe/synth/mfcc/sid", "probe/synth/fbank/asv-cosine", "probe/synth/mfcc/asv-cosine"} <= set(first.computed)
    table = pd.read_parquet(out / "report" / "tables" / "model_task.parquet")
    assert set(table["model"]) == {"fbank", "mfcc"} and "sid" in set(table["task"])  # study names, not cache specs (asv-cosine: no table row)
    has_ci = table["ci_low"].notna() & table["ci_high"].notna()
    assert (table.loc[has_ci, "ci_low"] <= table.loc[has_ci, "ci_high"]).all()
    page = (out / "report" / "index.html").read_text()
    assert "data-model='fbank'" in page and "data-model='mfcc'" in page

    doc["probe"]["tasks"][1]["seed"] = 1  # one probe setting of one task
    changed, lines = _run(doc, out)
    assert not changed.failed, lines
    assert set(changed.computed) == {"probe/synth/fbank/asv-cosine", "probe/synth/mfcc/asv-cosine", "report"}


def test_local_probes_run_beside_other_stages_without_tune(tmp_path: Path, ray_session: None) -> None:
    """runner: local trains probes in their stage tasks (no Tune experiment), also two at once, and the report gets their rows.

    The dry run plans exactly what the run does, skips included; a damaged probe is recomputed, not reported as reused.
    """
    from layerlab.study.dryrun import dry_run_plan, plan_summary

    out = tmp_path / "study"
    doc = tiny_study(probe={"tasks": [{"task": "sid", "layers": "both"}, "ks"], "defaults": {"runner": "local", "config": {"max_epochs": 3}}},
                     cka=None, parallel=2)
    planned = plan_summary(dry_run_plan(parse_study_config(doc, "tiny.yaml"), str(out)))
    assert {s["action"] for s in planned["stages"]} == {"run"} and [s["task"] for s in planned["skipped"]] == ["ks"]
    result, lines = _run(doc, out)
    assert not result.failed, lines
    assert {s["id"] for s in planned["stages"]} == set(result.records) and result.plan.skipped == planned["skipped"]
    assert f"[skip] ks on synth: {planned['skipped'][0]['reason']}" in lines  # the run says what it does not run, and why
    after = plan_summary(dry_run_plan(parse_study_config(doc, "tiny.yaml"), str(out)))
    assert {s["action"] for s in after["stages"]} == {"reuse"} and after["skipped"] == planned["skipped"]
    study = json.loads((out / "study.json").read_text())  # the effective settings: the task inherits runner: local
    assert [t["runner"] for t in study["config"]["probe"]["tasks"]] == ["local", "local"]
    assert study["stages"]["probe/synth/fbank/sid"]["params"]["runner"] == "local" and study["stages"]["probe/synth/fbank/sid"]["out"] == "{out}/probe/synth/fbank/sid"

    (out / "probe" / "synth" / "fbank" / "sid" / "metrics.parquet").unlink()  # was "0 computed, N reused" and a report without the row
    damaged = plan_summary(dry_run_plan(parse_study_config(doc, "tiny.yaml"), str(out)))
    assert [s["id"] for s in damaged["stages"] if s["action"] == "repair"] == ["probe/synth/fbank/sid"]
    repaired, lines = _run(doc, out)
    assert repaired.computed == repaired.repaired == ["probe/synth/fbank/sid"], lines
    assert (out / "probe" / "synth" / "fbank" / "sid" / "metrics.parquet").exists()
    run = json.loads((out / "run.json").read_text())
    assert "metrics.parquet: missing" in run["repaired"]["probe/synth/fbank/sid"]
    assert {"probe/synth/fbank/sid", "probe/synth/mfcc/sid"} <= set(result.computed)
    for model in ("fbank", "mfcc"):
        probe_dir = out / "probe" / "synth" / model / "sid"
        assert json.loads((probe_dir / "summary.json").read_text())["runner"] == "local"
        assert not (probe_dir / "tune").exists()
    table = pd.read_parquet(out / "report" / "tables" / "model_task.parquet")
    assert set(table.loc[table["task"] == "sid", "model"]) == {"fbank", "mfcc"}


def test_frames_are_stored_only_for_the_probes_and_the_cka_sample(tmp_path: Path, ray_session: None) -> None:
    """A PR probe on a train sample and frame-level CKA on a declared sample: the cache's frames tier holds just those
    utterances (bytes within 15 % of the plan's estimate), the probe runs on it, the CKA reports its half-vs-all check."""
    from layerlab.cache import open_cache

    out = tmp_path / "study"
    doc = tiny_study(models={"fbank": {"spec": "fbank"}},
                     probe={"tasks": [{"task": "pr", "layers": "weighted", "config": {"max_train_utterances": 3, "max_epochs": 2}}],
                            "defaults": {"runner": "local"}},
                     cka={"max_utterances": 6, "within": {"levels": ["frame"], "bootstrap": 5, "group_by": "speaker", "groups": 2},
                          "across": None})
    result, lines = _run(doc, out)
    assert not result.failed, lines
    cache = open_cache(str(out / "cache" / "synth" / "fbank"))
    selection = cache.frames_selection()
    assert 0 < len(selection.ids) < cache.manifest.kept and len(cache.read_pooled().ids) == cache.manifest.kept
    estimate = result.plan.cost.stages["extract/synth/fbank"]
    assert estimate.written["frames"] == pytest.approx(cache.manifest.tier_bytes("frames"), rel=0.15)
    summary = json.loads((out / "cka" / "synth" / "within" / "fbank" / "frame" / "summary.json").read_text())
    assert summary["n_utterances"] == 6 and summary["convergence"]["half_utterances"] == 3 and summary["ci"]["n_groups"] == 2
    probe = json.loads((out / "probe" / "synth" / "fbank" / "pr" / "summary.json").read_text())
    assert probe["task_info"]["splits"]["sizes"]["train"] == 3
