"""fbank / mfcc baselines equal s3prl's SUPERB baseline upstream (Kaldi features + deltas + CMVN)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from layerlab.models import load


@pytest.mark.parametrize("kind,dim", [("fbank", 240), ("mfcc", 39)])
def test_matches_s3prl_baseline_upstream(kind, dim, real_wavs, real_batch):
    import s3prl.upstream.baseline.expert as baseline

    model = load(kind)
    assert model.layer_names == [kind] and model.dims == [dim] and model.frame_rates == [100.0]
    assert model.padding_invariant is True and model.num_parameters == 0
    out = model(*real_batch)
    expert = baseline.UpstreamExpert(model_config=str(Path(baseline.__file__).parent / f"{kind}.yaml"))
    for i, wav in enumerate(real_wavs):
        ref = expert._extractor_forward([torch.from_numpy(wav)])[0]
        n = int(out.lengths[0][i])
        assert n == ref.shape[0] == 1 + (len(wav) - 400) // 160
        torch.testing.assert_close(out.hidden[0][i, :n], ref, atol=1e-4, rtol=1e-4)
        assert torch.count_nonzero(out.hidden[0][i, n:]) == 0  # padding frames are zero
