"""Debiased (HSIC_1, Song et al. 2012) CKA terms from streamed sums around a shared shift.

With centred features, ``n(n-3) HSIC_1 = ||C_ab||^2 - n/(n-2) P_ab + N_a N_b / ((n-1)(n-2))`` where
``P_ab = sum_i k_ai k_bi`` and ``N_a = sum_i k_ai`` use per-frame squared norms ``k`` around the
*global* mean. Both are expanded exactly in terms of additive sums kept while streaming
(see notes/cka-math.md section 3.3): ``rho_a = sum r_a``, ``R_ab = sum r_a r_b``,
``V_a = sum r_a u^T`` with ``u = z - shift`` and ``r_a = ||u_a||^2``.
"""

from __future__ import annotations

import torch


def norm_sum(rho_a: torch.Tensor, delta_a: torch.Tensor, n: int) -> torch.Tensor:
    """``N_a = sum_i ||x_ai - mean_a||^2`` from the shifted sums."""
    return rho_a - n * delta_a.dot(delta_a)


def norm_product_sum(
    n: int,
    r_ab: torch.Tensor,
    rho_a: torch.Tensor,
    rho_b: torch.Tensor,
    v_ab: torch.Tensor,
    v_ba: torch.Tensor,
    delta_a: torch.Tensor,
    delta_b: torch.Tensor,
    m_ab: torch.Tensor,
) -> torch.Tensor:
    """``P_ab = sum_i k_ai k_bi`` (k = squared norm around the global mean), exactly from shifted sums.

    ``v_ab = sum_i r_ai u_bi`` (length d_b), ``m_ab = sum_i u_ai u_bi^T`` (d_a x d_b).
    """
    da2 = delta_a.dot(delta_a)
    db2 = delta_b.dot(delta_b)
    return (
        r_ab
        - 2.0 * v_ab.dot(delta_b)
        - 2.0 * v_ba.dot(delta_a)
        + db2 * rho_a
        + da2 * rho_b
        + 4.0 * delta_a.dot(m_ab @ delta_b)
        - 3.0 * n * da2 * db2
    )


def debiased_hsic(t_ab: torch.Tensor, p_ab: torch.Tensor, n_a: torch.Tensor, n_b: torch.Tensor, n: int) -> torch.Tensor:
    """``n(n-3) * HSIC_1`` for one layer pair (the ``n(n-3)`` factor cancels in CKA)."""
    if n < 4:
        raise ValueError(f"debiased CKA needs at least 4 frames, got {n}")
    return t_ab - n / (n - 2.0) * p_ab + n_a * n_b / ((n - 1.0) * (n - 2.0))
