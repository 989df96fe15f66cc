"""Evaluation metrics, one implementation each: EER, minDCF, accuracy, edit distance, PER/WER, grouped CIs.

Plain numpy, no torch or Ray, so probes, training recipes, the study and the report share them.
"""

from __future__ import annotations

from layerlab.metrics.ci import Interval, group_jackknife, jackknife_interval
from layerlab.metrics.classification import accuracy
from layerlab.metrics.sequence import edit_distance, error_rate
from layerlab.metrics.verification import eer, eer_threshold, min_dcf

__all__ = ["Interval", "accuracy", "edit_distance", "eer", "eer_threshold", "error_rate", "group_jackknife", "jackknife_interval", "min_dcf"]
