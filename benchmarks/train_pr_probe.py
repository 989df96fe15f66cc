"""Frame-level linear phone probe on every frame layer of trained models vs the fbank baseline.

Run: ``.venv/bin/python benchmarks/train_pr_probe.py --data CORPUS --model s3prl:hubert_local:RUN/checkpoint.pt``
(repeat --model; ``fbank`` is always added). Uses the corpus's phone alignments and its PR split
(speaker-disjoint train/test): every frame gets the phone under its centre sample; a softmax
regression on standardised features (full-batch L-BFGS, light L2) is fitted on train frames of each
layer and scored by frame accuracy on test frames. A plain stand-in for the probing stream's PR
probe, used for the HuBERT-mini acceptance check.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.data.shards import iter_utterances
from layerlab.models import load

#: frame centre (samples) as a function of frame index: (hop, offset) per frame rate
CENTRES = {50.0: (320, 200), 100.0: (160, 200)}


def frame_labels(alignment, n_frames: int, rate: float) -> list[str | None]:
    """The phone under each frame's centre sample (None in gaps)."""
    hop, offset = CENTRES[rate]
    out = []
    for i in range(n_frames):
        c = i * hop + offset
        out.append(next((a.phone for a in alignment if a.start <= c < a.end), None))
    return out


def collect(spec: str, data: str, max_train_frames: int, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """{layer: {"x_train","y_train","x_test","y_test"}} for every frame layer of ``spec``."""
    model = load(spec, device="cpu")
    layers = [(i, layer) for i, layer in enumerate(model.layers) if layer.frame_rate in CENTRES]
    feats: dict[str, dict[str, list]] = {layer.name: {"train": [], "test": []} for _, layer in layers}
    labels: dict[str, dict[str, list]] = {layer.name: {"train": [], "test": []} for _, layer in layers}
    for u in iter_utterances(data):
        split = u.splits.get("pr")
        if split not in ("train", "test") or not u.alignment:
            continue
        out = model(torch.from_numpy(u.wav)[None])
        for i, layer in layers:
            frames = out.unpad(0)[i].float().numpy()
            y = frame_labels(u.alignment, len(frames), layer.frame_rate)
            keep = [k for k, p in enumerate(y) if p is not None]
            feats[layer.name][split].append(frames[keep])
            labels[layer.name][split] += [y[k] for k in keep]
    rng = np.random.default_rng(seed)
    result = {}
    for name in feats:
        xtr, ytr = np.concatenate(feats[name]["train"]), np.asarray(labels[name]["train"])
        if len(xtr) > max_train_frames:
            idx = rng.choice(len(xtr), max_train_frames, replace=False)
            xtr, ytr = xtr[idx], ytr[idx]
        result[name] = {"x_train": xtr, "y_train": ytr, "x_test": np.concatenate(feats[name]["test"]),
                        "y_test": np.asarray(labels[name]["test"])}
    return result


def linear_probe(d: dict[str, np.ndarray], l2: float = 1e-4, iters: int = 100) -> float:
    """Test frame accuracy of a softmax regression fitted on the train frames."""
    classes = sorted(set(d["y_train"]))
    index = {c: i for i, c in enumerate(classes)}
    mu, sd = d["x_train"].mean(0), d["x_train"].std(0) + 1e-6
    xtr = torch.from_numpy((d["x_train"] - mu) / sd).float()
    ytr = torch.tensor([index[c] for c in d["y_train"]])
    known = np.array([c in index for c in d["y_test"]])
    xte = torch.from_numpy((d["x_test"][known] - mu) / sd).float()
    yte = torch.tensor([index[c] for c in d["y_test"][known]])
    w = torch.zeros(xtr.shape[1], len(classes), requires_grad=True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xtr @ w + b, ytr) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        correct = ((xte @ w + b).argmax(1) == yte).sum().item()
    return correct / len(d["y_test"])  # unseen test phones count as errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--max-train-frames", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--no-baseline", action="store_true", help="skip the fbank rows (already measured on this corpus)")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    rows = []
    for spec in ([] if args.no_baseline else ["fbank"]) + args.model:
        for layer, d in collect(spec, args.data, args.max_train_frames, args.seed).items():
            acc = linear_probe(d)
            majority = max(np.mean(d["y_test"] == c) for c in set(d["y_test"]))
            rows.append({"model": spec, "layer": layer, "frame_acc": round(acc, 4), "majority": round(float(majority), 4),
                         "train_frames": len(d["y_train"]), "test_frames": len(d["y_test"])})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
