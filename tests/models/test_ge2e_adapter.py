"""GE2E: layerlab's torch front end + split LSTMs reproduce resemblyzer's VoiceEncoder on real speech."""

from __future__ import annotations

import pytest
import torch

from layerlab.models import load
from layerlab.models.audio import read_audio
from layerlab.models.batching import extract_all, pad_batch


@pytest.fixture(scope="module")
def ge2e():
    return load("ge2e", device="cpu")


def test_layers_and_attributes(ge2e):
    assert ge2e.layer_names == ["lstm1", "lstm2", "lstm3", "embedding"]
    assert ge2e.dims == [256] * 4
    assert ge2e.frame_rates == [100.0, 100.0, 100.0, None]
    assert ge2e.utterance_level == [False, False, False, True]
    lstm = 4 * 256 * (40 + 256) + 2 * 4 * 256 * (256 + 256) + 3 * 2 * 4 * 256
    assert ge2e.num_parameters == lstm + 256 * 256 + 256 == 1_423_616
    assert ge2e.padding_invariant is True and not ge2e.training


def test_mel_front_end_matches_resemblyzer(ge2e, real_wavs):
    from resemblyzer import wav_to_mel_spectrogram

    for wav in real_wavs:
        ref = torch.from_numpy(wav_to_mel_spectrogram(wav))
        ours = ge2e.mel(torch.from_numpy(wav)[None])[0]
        assert ours.shape == ref.shape == (len(wav) // 160 + 1, 40)
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


def test_embedding_equals_voice_encoder_forward_on_real_speech(ge2e, real_wavs, librispeech_excerpt):
    from resemblyzer import VoiceEncoder, wav_to_mel_spectrogram

    encoder = VoiceEncoder("cpu", verbose=False)
    shortest = min(librispeech_excerpt.glob("*/*.flac"), key=lambda f: f.stat().st_size)
    full = read_audio(shortest)  # one whole utterance, leading silence included
    wavs = list(real_wavs) + [full]
    out = ge2e(*pad_batch(wavs))
    errors = []
    for i, wav in enumerate(wavs):
        with torch.no_grad():
            ref = encoder(torch.from_numpy(wav_to_mel_spectrogram(wav))[None])[0]
        errors.append(float((out.hidden[3][i, 0] - ref).abs().max()))
    assert max(errors) <= 1e-4, errors
    # and the frame layers of the last LSTM equal the 3-layer LSTM's outputs
    with torch.no_grad():
        seq, _ = encoder.lstm(torch.from_numpy(wav_to_mel_spectrogram(wavs[0]))[None])
    torch.testing.assert_close(out.hidden[2][0, : seq.shape[1]], seq[0], atol=1e-4, rtol=0)


def test_batched_equals_unbatched(ge2e, real_wavs):
    batched = extract_all(ge2e, real_wavs, mode="batched", batch_size=3)
    single = extract_all(ge2e, real_wavs, mode="unbatched")
    for b, s in zip(batched, single):
        for lb, ls in zip(b, s):
            assert lb.shape == ls.shape
            torch.testing.assert_close(lb, ls, atol=1e-5, rtol=0)


def test_ge2e_separates_librispeech_speakers(ge2e, librispeech_excerpt):
    """Real pretrained weights on real speech: speaker EER well below chance (50 %)."""
    from layerlab.models.speaker_eval import embed_utterances, verification_scores

    files = sorted(librispeech_excerpt.glob("*/*.flac"))
    speakers = [f.parent.name for f in files]
    wavs = [read_audio(f)[: 16000 * 4] for f in files]  # first 4 s keeps the test fast
    emb = embed_utterances(ge2e, wavs, batch_size=50)  # one batch: the LSTM is step-bound on CPU
    result = verification_scores(emb, speakers)
    assert len(set(speakers)) == 5 and result.n_same == 5 * 45 and result.n_diff == 1225 - 225
    assert result.mean_same > result.mean_diff + 0.05
    assert result.eer < 0.15, result
