"""Build the synthetic corpus: plan, render in worker processes, write shards in plan order."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from layerlab.progress import progress_bar

from layerlab.data.records import AudioRecord
from layerlab.data.shards import BuildSummary, ShardWriter
from layerlab.data.synth import tasks
from layerlab.data.synth.config import SynthConfig
from layerlab.data.synth.espeak import library_paths
from layerlab.data.synth.render import RenderedUtterance
from layerlab.data.synth.voices import make_speakers
from layerlab.data.synth.workers import RenderPool


@dataclass
class SynthBuildSummary(BuildSummary):
    """The shard writer's summary plus what only the generator knows."""

    build_seconds: float = 0.0
    speakers: int = 0
    utterances_by_family: dict[str, int] = field(default_factory=dict)
    asv_trials: int = 0

    def render(self) -> str:
        families = ", ".join(f"{k} {v}" for k, v in sorted(self.utterances_by_family.items()))
        return "\n".join(
            [
                super().render(),
                f"speakers: {self.speakers}; utterances by family: {families}",
                f"asv trials: {self.asv_trials}",
                f"build time: {self.build_seconds:.1f} s",
            ]
        )


def _rendered(plans: list[tasks.UtterancePlan], config: SynthConfig) -> Iterator[RenderedUtterance]:
    """Render every plan in generator processes; results come back in plan order."""
    with RenderPool(config.workers, config.noise, config.reverb) as pool:
        yield from pool.imap(plans)


def _loader_version() -> str:
    """Installed espeakng-loader version: different versions may speak differently."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("espeakng-loader")
    except PackageNotFoundError:
        return "unknown"


def build_synth_corpus(out_url: str, config: SynthConfig, progress: bool = True, overwrite: bool = False) -> SynthBuildSummary:
    """Generate the corpus described by ``config`` into ``out_url`` (any storage URL); deterministic for a seed.

    A finished corpus of the same config at ``out_url`` is reused; any other dataset there is refused unless ``overwrite``.
    """
    from layerlab.data.shards import existing_summary, prepare_output

    t0 = time.perf_counter()
    build = {"by": "corpus synth", "config": config.model_dump(mode="json", exclude={"workers"})}
    if prepare_output(out_url, build, overwrite):
        base = existing_summary(out_url)
        return SynthBuildSummary(**vars(base), speakers=config.speakers)
    library_paths()  # fail fast with a clear message when espeakng-loader is missing
    speakers = make_speakers(config.speakers, config.seed)
    roles = tasks.assign_roles(speakers, config)
    plans = tasks.plan_corpus(speakers, roles, config)
    extra = {
        "generator": f"layerlab corpus synth (espeak-ng via espeakng-loader {_loader_version()})",
        "config": config.model_dump(mode="json", exclude={"workers"}),  # output never depends on workers
        "build": build,
        "speakers": [s.describe() for s in speakers],
        "tasks": tasks.task_description(config, roles),
    }
    families: dict[str, int] = {}
    read_ids: dict[str, list[str]] = {}
    phones: set[str] = set()
    with ShardWriter(out_url, config.dataset, max_shard_bytes=config.max_shard_bytes, extra=extra) as writer:
        bar = progress_bar(len(plans), "synth corpus", "utt", progress)
        for plan, result in zip(plans, _rendered(plans, config)):
            bar.update(1)
            if result.id != plan.id:  # results must arrive in plan order: that is what makes rows deterministic
                raise RuntimeError(f"generator returned {result.id!r} where {plan.id!r} was expected")
            if result.error is not None or result.wav is None:
                writer.quarantine(plan.id, result.source, result.error or "no audio", stage="synth")
                continue
            record = AudioRecord(
                id=plan.id, audio=result.wav, speaker=plan.speaker, source=result.source, sample_rate=16_000,
                labels=result.labels, splits=plan.splits, transcript=plan.transcript, alignment=result.alignment,
            )  # fmt: skip
            if not writer.add(record):
                continue
            families[plan.family] = families.get(plan.family, 0) + 1
            phones.update(s.phone for s in result.alignment or [])
            if plan.family == "read":
                read_ids.setdefault(plan.speaker, []).append(plan.id)
        bar.close()
        trials = tasks.asv_trials(read_ids, roles, config)
        writer.add_table("asv_trials", trials)
        writer.extra["phones"] = sorted(phones)
    base = writer.summary()
    return SynthBuildSummary(
        **vars(base),
        build_seconds=time.perf_counter() - t0,
        speakers=len(speakers),
        utterances_by_family=families,
        asv_trials=trials.num_rows,
    )
