"""The study: one config of datasets x models x probe tasks x CKA comparisons -> one results folder and report.

``load_study_config`` (typed config), ``build_plan`` (stage graph with fingerprints), ``run_study``
(reuse, concurrency, clean failure). Importing the package imports neither torch nor Ray.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

_HOMES = {
    "StudyConfig": "layerlab.study.config",
    "StudyConfigError": "layerlab.study.config",
    "load_study_config": "layerlab.study.config",
    "build_plan": "layerlab.study.plan",
    "run_study": "layerlab.study.runner",
}
__all__ = sorted(_HOMES)
__getattr__ = lazy_getattr(__name__, _HOMES)
