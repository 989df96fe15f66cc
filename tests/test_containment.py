"""Nothing is written or deleted outside --out: hostile names are refused, every remover checks the path it deletes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from layerlab import storage
from layerlab.cli import app

#: names that must never become a folder under --out (each row: the name and why)
HOSTILE = [
    ("..", "parent folder"), (".", "the folder itself"), ("", "empty"), ("a/b", "separator"), ("a\\b", "backslash"),
    ("/etc", "absolute path"), ("a\nb", "newline"), ("a\x00b", "NUL"), ("a\x1bb", "escape"), (".hidden", "hidden file"),
    ("a b", "space"), ("x" * 129, "too long"),
]
BASE = {"datasets": {"d": {"synth": {"speakers": 4}}}, "models": {"fbank": {"spec": "fbank"}}}


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("name", [h[0] for h in HOSTILE], ids=[h[1] for h in HOSTILE])
def test_hostile_study_names_are_one_error_line_and_touch_nothing(tmp_path: Path, name: str) -> None:
    """Dataset names, model names and the study name go through one check; exit 2 with one line, nothing written."""
    for doc in ({**BASE, "datasets": {name: {"synth": {"speakers": 4}}}},
                {**BASE, "models": {name: {"spec": "fbank"}}},
                {**BASE, "name": name}):
        cfg = tmp_path / "study.yaml"
        cfg.write_text(yaml.safe_dump(doc))
        for extra in ([], ["--dry-run"]):
            result = CliRunner().invoke(app, ["study", str(cfg), "--out", str(tmp_path / "a" / "out"), *extra])
            errors = _error_lines(result.output)
            assert result.exit_code == 2 and len(errors) == 1, result.output
            assert "not a safe folder name" in errors[0] and str(cfg) in errors[0] and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]  # no --out, no cache, nothing beside it


def test_the_issue_case_dot_dot_names_cannot_delete_a_sibling(tmp_path: Path) -> None:
    """Reproduction: dataset and model both named '..' used to delete <out>/../precious.txt and --out itself."""
    parent = tmp_path / "a"
    (parent / "out").mkdir(parents=True)
    precious = parent / "precious.txt"
    precious.write_text("keep me")
    (parent / "out" / "old.txt").write_text("an earlier result")
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump({"datasets": {"..": {"synth": {"speakers": 4}}}, "models": {"..": {"spec": "fbank"}}}))
    result = CliRunner().invoke(app, ["study", str(cfg), "--out", str(parent / "out")])
    assert result.exit_code == 2 and len(_error_lines(result.output)) == 1, result.output
    assert precious.read_text() == "keep me" and (parent / "out" / "old.txt").exists()
    assert sorted(p.name for p in parent.iterdir()) == ["out", "precious.txt"]


@pytest.mark.parametrize("name", [h[0] for h in HOSTILE if ":" not in h[0]], ids=[h[1] for h in HOSTILE if ":" not in h[0]])
def test_hostile_joint_member_names_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    """`layerlab extract --model NAME=SPEC`: the name becomes --out/<name>/, so it passes the same check."""
    out = tmp_path / "caches"
    result = CliRunner().invoke(app, ["extract", "--model", f"{name}=fbank", "--model", "mfcc", "--data", str(tmp_path / "data"),
                                      "--out", str(out)])
    errors = _error_lines(result.output)
    assert result.exit_code == 2 and len(errors) == 1 and "not a safe folder name" in errors[0], result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_inside_normalises_and_refuses_escapes_for_local_paths_and_s3_keys(tmp_path: Path) -> None:
    root = tmp_path / "out"
    assert storage.inside(root, root / "cache" / "x") == str(root / "cache" / "x")
    assert storage.inside(root, f"{root}/cache/../probe") == str(root / "probe")
    for bad in (f"{root}/cache/../..", f"{root}/../sibling", f"{root}x/a", "/etc/passwd"):
        with pytest.raises(storage.OutsideOutput, match="outside the output folder"):
            storage.inside(root, bad)
    assert storage.inside("s3://b/out", "s3://b/out/./cache//x") == "s3://b/out/cache/x"
    for bad in ("s3://b/out/cache/../..", "s3://b/outx", "s3://other/out", "s3://b/out/../../etc", "/b/out/x"):
        with pytest.raises(storage.OutsideOutput):
            storage.inside("s3://b/out", bad)
    link = root / "link"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    link.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(storage.OutsideOutput, match="symbolic link"):
        storage.inside(root, link / "x")


def test_remove_refuses_outside_and_keeps_named_children(tmp_path: Path) -> None:
    root = tmp_path / "out"
    (root / "cache").mkdir(parents=True)
    (root / ".layerlab-lease.json").write_text("{}")
    (root / "cache" / "f").write_text("x")
    (tmp_path / "precious.txt").write_text("keep")
    with pytest.raises(storage.OutsideOutput):
        storage.remove(f"{root}/cache/../..", recursive=True, within=str(root))
    with pytest.raises(storage.OutsideOutput):
        storage.remove(str(tmp_path / "precious.txt"), within=str(root))
    assert (tmp_path / "precious.txt").exists() and (root / "cache" / "f").exists()
    storage.remove(str(root), recursive=True, within=str(root), keep=(".layerlab-lease.json",))
    assert [p.name for p in root.iterdir()] == [".layerlab-lease.json"]


def test_remove_on_s3_refuses_keys_above_the_output(s3_bucket: str) -> None:
    out = f"{s3_bucket}/studies/x"
    storage.write_json(f"{s3_bucket}/studies/precious.json", {"keep": True})
    storage.write_json(f"{out}/cache/a.json", {"a": 1})
    with pytest.raises(storage.OutsideOutput):
        storage.remove(f"{out}/cache/../..", recursive=True, within=out)
    assert storage.read_json(f"{s3_bucket}/studies/precious.json") == {"keep": True}
    storage.remove(f"{out}/cache", recursive=True, within=out)
    assert not storage.exists(f"{out}/cache/a.json")


def test_the_runner_never_removes_a_stage_output_that_escapes_out(tmp_path: Path) -> None:
    """Defence in depth behind the name check: a stage whose (un-normalised) output climbs out of --out is refused."""
    from layerlab.study.config import parse_study_config
    from layerlab.study.execute import StageContext
    from layerlab.study.plan import Stage, build_plan
    from layerlab.study.runner import Runner

    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    (tmp_path / "a" / "precious.txt").write_text("keep")
    plan = build_plan(parse_study_config(BASE, "t.yaml"), str(out))
    stage = Stage("probe/x/y/z", "probe", {}, [], f"{out}/cache/../..", fingerprint="f")
    runner = Runner(str(out), say=lambda line: None)
    try:
        with pytest.raises(storage.OutsideOutput):
            runner._execute_now(stage, StageContext(plan, {}, lambda line: None, {}))
    finally:
        runner.close()
    assert (tmp_path / "a" / "precious.txt").read_text() == "keep" and out.is_dir()


def test_fold_labels_from_data_never_become_dot_folders() -> None:
    from layerlab.probe.folds import _fold_dir

    assert [_fold_dir(f) for f in ("session1", "..", ".", "../x", "a/b", "")] == ["session1", "_.", "_", "_._x", "a_b", "_"]
