"""The facts the cost model stands on, in one place: architectures, corpora, node types and the assumptions between them.

Every number here is either measured (how is said) or a stated assumption; ``layerlab study CONFIG --dry-run``
prints the assumptions with the cost table. Nothing here imports torch or Ray.

* :data:`ARCHITECTURES`: per model architecture its layers (name, width, frame rate; utterance-level layers have
  rate None), parameter count and forward FLOPs per second of 16 kHz audio. FLOPs were counted with
  ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add) on a 4-s input through the real
  s3prl / speechbrain modules with seeded random weights (``benchmarks/model_flops.py`` reproduces them; the
  transformers' attention grows with length, about 3 % of the total at 4 s and 8 % at 10 s). GE2E's LSTM is
  not counted by the flop counter: its figure is the LSTM's multiply-adds by hand.
* :data:`CORPORA`: declared sizes of the corpora the importers know (utterances, hours, speakers per split
  of each split partition; the publications' counts), for datasets the plan cannot read yet.
* :data:`NODE_TYPES`: GPU kind, GPU memory, fp32 peak TFLOP/s (vendor data sheets), vCPUs and memory.
* Throughput: a GPU runs a model forward at :data:`INFERENCE_EFFICIENCY` of its fp32 peak and a training step
  at :data:`TRAIN_EFFICIENCY` (assumptions: no GPU was available to measure; s3prl runs fp32).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: fraction of a GPU's fp32 peak a batched fp32 forward pass reaches (assumption, not measured here)
INFERENCE_EFFICIENCY = 0.35
#: fraction of a GPU's fp32 peak a training step (forward + backward) reaches (assumption)
TRAIN_EFFICIENCY = 0.25
#: a training step costs this many forward passes (forward + backward, the usual 1 + 2)
TRAIN_STEP_FORWARDS = 3.0
#: FLOP/s of one vCPU for float64 GEMMs (CKA accumulation on CPU workers; assumption: AVX2 FMA at ~50 % of peak)
CPU_FLOPS_PER_CORE = 10e9
#: bytes per second of 16 kHz 16-bit mono FLAC speech in the audio shards (assumption: FLAC keeps ~55 % of 32 kB/s)
AUDIO_BYTES_PER_SECOND = 17_600.0
#: on-disk / raw size of the frames tier (fp16 activations) per codec: zstd measured on WavLM Base (README: 919,678 vs
#: 998,400 bytes per audio second); lz4 / snappy assumed between; none: raw plus Parquet framing
FRAMES_COMPRESSION = {"zstd": 0.92, "lz4": 0.97, "snappy": 0.97, "none": 1.0}
#: the pooled tier's float32 means/stds compress little (assumption); plus this many bytes of id/labels/splits per row
POOLED_COMPRESSION = 0.95
POOLED_ROW_OVERHEAD = 160
#: bytes per frames-tier row besides the activations (id, speaker, one int32 frame count per layer)
FRAMES_ROW_OVERHEAD = 48
#: memory of a Python process with torch, Ray's worker runtime and layerlab imported, before any model (assumption,
#: from the extraction benchmark's actor RSS on this machine less its model and batches)
PROCESS_BASE_BYTES = 1.2e9
#: share of a node's memory an actor may use (Ray's object store takes 30 % by default; the raylet and OS some more)
ACTOR_MEMORY_SHARE = 0.65
#: live float32 activations of a forward pass per kept hidden-state byte (attention scores, FFN intermediates)
FORWARD_TRANSIENT_FACTOR = 3.0
#: CKA stage: states alive at the peak besides the per-group ones (the merged total, a jackknife replicate, a temporary)
CKA_EXTRA_STATES = 3
#: bytes a probe stage writes (tables, weights, figures, summary; assumption from the demo's probe folders)
PROBE_RESULTS_BYTES = 2e6
#: bytes per CKA table entry (Parquet row: layer names, value, interval) and per replicate entry
CKA_ENTRY_BYTES = 60
CKA_REPLICATE_BYTES = 24


@dataclass(frozen=True)
class Layer:
    """One layer: name, width, frames per second (None: one vector per utterance)."""

    name: str
    dim: int
    rate: float | None


@dataclass(frozen=True)
class Architecture:
    """A model's layers, size and forward cost."""

    name: str
    layers: tuple[Layer, ...]
    params: int
    flops_per_second: float  # forward FLOPs per second of audio
    source: str
    pooled_compression: float = POOLED_COMPRESSION  # on-disk / raw of its pooled tier

    @property
    def frame_layers(self) -> tuple[Layer, ...]:
        return tuple(l for l in self.layers if l.rate)

    def frames_bytes_per_second(self) -> float:
        """fp16 bytes the frames tier stores per second of audio (every frame-level layer)."""
        return sum(2.0 * l.dim * float(l.rate or 0) for l in self.layers)

    def utterance_layer_bytes(self) -> float:
        """fp16 bytes the frames tier stores per utterance for the utterance-level layers (one vector each)."""
        return sum(2.0 * l.dim for l in self.layers if not l.rate)

    def pooled_bytes_per_utterance(self) -> float:
        """float32 mean and std of every layer."""
        return sum(8.0 * l.dim for l in self.layers)


def _stack(prefix: str, count: int, dim: int, rate: float | None, start: int = 0) -> tuple[Layer, ...]:
    return tuple(Layer(f"{prefix}{i}", dim, rate) for i in range(start, start + count))


def ecapa_layers(channels: list[int], lin_neurons: int = 192) -> tuple[Layer, ...]:
    """ECAPA-TDNN's layers as layerlab exposes them: block0..3 and mfa at 100 Hz, asp (2 x mfa) and the embedding per utterance."""
    layers = tuple(Layer(f"block{i}", int(c), 100.0) for i, c in enumerate(channels[:-1]))
    return layers + (Layer("mfa", int(channels[-1]), 100.0), Layer("asp", 2 * int(channels[-1]), None), Layer("embedding", int(lin_neurons), None))


def ecapa(channels: list[int], lin_neurons: int = 192) -> Architecture:
    """An ECAPA-TDNN of these channels: the measured row when one matches, else c1024's cost scaled by (C / 1024)^2."""
    row = ARCHITECTURES.get(f"ecapa_c{channels[0]}")
    if row is not None and [l.dim for l in row.layers[:5]] == [int(c) for c in channels]:
        return Architecture(row.name, ecapa_layers(channels, lin_neurons), row.params, row.flops_per_second, row.source)
    ref, scale = ARCHITECTURES["ecapa_c1024"], (channels[0] / 1024.0) ** 2
    return Architecture(f"ecapa_c{channels[0]}", ecapa_layers(channels, lin_neurons), int(ref.params * scale), ref.flops_per_second * scale,
                        f"scaled from ecapa_c1024 by (C/1024)^2, C={channels[0]}")


_MEASURED = "FlopCounterMode, 4-s input, seeded random weights, s3prl/speechbrain modules"
ARCHITECTURES: dict[str, Architecture] = {
    "hubert_base": Architecture("hubert_base", _stack("hidden_", 13, 768, 50.0), 94_570_624, 13.91e9, _MEASURED),
    "hubert_large_ll60k": Architecture("hubert_large_ll60k", _stack("hidden_", 25, 1024, 50.0), 316_228_480, 36.00e9, _MEASURED),
    "wavlm_base": Architecture("wavlm_base", _stack("hidden_", 13, 768, 50.0), 94_381_936, 13.88e9, _MEASURED),
    "wavlm_base_plus": Architecture("wavlm_base_plus", _stack("hidden_", 13, 768, 50.0), 94_381_936, 13.88e9, _MEASURED + " (WavLM Base shape)"),
    "wavlm_large": Architecture("wavlm_large", _stack("hidden_", 25, 1024, 50.0), 315_453_120, 35.87e9, _MEASURED),
    "ecapa_c1024": Architecture("ecapa_c1024", ecapa_layers([1024, 1024, 1024, 1024, 3072]), 20_767_552, 3.762e9, _MEASURED),
    "ecapa_c512": Architecture("ecapa_c512", ecapa_layers([512, 512, 512, 512, 1536]), 6_194_048, 1.043e9, _MEASURED),
    # per-utterance mean normalisation makes the pooled means zeros: zstd keeps ~60 % (measured, tests/study/test_cost.py)
    "fbank": Architecture("fbank", (Layer("fbank", 240, 100.0),), 0, 4.25e6, _MEASURED, 0.6),
    "mfcc": Architecture("mfcc", (Layer("mfcc", 39, 100.0),), 0, 1.26e6, _MEASURED, 0.6),
    "ge2e": Architecture("ge2e", _stack("lstm", 3, 256, 100.0) + (Layer("embedding", 256, None),), 1_423_616, 0.28e9,
                         "3-layer LSTM (40 mel -> 256) multiply-adds by hand, 100 frames/s"),
}

#: s3prl hub names, HF ids and speechbrain ids -> architecture (a spec naming one of these uses its row)
SPEC_ARCHITECTURES = {
    "hubert_base": "hubert_base", "hubert_large_ll60k": "hubert_large_ll60k", "hubert_large": "hubert_large_ll60k",
    "wavlm_base": "wavlm_base", "wavlm_base_plus": "wavlm_base_plus", "wavlm_large": "wavlm_large",
    "microsoft/wavlm-base": "wavlm_base", "microsoft/wavlm-base-plus": "wavlm_base_plus", "microsoft/wavlm-large": "wavlm_large",
    "facebook/hubert-base-ls960": "hubert_base", "facebook/hubert-large-ll60k": "hubert_large_ll60k",
    "speechbrain/spkrec-ecapa-voxceleb": "ecapa_c1024", "fbank": "fbank", "mfcc": "mfcc", "ge2e": "ge2e",
}


@dataclass(frozen=True)
class SplitSize:
    """One split of a corpus: utterances, hours, speakers (0: not declared)."""

    utterances: int
    hours: float
    speakers: int = 0


@dataclass(frozen=True)
class Corpus:
    """A corpus's declared size, its split partitions (one per split key) and which task reads which partition."""

    name: str
    utterances: int
    hours: float
    speakers: int
    partitions: dict[str, dict[str, SplitSize]] = field(default_factory=dict)
    task_partition: dict[str, str] = field(default_factory=dict)
    min_seconds: float = 0.0  # shortest utterance (the crop model: lengths are min + an exponential)
    source: str = ""

    @property
    def mean_seconds(self) -> float:
        return 3600.0 * self.hours / max(1, self.utterances)


def _share(total_utt: int, total_h: float, n: int, speakers: int = 0) -> SplitSize:
    return SplitSize(n, round(total_h * n / total_utt, 2), speakers)


CORPORA: dict[str, Corpus] = {
    "librispeech": Corpus(
        "librispeech", 33_862, 111.4, 331,
        {"subset": {"train": SplitSize(28_539, 100.6, 251), "dev": SplitSize(2_703, 5.4, 40), "test": SplitSize(2_620, 5.4, 40)}},
        {"pr": "subset", "asr": "subset", "pr-frame": "subset"}, 1.3,
        "Panayotov et al. 2015: the SUPERB PR/ASR subsets train-clean-100, dev-clean, test-clean"),
    "voxceleb1": Corpus(
        "voxceleb1", 153_516, 352.0, 1_251,
        {"iden": {"train": _share(153_516, 352.0, 138_361, 1_251), "dev": _share(153_516, 352.0, 6_904, 1_251),
                  "test": _share(153_516, 352.0, 8_251, 1_251)},
         "veri": {"train": _share(153_516, 352.0, 148_642, 1_211), "test": _share(153_516, 352.0, 4_874, 40)}},
        {"sid": "iden", "asv": "veri"}, 4.0,
        "Nagrani et al. 2017: 1,251 speakers; iden_split.txt (SID) and the verification split (ASV: dev speakers train, 40 test speakers)"),
    "speechcommands": Corpus(
        "speechcommands", 60_973, 16.9, 0,
        {"ks": {"train": SplitSize(51_094, 14.2), "dev": SplitSize(6_798, 1.9), "test": SplitSize(3_081, 0.86)}},
        {"ks": "ks"}, 1.0, "Warden 2018, Speech Commands v1.0 as SUPERB's KS (1-s clips)"),
    "fluent": Corpus(
        "fluent", 30_043, 19.0, 97,
        {"ic": {"train": _share(30_043, 19.0, 23_132, 77), "dev": _share(30_043, 19.0, 3_118, 10), "test": _share(30_043, 19.0, 3_793, 10)}},
        {"ic": "ic"}, 0.5, "Lugosch et al. 2019, Fluent Speech Commands"),
    "iemocap": Corpus("iemocap", 10_039, 12.4, 10, {}, {}, 0.5, "Busso et al. 2008, IEMOCAP (5 sessions)"),
    "voxceleb2": Corpus("voxceleb2", 1_092_009, 2_290.0, 5_994, {}, {}, 4.0, "Chung et al. 2018, VoxCeleb2 dev"),
}

#: importer kind -> corpus row (a dataset imported by `import: {kind}` gets these declared sizes)
IMPORTER_CORPORA = {"librispeech": "librispeech", "voxceleb1": "voxceleb1", "speechcommands": "speechcommands", "fluent": "fluent",
                    "iemocap": "iemocap"}


@dataclass(frozen=True)
class NodeType:
    """A node type's accelerators and memory (vendor data sheets)."""

    name: str
    cpus: int
    memory_gib: float
    gpus: int = 0
    gpu: str = ""
    gpu_memory_gib: float = 0.0
    gpu_tflops_fp32: float = 0.0

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * 2**30

    @property
    def gpu_memory_bytes(self) -> float:
        return self.gpu_memory_gib * 2**30


NODE_TYPES: dict[str, NodeType] = {
    "g5.xlarge": NodeType("g5.xlarge", 4, 16, 1, "A10G", 24, 31.2),
    "g5.2xlarge": NodeType("g5.2xlarge", 8, 32, 1, "A10G", 24, 31.2),
    "g5.4xlarge": NodeType("g5.4xlarge", 16, 64, 1, "A10G", 24, 31.2),
    "g5.8xlarge": NodeType("g5.8xlarge", 32, 128, 1, "A10G", 24, 31.2),
    "g6.2xlarge": NodeType("g6.2xlarge", 8, 32, 1, "L4", 24, 30.3),
    "p3.2xlarge": NodeType("p3.2xlarge", 8, 61, 1, "V100", 16, 15.7),
    "p4d.24xlarge": NodeType("p4d.24xlarge", 96, 1152, 8, "A100", 40, 19.5),
    "p5.48xlarge": NodeType("p5.48xlarge", 192, 2048, 8, "H100", 80, 67.0),
    "m6i.2xlarge": NodeType("m6i.2xlarge", 8, 32),
    "m6i.4xlarge": NodeType("m6i.4xlarge", 16, 64),
    "m6i.8xlarge": NodeType("m6i.8xlarge", 32, 128),
    "r6i.4xlarge": NodeType("r6i.4xlarge", 16, 128),
    "r6i.8xlarge": NodeType("r6i.8xlarge", 32, 256),
    "r6i.16xlarge": NodeType("r6i.16xlarge", 64, 512),
}


def assumptions() -> list[str]:
    """The stated assumptions, one line each (printed under the cost table)."""
    return [
        f"GPU throughput: forward passes at {INFERENCE_EFFICIENCY:.0%} and training steps at {TRAIN_EFFICIENCY:.0%} of the GPU's fp32 "
        "peak (not measured: no GPU was available); model FLOPs per audio second counted on CPU (layerlab.study.cost_facts)",
        f"audio shards: {AUDIO_BYTES_PER_SECOND / 1000:.1f} kB per second of 16 kHz FLAC; frames tier fp16, zstd keeps "
        f"{FRAMES_COMPRESSION['zstd']:.0%} (measured on WavLM Base)",
        "probe reads are upper bounds: every trial runs max_epochs (early stopping and ASHA stop sooner); a split that fits "
        "frames_memory_mb is read once per trial",
        f"memory: a process starts at {PROCESS_BASE_BYTES / 1e9:.1f} GB; an actor may use {ACTOR_MEMORY_SHARE:.0%} of its node's memory",
        "corpora that cannot be read yet take their declared sizes (cost_facts.CORPORA, or the dataset's hours:); crops of utterances "
        "longer than the crop assume lengths = shortest + exponential",
    ]


def architecture_row(name: str) -> Architecture:
    """The table row ``name``; KeyError listing the rows otherwise."""
    if name not in ARCHITECTURES:
        raise KeyError(f"no architecture {name!r} in the cost table; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def describe(arch: Architecture) -> dict[str, Any]:
    """JSON form of a row (for --json and the report)."""
    return {"name": arch.name, "params": arch.params, "flops_per_audio_second": arch.flops_per_second,
            "frames_bytes_per_audio_second": arch.frames_bytes_per_second(), "layers": len(arch.layers), "source": arch.source}
