"""The synthetic corpus: the project's embedded default dataset, spoken offline by espeak-ng.

``build_synth_corpus(out_url, SynthConfig(...))`` writes audio shards with phone alignments and
labels for SID, ASV (trial table), PR, KS, IC, a speaking-style task (ER stand-in) and ASR.
Names are imported lazily so generator worker processes start without the writer's dependencies.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

__all__ = ["NoiseConfig", "ReverbConfig", "SynthBuildSummary", "SynthConfig", "build_synth_corpus"]

_HOMES = {
    "NoiseConfig": "layerlab.data.synth.config",
    "ReverbConfig": "layerlab.data.synth.config",
    "SynthConfig": "layerlab.data.synth.config",
    "SynthBuildSummary": "layerlab.data.synth.build",
    "build_synth_corpus": "layerlab.data.synth.build",
}


__getattr__ = lazy_getattr(__name__, _HOMES)
