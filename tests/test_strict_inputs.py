"""Strict inputs, one-line errors: duplicate YAML keys, nested config errors with their key path (also under --dry-run),
probe --task er without ER labels, advice that names only options the command has, Ray start-up failures."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from layerlab.cli import app
from layerlab.config import ConfigError, read_yaml

REPO = Path(__file__).resolve().parents[1]
BASE = {"datasets": {"d": {"synth": {"speakers": 4}}}, "models": {"fbank": {"spec": "fbank"}}}


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def _study(tmp_path: Path, text: str, *extra: str) -> tuple[int, list[str], str]:
    cfg = tmp_path / "study.yaml"
    cfg.write_text(text)
    result = CliRunner().invoke(app, ["study", str(cfg), "--out", str(tmp_path / "out"), *extra])
    return result.exit_code, _errors(result.output), result.output


def test_duplicate_yaml_keys_are_errors_naming_the_key_and_lines(tmp_path: Path) -> None:
    text = "datasets:\n  d: {synth: {speakers: 4}}\nmodels:\n  fbank: {spec: fbank}\n  fbank: {spec: mfcc}\n"
    for extra in ([], ["--dry-run"]):
        code, errors, out = _study(tmp_path, text, *extra)
        assert code == 2 and errors == [f"error: {tmp_path / 'study.yaml'}: models.fbank: duplicate key (lines 4 and 5; "
                                        "YAML would keep only the last)"], out
    path = tmp_path / "x.yaml"
    path.write_text("a: 1\nb:\n  - {c: 1, c: 2}\n")
    with pytest.raises(ConfigError, match=r"x.yaml: b\[0\].c: duplicate key \(lines 3 and 3"):
        read_yaml(str(path))


@pytest.mark.parametrize("section, key", [
    ({"probe": {"defaults": {"config": {"epochz": 3}}}}, "probe.defaults.config.epochz: unknown key (allowed: "),
    ({"probe": {"tasks": ["sid", {"task": "ks", "config": {"lr": "fast"}}]}}, "probe.tasks[1].config.lr: Input should be a valid number"),
    ({"probe": {"tasks": [{"task": "ks", "config": {"lr_schedule": "cosine"}}]}},
     "probe.tasks[0].config.lr_schedule: 'cosine' is not allowed (allowed: 'plateau' or 'constant')"),
    ({"models": {"m": {"train": {"recipe": "dino", "config": {"epochs": 2, "colour": 1}}}}}, "models.m.train.config.colour: unknown key (allowed: "),
    ({"models": {"m": {"train": {"recipe": "nosuch"}}}}, "models.m.train.recipe: unknown recipe 'nosuch' (allowed: supervised, dino, hubert)"),
])
def test_nested_config_errors_are_one_line_with_the_key_path_also_under_dry_run(tmp_path: Path, section: dict, key: str) -> None:
    for extra in ([], ["--dry-run"]):
        code, errors, out = _study(tmp_path, yaml.safe_dump({**BASE, **section}), *extra)
        assert code == 2 and len(errors) == 1 and "Traceback" not in out, out
        assert errors[0].startswith(f"error: {tmp_path / 'study.yaml'}: {key}"), errors[0]


def test_train_config_errors_name_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yaml"
    cfg.write_text("epochs: 2\nlr: fast\n")
    result = CliRunner().invoke(app, ["train", "supervised", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "o"), "--config", str(cfg)])
    errors = _errors(result.output)
    assert result.exit_code == 2 and len(errors) == 1 and errors[0].startswith(f"error: {cfg}: lr: Input should be a valid number"), result.output


def test_probe_er_on_a_dataset_without_er_labels_is_an_error_not_style(tmp_path: Path, monkeypatch) -> None:
    """ER used to fall back to the `style` labels and report them as ER."""
    import sys

    sys.path.insert(0, str(REPO / "tests" / "probe"))
    from memory_data import planted_source

    from layerlab.data.tasks import TaskSpec
    from layerlab.probe import api

    source = planted_source()
    source.tasks = {**source.tasks, "style": TaskSpec(name="style", kind="utterance_classification", label_keys=["sid"], split_key="sid")}
    monkeypatch.setattr(api, "open_source", lambda cache, **_: source)
    result = CliRunner().invoke(app, ["probe", "--cache", "memory://planted", "--task", "er", "--out", str(tmp_path / "er"), "--runner", "local"])
    errors = _errors(result.output)
    assert result.exit_code == 2 and len(errors) == 1, result.output
    assert "task 'er'" in errors[0] and "no labels for it (needs task er; has: asv, ic, pr, sid, style)" in errors[0]
    assert not (tmp_path / "er" / "summary.json").exists()


def _options() -> dict[str, set[str]]:
    """Every command path -> its long options (from the click commands the typer app builds)."""
    found: dict[str, set[str]] = {}

    def walk(cmd, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found[" ".join(path)] = {o for p in cmd.params for o in getattr(p, "opts", []) if o.startswith("--")} | {"--help"}

    walk(typer.main.get_command(app), [])
    return found


#: modules whose error messages reach these commands' error lines (a message's advice must fit all of them)
REACHES = {
    "layerlab/artifacts.py": ["extract", "cka", "probe"], "layerlab/cache/reader.py": ["cka", "probe"],
    "layerlab/cka/": ["cka"], "layerlab/extract/": ["extract"], "layerlab/probe/": ["probe"],
    "layerlab/data/shards.py": ["corpus synth", "corpus import"], "layerlab/data/importers/": ["corpus import"],
    "layerlab/train/": ["train supervised", "train dino", "train hubert"],
    "layerlab/lease.py": ["study", "demo", "probe", "extract", "cka", "train supervised", "train dino", "train hubert"],
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
QUALIFIED = re.compile(r"`layerlab ((?:train |corpus |models |cache )?[a-z-]+)([^`]*)`")


def test_advice_names_only_options_that_exist() -> None:
    """Each --flag an error message suggests is an option of every command whose errors carry that message (or of the
    command the advice names, as in `layerlab extract --tier both`); any flag named anywhere exists somewhere."""
    options = _options()
    everywhere = set().union(*options.values())
    wrong = []
    for path in sorted((REPO / "layerlab").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        commands = next((c for prefix, c in REACHES.items() if rel.startswith(prefix)), [])
        tree = ast.parse(path.read_text())
        messages = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Raise) for n in ast.walk(node)}  # inside a raise
        messages |= {id(n) for node in tree.body if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper()
                                                                                        for t in node.targets) for n in ast.walk(node)}
        raised = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Raise) for n in ast.walk(node)}
        in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):  # an f-string is one text ({...} parts as "X")
                text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstring:
                text = node.value
            else:
                continue
            for cmd, args in QUALIFIED.findall(text):  # `layerlab extract --tier both`: that command's option
                wrong += [f"{rel}: {f} (layerlab {cmd})" for f in FLAG.findall(args) if f not in options.get(cmd, set())]
            bare = FLAG.findall(QUALIFIED.sub("", text))
            if id(node) in messages:  # an error message or advice constant: the flag exists somewhere
                wrong += [f"{rel}: {f} (no command has it)" for f in bare if f not in everywhere]
            if id(node) in raised:  # and every command whose errors carry it has it
                wrong += [f"{rel}:{node.lineno}: {f} (layerlab {c})" for f in bare for c in commands if f not in options[c]]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_ray_start_up_failure_is_one_line_with_the_log_folder(tmp_path: Path, monkeypatch) -> None:
    import ray

    def refuse(*args, **kwargs):
        raise ConnectionError("Failed to connect to GCS at 10.0.0.1:6379 within 60 s.\nThe raylet may be overloaded.\n  more detail")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    from layerlab import runtime

    with pytest.raises(runtime.RayStartError) as err:
        runtime.init_ray("10.0.0.1:6379")
    text = str(err.value)
    assert "\n" not in text and "Ray did not start at 10.0.0.1:6379: ConnectionError: Failed to connect to GCS" in text
    assert text.endswith(f"(Ray logs: {runtime.ray_log_dir()})") and "session_latest/logs" in text
    from layerlab.cli import LayerlabGroup

    mini = typer.Typer(cls=LayerlabGroup, add_completion=False)

    @mini.command()
    def start() -> None:
        runtime.init_ray("10.0.0.1:6379")

    @mini.command()
    def other() -> None:  # a second command keeps `start` a sub-command, as in layerlab
        pass

    result = CliRunner().invoke(mini, ["start"])
    assert result.exit_code == 1 and result.output.strip() == f"error: {text}" and "Traceback" not in result.output
