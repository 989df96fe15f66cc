"""Evaluation metrics, one implementation each: EER, minDCF, accuracy, edit distance, PER/WER, grouped CIs.

Plain numpy, no torch or Ray, so probes, training recipes, the study and the report share them.
"""

from __future__ import annotations

from layerlab.metrics.ci import METRIC_BOUNDS, Interval, MetricRange, bounded_interval, group_jackknife, jackknife_interval, metric_bounds
from layerlab.metrics.classification import accuracy
from layerlab.metrics.sequence import edit_distance, error_rate
from layerlab.metrics.verification import eer, eer_threshold, min_dcf

__all__ = ["METRIC_BOUNDS", "Interval", "MetricRange", "accuracy", "bounded_interval", "edit_distance", "eer", "eer_threshold", "error_rate",
           "group_jackknife", "jackknife_interval", "metric_bounds", "min_dcf"]
