"""Extraction speed of every model-zoo adapter on this machine, in audio seconds per wall second.

Run: ``.venv/bin/python benchmarks/models.py [--quick] [--device cpu|cuda]``. Models: the fbank and
mfcc baselines, GE2E (real resemblyzer weights), tiny checkpoints of every format, and
realistic-size random-init models built from the real classes (WavLM Base and HuBERT Base via
s3prl, ECAPA-TDNN c1024 via speechbrain). Input: real LibriSpeech utterances (cropped), run
``bucketed`` (batches of 4) and ``unbatched``: audio seconds per wall second (xRT) and, less
sensitive to a shared machine, audio seconds per CPU second of this process; the ratio column
compares CPU-time speed with the fbank baseline measured in the same process. Each number is the
best of ``--repeats`` runs; nothing is asserted.
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


def _speed(model, wavs, mode: str, repeats: int) -> tuple[float, float]:
    """(audio s per wall s, audio s per CPU s of this process), each the best of ``repeats`` runs.

    The CPU-time figure is less sensitive to other processes sharing the machine."""
    audio_s = sum(len(w) for w in wavs) / 16000
    next(iter_layer_outputs(model, wavs[:1], mode="unbatched"))  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in iter_layer_outputs(model, wavs, mode=mode, batch_size=4):
            pass
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return audio_s / best_wall, audio_s / best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models only, fewer utterances")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the best is reported")
    args = parser.parse_args()
    wavs = _audio(4 if args.quick else 8, 4.0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{len(wavs)} utterances x {len(wavs[0]) / 16000:.1f} s of real speech")
    print(f"{'model':<34} {'params':>12} {'layers':>6} {'bucketed xRT':>13} {'unbatched xRT':>14} "
          f"{'bucketed /CPU-s':>16} {'vs fbank':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        for name, spec in _specs(Path(tmp), args.quick).items():
            model = load(spec, device=args.device)
            bucketed, bucketed_cpu = _speed(model, wavs, "bucketed", args.repeats)
            unbatched, _ = _speed(model, wavs, "unbatched", args.repeats)
            base = base or bucketed_cpu
            print(f"{name:<34} {model.num_parameters:>12,} {len(model.layer_names):>6} {bucketed:>13.1f} "
                  f"{unbatched:>14.1f} {bucketed_cpu:>16.1f} {bucketed_cpu / base:>9.2f}", flush=True)
            del model

if __name__ == "__main__":
    main()
