"""SUPERB conformance of the probes: ASV crops in seconds, s3prl's x-vector, folds as test (ER), speaker-disjoint
derived splits (IC), the ASR probe (character CTC, WER/CER)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from memory_data import planted_source
from pydantic import ValidationError

from layerlab.probe.config import ProbeConfig
from layerlab.probe.source import ProbeInputError
from layerlab.probe.tasks import get_task

FAST = {"max_epochs": 8, "patience": 4, "intervals": False, "batch_size": 8, "lr": 3e-3}


def _at_rate(source, rate: float):
    """The planted source with its frame-level layers declared at ``rate`` Hz (same frames)."""
    src = planted_source(speakers=8, per_speaker=6, seed=2)
    src.layers = [dataclasses.replace(l, frame_rate_hz=rate) if l.frame_rate_hz else l for l in src.layers]
    return src


# ---- ASV: crop in seconds ------------------------------------------------------------------------------------

def test_asv_crop_is_seconds_so_frames_scale_with_the_frame_rate() -> None:
    """The same 0.1 s crop is 10 frames at 100 Hz and 5 at 50 Hz (the old frame count was 1.2 s vs 2.4 s)."""
    tdef = get_task("asv")
    cfg = ProbeConfig(**FAST, asv={"proj": 8, "tdnn": 8, "agg": 8, "embed": 8, "crop_seconds": 0.1})
    longest = {}
    for rate in (100.0, 50.0):
        bound = tdef.bind(_at_rate(None, rate), tdef, cfg, ["l1", "emb"])
        lengths = [int(b[1].max()) for b in bound.train_batches(0, 0)]
        longest[rate] = max(lengths)
        assert bound.info["crop_frames"] == round(0.1 * rate)
    assert longest == {100.0: 10, 50.0: 5}
    only_utterance = tdef.bind(_at_rate(None, 100.0), tdef, cfg, ["emb"])
    assert only_utterance.crop is None  # one vector per utterance: nothing to crop


def test_asv_crop_frames_is_a_one_line_error_naming_crop_seconds() -> None:
    with pytest.raises(ValidationError, match=r"asv.crop_frames was removed: use asv.crop_seconds"):
        ProbeConfig(asv={"crop_frames": 120})
    assert ProbeConfig().asv.crop_seconds == 8.0  # SUPERB's max_timestep 128000 samples at 16 kHz


# ---- x-vector as s3prl's ------------------------------------------------------------------------------------

def _s3prl_xvector(ours, in_dim: int, width: int, agg: int):
    """s3prl's sv_voxceleb1 connector + Model(XVector, SP, UtteranceExtractor) holding our head's weights."""
    model_mod = pytest.importorskip("s3prl.downstream.sv_voxceleb1.model")
    connector = torch.nn.Linear(in_dim, width)
    model = model_mod.Model(input_dim=width, agg_dim=agg, agg_module_name="SP", module_name="XVector",
                            utterance_module_name="UtteranceExtractor", hparams={"agg_dim": agg, "dropout_p": 0.0, "batch_norm": False})
    with torch.no_grad():
        connector.load_state_dict(ours.projector.state_dict())
        for conv, tdnn in zip(ours.tdnn, model.framelevel_feature_extractor.module):
            out, inp, k = conv.weight.shape
            assert tdnn.context_size == k and tdnn.dilation == conv.dilation[0]
            tdnn.kernel.weight.copy_(conv.weight.permute(0, 2, 1).reshape(out, k * inp))  # unfold order: context-major
            tdnn.kernel.bias.copy_(conv.bias)
        model.utterancelevel_feature_extractor.linear1.load_state_dict(ours.linear1.state_dict())
        model.utterancelevel_feature_extractor.linear2.load_state_dict(ours.linear2.state_dict())
    return connector, model


def test_xvector_matches_s3prl_sv_voxceleb1() -> None:
    """Unpadded TDNN, statistics pooling, embedding = linear1 + ReLU, training output = linear2 + ReLU (as s3prl)."""
    from layerlab.probe.heads import TDNN_SHRINK, XVector

    torch.manual_seed(0)
    ours = XVector(6, proj=16, tdnn=16, agg=24, embed=16).eval()
    assert [(c.kernel_size[0], c.dilation[0], c.padding[0]) for c in ours.tdnn] == [(5, 1, 0), (3, 2, 0), (3, 3, 0), (1, 1, 0), (1, 1, 0)]
    assert TDNN_SHRINK == 14  # s3prl: "TDNN layers in XVector will decrease the total sequence length by fixed 14"
    connector, theirs = _s3prl_xvector(ours, 6, 16, 24)
    x = torch.randn(1, 40, 6)
    mask = torch.zeros(1, 40 - 14)
    with torch.no_grad():
        feats = connector(x)
        np.testing.assert_allclose(ours(x, torch.tensor([40])).numpy(), theirs.inference(feats, mask).numpy(), atol=1e-5)
        np.testing.assert_allclose(ours.train_output(x, torch.tensor([40])).numpy(), theirs(feats, mask).numpy(), atol=1e-5)
        assert (ours(x, torch.tensor([40])) >= 0).all()  # the embedding is after a ReLU


def test_xvector_short_utterances_repeat_their_last_frame() -> None:
    """An utterance-level layer (one frame) or a clip shorter than the 15-frame context still gets an embedding."""
    from layerlab.probe.heads import XVector

    torch.manual_seed(1)
    head = XVector(4, proj=8, tdnn=8, agg=8, embed=8).eval()
    one = torch.randn(1, 1, 4)
    with torch.no_grad():
        a = head(one, torch.tensor([1]))
        b = head(one.expand(1, 15, 4).contiguous(), torch.tensor([15]))
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-6)
