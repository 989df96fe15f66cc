"""GE2E (real resemblyzer weights) on the LibriSpeech excerpt: does each layer separate speakers?

Run: ``.venv/bin/python benchmarks/ge2e_speakers.py``. All 50 utterances (5 speakers x 10), full
length; every utterance pair is a trial (225 same-speaker, 1000 different-speaker). Prints, per
layer (frame layers mean-pooled over time, the embedding as is), mean same- and different-speaker
cosine and the EER, next to a chance-level reference (the same scores with shuffled speaker labels). The
last row mimics resemblyzer's embed_utterance: mean of embeddings of 1.6 s windows every 0.77 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from layerlab.models import load  # noqa: E402
from layerlab.models.audio import read_audio  # noqa: E402
import torch  # noqa: E402

from layerlab.models.speaker_eval import partial_embeddings, utterance_vectors, verification_scores  # noqa: E402

EXCERPT = Path(__file__).resolve().parents[2] / "shared" / "data" / "librispeech-test-other-excerpt"


def main() -> None:
    files = sorted(EXCERPT.glob("*/*.flac"))
    speakers = [f.parent.name for f in files]
    wavs = [read_audio(f) for f in files]
    model = load("ge2e")
    print(f"{len(files)} utterances, {len(set(speakers))} speakers, {sum(map(len, wavs)) / 16000:.0f} s of audio")
    print(f"{'layer':<26} {'same cos':>9} {'diff cos':>9} {'EER %':>7} {'EER % shuffled':>15}")
    shuffled = list(np.random.default_rng(0).permutation(speakers))
    vectors = utterance_vectors(model, wavs)
    vectors["embedding, 1.6 s partials"] = torch.stack([partial_embeddings(model, w) for w in wavs])
    for layer, emb in vectors.items():
        res = verification_scores(emb, speakers)
        chance = verification_scores(emb, shuffled)
        print(f"{layer:<26} {res.mean_same:>9.3f} {res.mean_diff:>9.3f} {100 * res.eer:>7.2f} {100 * chance.eer:>15.2f}")

if __name__ == "__main__":
    main()
