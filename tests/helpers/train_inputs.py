"""Training-test inputs: a tiny synthetic corpus with held-out ASV trials, and recipe configs for fast runs."""

from __future__ import annotations


def tiny_synth(root: str, speakers: int = 6, read: int = 3) -> str:
    """Build a clean synthetic corpus of read sentences only (SID/ASV/PR), with its trial table."""
    from layerlab.data.synth import SynthConfig, build_synth_corpus

    config = SynthConfig(
        speakers=speakers, read_per_speaker=read, keyword_repeats=0, unknown_per_speaker=0, silence_per_speaker=0,
        commands_per_speaker=0, style_sentences_per_speaker=0, workers=1, noise={"prob": 0.0}, reverb={"prob": 0.0},
    )
    build_synth_corpus(root, config, progress=False)
    return root


def tiny_config(recipe: str, **overrides: object) -> dict:
    """A recipe config small enough for a fast test: 1 epoch of 2 steps, tiny networks, batch 4."""
    ecapa = {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "res2net_scale": 2, "se_channels": 8, "lin_neurons": 16}
    common = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "ray": {"num_workers": 1, "cpus_per_worker": 1}}
    per = {
        "supervised": {"model": ecapa, "crop_seconds": [1.0, 1.0]},
        "dino": {"model": ecapa, "head": {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64},
                 "global_seconds": [1.0, 1.2], "local_seconds": 0.6, "local_crops": 2},
        "hubert": {"model": {"encoder_layers": 2, "encoder_embed_dim": 32, "encoder_ffn_embed_dim": 64,
                             "encoder_attention_heads": 2, "final_dim": 16, "conv_pos": 16, "conv_pos_groups": 4,
                             "conv_feature_layers": "[(32,10,5)] + [(32,3,2)] * 4 + [(32,2,2)] * 2",
                             "mask_prob": 0.5, "mask_length": 3},
                   "crop_seconds": [1.0, 1.0], "clusters": 8, "kmeans_frames": 500, "kmeans_iters": 5, "eval_utterances": 4},
    }
    cfg = {"recipe": recipe, **common, **per[recipe]}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
