"""The study report: reads result tables (Parquet/JSON) only, never runs a model.

``build_report(index, out)`` writes ``index.html`` (one self-contained file, figures embedded),
``figures/*.png`` and ``tables/*.parquet`` under ``out``.
"""

from __future__ import annotations

from layerlab.lazy_exports import lazy_getattr

__all__ = ["build_report"]

__getattr__ = lazy_getattr(__name__, {"build_report": "layerlab.report.build"})
