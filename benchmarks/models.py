"""Extraction speed of every model-zoo adapter on this machine, in audio seconds per wall second.

Run: ``.venv/bin/python benchmarks/models.py [--quick] [--device cpu|cuda]``. Models: the fbank and
mfcc baselines, GE2E (real resemblyzer weights), tiny checkpoints of every format, and
realistic-size random-init models built from the real classes (WavLM Base and HuBERT Base via
s3prl, ECAPA-TDNN c1024 via speechbrain). Input: real LibriSpeech utterances (cropped), run
``bucketed`` (batches of 4) and ``unbatched``. Also prints the ratio to the fbank baseline measured
in the same process. Each number is the best of ``--repeats`` runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.models import load, tiny  # noqa: E402
from layerlab.models.audio import read_audio  # noqa: E402
from layerlab.models.batching import iter_layer_outputs  # noqa: E402

EXCERPT = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-test-other-excerpt"


def _specs(root: Path, quick: bool) -> dict[str, str]:
    specs = {
        "fbank": "fbank",
        "mfcc": "mfcc",
        "ge2e (real weights)": "ge2e",
        "ECAPA tiny (speechbrain bundle)": f"speechbrain:{tiny.build_speechbrain_ecapa(root / 'sb')}",
        "ECAPA c1024 random (ckpt)": f"ckpt:{tiny.build_layerlab_ecapa(str(root / 'c1024.pt'), config=tiny.ECAPA_C1024)}",
        "WavLM tiny (s3prl)": f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(root / 'wt.pt')}",
        "HuBERT tiny (s3prl)": f"s3prl:hubert_local:{tiny.build_s3prl_hubert(root / 'ht.pt')}",
        "WavLM tiny (transformers)": f"hf:{tiny.build_hf_wavlm(root / 'hf')}",
    }
    if not quick:
        specs["WavLM Base random (s3prl)"] = f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(root / 'wb.pt', size='base')}"
        specs["HuBERT Base random (s3prl)"] = f"s3prl:hubert_local:{tiny.build_s3prl_hubert(root / 'hb.pt', size='base')}"
    return specs


def _audio(n_utts: int, seconds: float) -> list:
    files = sorted(EXCERPT.glob("*/*.flac"))[:: max(1, 50 // n_utts)][:n_utts]
    return [read_audio(f)[: int(16000 * seconds)] for f in files]


def _speed(model, wavs, mode: str, repeats: int) -> float:
    """Audio seconds per wall second, best of ``repeats`` runs (the machine may be shared)."""
    audio_s = sum(len(w) for w in wavs) / 16000
    next(iter_layer_outputs(model, wavs[:1], mode="unbatched"))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in iter_layer_outputs(model, wavs, mode=mode, batch_size=4):
            pass
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return audio_s / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models only, fewer utterances")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is reported")
    args = parser.parse_args()
    wavs = _audio(4 if args.quick else 8, 4.0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(wavs)} utterances x {len(wavs[0]) / 16000:.1f} s of real speech")
    print(f"{'model':<34} {'params':>12} {'layers':>6} {'bucketed x RT':>14} {'unbatched x RT':>15} {'vs fbank':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for name, spec in _specs(Path(tmp), args.quick).items():
            model = load(spec, device=args.device)
            bucketed = _speed(model, wavs, "bucketed", args.repeats)
            unbatched = _speed(model, wavs, "unbatched", args.repeats)
            base = base or bucketed
            print(f"{name:<34} {model.num_parameters:>12,} {len(model.layer_names):>6} {bucketed:>14.1f} "
                  f"{unbatched:>15.1f} {bucketed / base:>9.2f}", flush=True)
            del model


if __name__ == "__main__":
    main()
