"""Study config validation: errors name the file, the key and the allowed keys or values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from layerlab.study.config import StudyConfigError, load_study_config

REPO = Path(__file__).resolve().parents[2]
BASE = {"datasets": {"synth": {"synth": {"speakers": 4}}}, "models": {"fbank": {"spec": "fbank"}}}


def _load(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(StudyConfigError) as err:
        load_study_config(str(path))
    assert str(path) in str(err.value)
    return str(err.value)


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path: Path) -> None:
    msg = _load(tmp_path, {**BASE, "cka": {"within": {"level": ["frame"]}}})
    assert msg == f"{tmp_path / 'study.yaml'}: cka.within.level: unknown key (allowed: bootstrap, estimator, group_by, groups, levels, measures)"
    msg = _load(tmp_path, {**BASE, "modles": {}})
    assert "modles: unknown key (allowed: allow_overlap, budget, cka, datasets, extract, models, name, nodes, out" in msg


def test_wrong_values_name_key_and_allowed_values(tmp_path: Path) -> None:
    msg = _load(tmp_path, {**BASE, "probe": {"defaults": {"layers": "all"}}})
    assert "probe.defaults.layers: 'all' is not allowed (allowed: 'weighted', 'each' or 'both')" in msg
    msg = _load(tmp_path, {**BASE, "cka": {"across": {"estimator": "rbf"}}})
    assert "cka.across.estimator: 'rbf' is not allowed (allowed: 'biased', 'debiased' or 'minibatch')" in msg


def test_bad_references_and_specs(tmp_path: Path) -> None:
    msg = _load(tmp_path, {**BASE, "models": {"x": {"spec": "wav2vec9:foo"}}})
    assert "models.x: unknown model spec 'wav2vec9:foo'" in msg and "s3prl" in msg
    msg = _load(tmp_path, {**BASE, "models": {"x": {"train": {"recipe": "dino", "data": "vox"}}}})
    assert "'vox' is not a dataset of this study" in msg
    msg = _load(tmp_path, {**BASE, "models": {"x": {"spec": "fbank", "train": {"recipe": "dino"}}}})
    assert "models.x: give exactly one of spec" in msg
    msg = _load(tmp_path, {**BASE, "datasets": {"d": {"synth": {"speakers": 2}}}})
    assert "datasets.d" in msg and "speakers" in msg
    msg = _load(tmp_path, {**BASE, "cka": {"within": {"estimator": "minibatch", "bootstrap": 10}}})
    assert "cka.within: bootstrap: CIs need the biased or debiased estimator" in msg
    msg = _load(tmp_path, {**BASE, "extract": {"tier": "all"}})
    assert "tier" in msg


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(StudyConfigError, match="study config not found"):
        load_study_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "bad.yaml").write_text("datasets: [\n")
    with pytest.raises(StudyConfigError, match=r"bad.yaml: not valid YAML: "):
        load_study_config(str(tmp_path / "bad.yaml"))


def test_demo_config_ships_in_the_package_and_configs_links_to_it() -> None:
    from layerlab.study.cli import DEMO_CONFIG

    assert DEMO_CONFIG.is_file() and DEMO_CONFIG.parent.name == "study"
    assert (REPO / "configs" / "demo.yaml").resolve() == DEMO_CONFIG.resolve()
    config, _ = load_study_config(str(DEMO_CONFIG))
    assert config.datasets["synth"].source == "synth"  # needs no ../shared data
    assert {"fbank", "mfcc", "ge2e", "ecapa_supervised", "ecapa_dino", "hubert_mini"} <= set(config.models)


def test_cka_measures_are_checked_against_the_registry(tmp_path: Path) -> None:
    msg = _load(tmp_path, {**BASE, "cka": {"measures": ["linear_cka", "cka_rbf"]}})
    assert "cka.measures: --measure: unknown measure 'cka_rbf' (allowed: linear_cka, cca_r2" in msg and "\n" not in msg
    msg = _load(tmp_path, {**BASE, "cka": {"measures": ["svcca"], "within": {"estimator": "minibatch"}}})
    assert "svcca needs the full second moments; within.estimator minibatch" in msg
    msg = _load(tmp_path, {**BASE, "cka": {"across": {"measures": ["pwcca"], "estimator": "minibatch"}}})
    assert "pwcca needs the full second moments; across.estimator minibatch" in msg
    msg = _load(tmp_path, {**BASE, "cka": {"within": {"measures": ["cca"]}}})
    assert "cka.within.measures: --measure: unknown measure 'cca'" in msg
    msg = _load(tmp_path, {**BASE, "cka": {"measure_options": {"knn": 3}}})
    assert "cka.measure_options.knn: unknown key" in msg


def test_a_task_config_refines_the_defaults_config_key_by_key() -> None:
    """probe.tasks[i].config merges over probe.defaults.config (nested blocks too): a task that sets its own lr keeps the
    defaults' weight decay (the demo's IC, PR and ASV lost it when an entry's config replaced the defaults' wholesale)."""
    from layerlab.study.config import ProbeSection

    section = ProbeSection.model_validate({"defaults": {"config": {"weight_decay": 1e-3, "lr": 0.005, "asv": {"proj": 64, "tdnn": 32}}},
                                           "tasks": ["sid", {"task": "asv", "config": {"lr": 0.01, "asv": {"tdnn": 16}}}]})
    sid, asv = section.entries([])
    assert sid.config == {"weight_decay": 1e-3, "lr": 0.005, "asv": {"proj": 64, "tdnn": 32}}
    assert asv.config == {"weight_decay": 1e-3, "lr": 0.01, "asv": {"proj": 64, "tdnn": 16}}
