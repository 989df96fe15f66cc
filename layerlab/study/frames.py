"""Which frames a study stores, from the plan's rules: the frames probes' splits (sampled, ASV's training crops) and the CKA sample.

An extract stage that needs a frames tier carries ``params["frames"]`` (fingerprinted):
``{"all": bool, "probes": [{"task", "config", "crop_seconds"}], "cka": {split, split_task, max_utterances, seed} | None}``.
:func:`resolve_selection` turns it into the utterance ids (and crops) to write, from the dataset's rows, with
the probes' own split code (:func:`layerlab.probe.frames_needed`), so the probe later finds exactly its
utterances; :func:`cka_sample` draws the CKA sample the CKA stages read. The cost model calls both on the
rows it can read, so the plan's byte estimates follow the same selection the run writes.
"""

from __future__ import annotations

from typing import Any

from layerlab.data.audio import TARGET_SAMPLE_RATE
from layerlab.data.selection import FramesSelection, SampleError, cka_sample as draw_sample, fixed_crop, half_sample, split_members


def cka_sample(rows: Any, sample: dict[str, Any], where: str = "cka") -> tuple[list[str], list[str] | None, str]:
    """(sample ids, convergence half or None, how) of a dataset's rows (a DataFrame indexed by id) for the sample settings."""
    records = [{"id": uid, "speaker": spk, "splits": splits} for uid, spk, splits in zip(rows.index, rows["speaker"], rows["splits"])]
    ids, speakers, how = split_members(records, sample.get("split"), sample.get("split_task"))
    if not ids:
        raise SampleError(f"{where}: {how} holds no utterance")
    chosen = draw_sample(ids, speakers, sample.get("max_utterances"), int(sample.get("seed") or 0), where)
    spk = dict(zip(ids, speakers))
    half = half_sample(chosen, [spk[u] for u in chosen], int(sample.get("seed") or 0)) if sample.get("convergence", True) else None
    return chosen, half, how


def resolve_selection(rules: dict[str, Any] | None, rows: Any, tasks: dict[str, Any], url: str = "") -> FramesSelection | None:
    """The utterances (whole or cropped) a cache's frames tier must hold; None when a consumer needs every utterance."""
    if not rules or rules.get("all"):
        return None
    from layerlab.probe import ProbeConfig, crop_seconds, frames_needed
    from layerlab.probe.needs import rows_source

    source = rows_source(url, rows, tasks)
    seconds = (rows["num_samples"] / TARGET_SAMPLE_RATE).to_dict()
    sel = FramesSelection()
    for probe in rules.get("probes", []):
        task, cfg = probe["task"], ProbeConfig.model_validate(probe.get("config") or {})
        needed = frames_needed(source, task, cfg)
        if needed is None:
            continue
        crop = probe.get("crop_seconds")
        if crop is not None and crop_seconds(task, cfg) is not None:
            crops = {u: fixed_crop(u, float(seconds[u]), float(crop), cfg.split_seed) for u in needed["train"]}
            sel.add(needed["train"], crops, f"{task} train: {len(needed['train'])} utterances as fixed {crop:g}-s crops")
        else:
            sel.add(needed["train"], purpose=f"{task} train: {len(needed['train'])} utterances")
        sel.add(needed["dev"], purpose=f"{task} dev: {len(needed['dev'])} utterances")
        sel.add(needed["test"], purpose=f"{task} test: {len(needed['test'])} utterances")
    if rules.get("cka"):
        ids, _, how = cka_sample(rows, rules["cka"])
        sel.add(ids, purpose=f"CKA sample: {len(ids)} utterances of {how}")
    return sel
