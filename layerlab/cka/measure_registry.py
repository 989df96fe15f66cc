"""The one list of similarity measures layerlab computes: names, ranges, direction, and their options.

``moment`` measures are functions of the FeatureCKA state (every second moment of every layer pair,
:mod:`layerlab.cka.moment_measures`); ``sample`` measures need the items themselves and run on a
seeded, speaker-balanced sample (:mod:`layerlab.cka.sample_measures`). Asymmetric measures read
row -> column: ``pwcca[i, j]`` weighs canonical variates by layer i's neurons, ``ridge_r2[i, j]`` is
the held-out R^2 of predicting layer j from layer i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class MeasureSpec:
    """What a measure is: its kind, range, whether higher means more similar, whether it is symmetric."""

    name: str
    kind: Literal["moment", "sample"]
    low: float
    high: float
    similarity: bool  # False: a distance (lower = more similar)
    symmetric: bool
    label: str  # colour-bar label
    description: str


_INF = float("inf")

MEASURES: dict[str, MeasureSpec] = {m.name: m for m in (
    MeasureSpec("linear_cka", "moment", 0.0, 1.0, True, True, "linear CKA",
                "linear CKA (the --estimator: biased or debiased HSIC), Kornblith et al. 2019"),
    MeasureSpec("cca_r2", "moment", 0.0, 1.0, True, True, "mean squared CCA",
                "mean of the squared canonical correlations over min(d_a, d_b) (ridge-regularised)"),
    MeasureSpec("cca_mean", "moment", 0.0, 1.0, True, True, "mean CCA",
                "mean canonical correlation over min(d_a, d_b) (ridge-regularised)"),
    MeasureSpec("svcca", "moment", 0.0, 1.0, True, True, "SVCCA",
                "mean CCA after keeping each layer's top principal directions explaining svcca_fraction of its variance (Raghu et al. 2017)"),
    MeasureSpec("pwcca", "moment", 0.0, 1.0, True, False, "PWCCA (row weights)",
                "projection-weighted CCA, weights from the row layer's neurons (Morcos et al. 2018)"),
    MeasureSpec("procrustes", "moment", 0.0, 2.0, False, True, "Procrustes distance",
                "squared orthogonal Procrustes distance 2 - 2||X^T Y||_* of centred, unit-Frobenius data (Ding et al. 2021); 0 = same up to rotation"),
    MeasureSpec("ridge_r2", "moment", -_INF, 1.0, True, False, "held-out R² (row predicts column)",
                "held-out R^2 of a ridge regression predicting the column layer from the row layer, penalty chosen by group-level cross-validation"),
    MeasureSpec("rbf_cka", "sample", 0.0, 1.0, True, True, "RBF CKA",
                "CKA with Gaussian kernels (bandwidth: a fraction of the median distance, or given) on a speaker-balanced sample"),
    MeasureSpec("mutual_knn", "sample", 0.0, 1.0, True, True, "mutual k-NN",
                "mean overlap of the k nearest neighbours (cosine) of each item in both layers (Huh et al. 2024) on a speaker-balanced sample"),
)}

#: the default: what layerlab computed before there were other measures
DEFAULT_MEASURES = ("linear_cka",)


def parse_measures(value: str | Sequence[str] | None) -> list[str]:
    """Measure names from ``"a,b"`` or a list (None: the default); an unknown name raises one line listing the allowed ones."""
    if value is None:
        return list(DEFAULT_MEASURES)
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [v.strip() for v in items if v.strip()]
    if not names:
        raise ValueError(f"--measure: no measure given (allowed: {', '.join(MEASURES)})")
    unknown = [n for n in names if n not in MEASURES]
    if unknown:
        raise ValueError(f"--measure: unknown measure {unknown[0]!r} (allowed: {', '.join(MEASURES)})")
    return list(dict.fromkeys(names))


class MeasureOptions(BaseModel):
    """Options of the measures beyond linear CKA (all recorded in the tables' metadata and summary.json)."""

    model_config = ConfigDict(extra="forbid")

    ridge: float = Field(1e-6, ge=0, description="CCA regulariser eps: lambda = eps * tr(C) / d on each side (cca_r2, cca_mean, svcca, pwcca)")
    svcca_fraction: float = Field(0.99, gt=0, le=1, description="share of each layer's variance its kept principal directions explain (svcca)")
    ridge_grid: list[float] = Field(default_factory=lambda: [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], min_length=1,
                                    description="ridge_r2 penalties eps (lambda = eps * tr(C_train) / d), chosen by cross-validation")
    ridge_folds: int = Field(5, ge=2, description="ridge_r2 cross-validation folds (each a set of whole groups: shards or speakers)")
    sample_size: int = Field(2000, ge=4, description="items (frames or utterances) in the speaker-balanced sample (rbf_cka, mutual_knn)")
    sample_seed: int = Field(0, description="seed of the sample (recorded)")
    knn_k: int = Field(10, ge=1, description="neighbours per item (mutual_knn)")
    rbf_sigma: float | None = Field(None, gt=0, description="RBF bandwidth (absolute); None: rbf_threshold x the median pairwise distance")
    rbf_threshold: float = Field(1.0, gt=0, description="bandwidth as a fraction of the median pairwise distance (Kornblith et al.)")
    rbf_hsic: Literal["biased", "debiased"] = Field("biased", description="HSIC estimator of rbf_cka")


def moment_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if MEASURES[n].kind == "moment"]


def sample_names(names: Sequence[str]) -> list[str]:
    return [n for n in names if MEASURES[n].kind == "sample"]
