"""Small in-memory probe sources with planted structure (speaker, intent slots, phones), for algorithm tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from layerlab.data.tasks import TaskSpec
from layerlab.probe.source import Layer, MemorySource

PHONES = ["a", "b", "k", "i", "s", "u"]


def planted_source(speakers: int = 6, per_speaker: int = 10, dim: int = 8, seed: int = 0, nan_in: str | None = None) -> MemorySource:
    """Layers l0 (noise), l1 (speaker), l2 (phones) at 100 Hz and an utterance-level 'emb' (speaker); SID/IC/PR/ASV tasks."""
    rng = np.random.default_rng(seed)
    spk_vec = rng.normal(size=(speakers, dim)) * 2.0
    phone_vec = rng.normal(size=(len(PHONES), dim)) * 2.0
    slot_vec = {k: rng.normal(size=(3, dim)) * 2.0 for k in ("ic_a", "ic_b")}
    rows, frames = [], {}
    for s in range(speakers):
        for k in range(per_speaker):
            uid = f"s{s}-u{k:02d}"
            phones = list(rng.choice(PHONES, size=int(rng.integers(3, 7))))
            durations = rng.integers(3, 7, size=len(phones))
            t = int(durations.sum())
            ph_frames = np.concatenate([np.repeat(phone_vec[PHONES.index(p)][None], d, 0) for p, d in zip(phones, durations)])
            slots = {key: int(rng.integers(0, 3)) for key in slot_vec}
            slot_sig = sum(slot_vec[key][v] for key, v in slots.items())
            l0 = rng.normal(size=(t, dim))
            l1 = spk_vec[s][None] + 0.3 * slot_sig[None] + rng.normal(size=(t, dim))
            l2 = ph_frames + rng.normal(size=(t, dim)) * 0.5
            emb = (spk_vec[s] + rng.normal(size=dim) * 0.5)[None]
            layer_frames = [x.astype(np.float16) for x in (l0, l1, l2, emb)]
            if nan_in == uid:
                layer_frames[1][0, 0] = np.nan
            frames[uid] = layer_frames
            bounds = np.concatenate([[0], np.cumsum(durations)]) * 160
            split = "train" if k < per_speaker - 4 else ("dev" if k < per_speaker - 2 else "test")
            content = "train" if s < speakers - 2 else ("dev" if s == speakers - 2 else "test")
            rows.append({
                "id": uid, "speaker": f"spk{s}", "num_samples": int(t * 160),
                "labels": {"sid": f"spk{s}", "pr": " ".join(phones), "ic_a": f"a{slots['ic_a']}", "ic_b": f"b{slots['ic_b']}"},
                "splits": {"sid": split, "pr": content, "ic": split, "asv": "test" if s >= speakers - 2 else "train"},
                "transcript": None,
                "alignment": [(p, int(bounds[i]), int(bounds[i + 1])) for i, p in enumerate(phones)],
            })
    df = pd.DataFrame(rows).set_index("id")
    tasks = {
        "sid": TaskSpec(name="sid", kind="utterance_classification", label_keys=["sid"], split_key="sid"),
        "ic": TaskSpec(name="ic", kind="utterance_classification", label_keys=["ic_a", "ic_b"], split_key="ic"),
        "pr": TaskSpec(name="pr", kind="frame_sequence", label_keys=["pr"], split_key="pr", alignment=True),
        "asv": TaskSpec(name="asv", kind="verification", label_keys=["sid"], split_key="asv"),
    }
    layers = [Layer("l0", dim, 100.0, 160), Layer("l1", dim, 100.0, 160), Layer("l2", dim, 100.0, 160), Layer("emb", dim, None)]
    return MemorySource(url="memory://planted", model="planted", layers=layers, rows=df, frames=frames, tasks=tasks)


def scaled_source(info_scale: float = 0.01, noise_layers: int = 3, classes: int = 4, speakers: int = 12, per_speaker: int = 20,
                  dim: int = 16, seed: int = 0) -> MemorySource:
    """Pooled-only SID source: layer 'info' (class vector + noise) times ``info_scale`` as the second of unit-scale noise layers."""
    from layerlab.probe.source import PooledArrays

    rng = np.random.default_rng(seed)
    cls_vec = rng.normal(size=(classes, dim))
    n = speakers * per_speaker
    y = rng.integers(0, classes, size=n)
    names = [f"noise{i}" for i in range(noise_layers)]
    names.insert(1, "info")
    mean, std = {}, {}
    for name in names:
        x = rng.normal(size=(n, dim))
        scale = info_scale if name == "info" else 1.0
        mean[name] = ((cls_vec[y] + 0.8 * x) * scale if name == "info" else x).astype(np.float32)
        std[name] = (np.abs(rng.normal(size=(n, dim))) * scale).astype(np.float32)
    ids = [f"u{i:04d}" for i in range(n)]
    k = np.arange(n) % per_speaker
    split = np.where(k < per_speaker * 0.6, "train", np.where(k < per_speaker * 0.8, "dev", "test"))
    rows = pd.DataFrame({"id": ids, "speaker": [f"spk{s}" for s in np.repeat(np.arange(speakers), per_speaker)], "num_samples": 16000,
                         "labels": [{"sid": f"c{c}"} for c in y], "splits": [{"sid": s} for s in split],
                         "transcript": None, "alignment": None}).set_index("id")
    tasks = {"sid": TaskSpec(name="sid", kind="utterance_classification", label_keys=["sid"], split_key="sid")}
    return MemorySource(url="memory://scaled", model="scaled", layers=[Layer(nm, dim, 100.0, 160) for nm in names], rows=rows,
                        pooled_arrays=PooledArrays(ids, mean, std), tasks=tasks)
