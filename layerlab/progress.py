"""Progress bars for long work: live on a terminal, a line every 15 s in logs (`ray job submit`, CI)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(total: int, desc: str, unit: str, enabled: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; when stderr is not a terminal, updates are throttled so logs stay short."""
    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=interactive,
                mininterval=0.1 if interactive else 15.0, **kwargs)
