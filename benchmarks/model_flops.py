"""Forward FLOPs per second of audio of the real architectures (the cost model's table, layerlab/study/cost_facts.py).

Run: ``.venv/bin/python benchmarks/model_flops.py [--seconds 4] [--only wavlm_large,ecapa_c1024]``. Builds each
architecture with seeded random weights through the real s3prl / speechbrain modules (WavLM and HuBERT Base
and Large, ECAPA-TDNN C=1024 and C=512, FBANK, MFCC), runs one ``--seconds`` input on the CPU under
``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add) and prints GFLOP per audio second,
parameters, frames-tier bytes per audio second, and the table's value with their ratio. Large models need
about 2.5 GB of memory each. GE2E's LSTM is not counted by the flop counter (its table value is by hand).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.models import load, tiny  # noqa: E402
from layerlab.study.cost_facts import ARCHITECTURES  # noqa: E402


def specs(root: Path) -> dict[str, str]:
    """Architecture name -> a loadable spec with random weights (built on demand)."""
    c512 = {"n_mels": 80, "channels": [512, 512, 512, 512, 1536], "lin_neurons": 192}
    return {
        "wavlm_base": lambda: f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(root / 'wb.pt', size='base')}",
        "wavlm_large": lambda: f"s3prl:wavlm_local:{tiny.build_s3prl_wavlm(root / 'wl.pt', size='large', extractor_mode='layer_norm', normalize=True)}",
        "hubert_base": lambda: f"s3prl:hubert_local:{tiny.build_s3prl_hubert(root / 'hb.pt', size='base')}",
        "hubert_large_ll60k": lambda: f"s3prl:hubert_local:{tiny.build_s3prl_hubert(root / 'hl.pt', size='large', extractor_mode='layer_norm', normalize=True)}",
        "ecapa_c1024": lambda: f"ckpt:{tiny.build_layerlab_ecapa(str(root / 'e1024.pt'), config=tiny.ECAPA_C1024)}",
        "ecapa_c512": lambda: f"ckpt:{tiny.build_layerlab_ecapa(str(root / 'e512.pt'), config=c512)}",
        "fbank": lambda: "fbank", "mfcc": lambda: "mfcc",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--only", default="", help="comma-separated architecture names (default: all)")
    args = parser.parse_args()
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        builders = specs(Path(tmp))
        names = [n for n in builders if not args.only or n in args.only.split(",")]
        print(f"{'architecture':<20} {'GFLOP/audio s':>14} {'table':>8} {'ratio':>6} {'params (M)':>11} {'frames MB/audio s':>18}")
        for name in names:
            model = load(builders[name](), device="cpu")
            wav = torch.randn(1, int(model.sample_rate * args.seconds))
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                model(wav, torch.tensor([wav.shape[1]]))
            gflops = counter.get_total_flops() / args.seconds / 1e9
            row = ARCHITECTURES[name]
            frames = sum(2 * d * (r or 0) for d, r in zip(model.dims, model.frame_rates)) / 1e6
            print(f"{name:<20} {gflops:>14.3f} {row.flops_per_second / 1e9:>8.3f} {gflops / (row.flops_per_second / 1e9):>6.3f} "
                  f"{model.num_parameters / 1e6:>11.2f} {frames:>18.3f}")
            del model


if __name__ == "__main__":
    main()
