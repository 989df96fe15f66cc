"""Float64 decompositions for the similarity measures: on the state's device, single-threaded LAPACK on CPU.

The measures decompose many d x d blocks (d ~ 100-1000). On a GPU they run there. On CPU, a
multi-threaded LAPACK gains little at these sizes and collapses when cores are shared: measured on
this project's 2-core machine under load, ``eigh`` of a 768 x 768 block took 0.8 s single-threaded
and 22 s with 2 threads (GEMMs are not affected and keep their threads). So decompositions run
inside :func:`single_threaded`, a process-wide, reference-counted switch of torch's thread count
(safe when several stages of a study call it from their own threads); the whole measure computation
runs inside it (:func:`layerlab.cka.measure_run.compute_measures`), since its small products gain
nothing from a thread pool either. Other threads of the process run with one thread meanwhile.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np
import torch

_LOCK = threading.Lock()
_DEPTH = 0
_SAVED = 1


@contextlib.contextmanager
def single_threaded(device: torch.device) -> Iterator[None]:
    """torch runs with one intra-op thread inside the block (CPU only; nested and concurrent uses restore once)."""
    global _DEPTH, _SAVED
    if device.type != "cpu":
        yield
        return
    with _LOCK:
        if _DEPTH == 0:
            _SAVED = torch.get_num_threads()
            torch.set_num_threads(1)
        _DEPTH += 1
    try:
        yield
    finally:
        with _LOCK:
            _DEPTH -= 1
            if _DEPTH == 0:
                torch.set_num_threads(_SAVED)


def as_f64(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """A float64 tensor on ``device`` (default: where ``x`` is, CPU for NumPy input)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device or x.device, dtype=torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64), device=device)


def eigh(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (ascending) and vectors of a symmetric matrix."""
    with single_threaded(c.device):
        return torch.linalg.eigh(c)


def svd(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``U, s, Vh``."""
    with single_threaded(t.device):
        return torch.linalg.svd(t, full_matrices=False)


def svdvals(t: torch.Tensor) -> torch.Tensor:
    """Singular values (descending)."""
    with single_threaded(t.device):
        return torch.linalg.svdvals(t)


def numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()
