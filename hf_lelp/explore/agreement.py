"""Agreement between two partitions: contingency table, mutual information, adjusted mutual information
(Vinh et al. 2010, arithmetic-mean normaliser as in scikit-learn's default) and purity. NumPy only."""

from __future__ import annotations

import math

import numpy as np


def contingency_table(labels_a, labels_b) -> np.ndarray:
    """Counts n_ij of items in class i of `labels_a` and class j of `labels_b` (any hashable labels)."""
    _, a = np.unique(np.asarray(labels_a), return_inverse=True)
    _, b = np.unique(np.asarray(labels_b), return_inverse=True)
    if a.shape != b.shape:
        raise ValueError(f"Label arrays differ in length: {a.shape[0]} vs {b.shape[0]}.")
    table = np.zeros((a.max(initial=-1) + 1, b.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (a.ravel(), b.ravel()), 1)
    return table


def _entropy(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    total = counts.sum()
    return float(-(counts / total * np.log(counts / total)).sum()) if total else 0.0


def _log_factorials(n: int) -> np.ndarray:
    return np.array([math.lgamma(k + 1) for k in range(n + 1)])


def expected_mutual_info(table: np.ndarray) -> float:
    """E[MI] of two partitions with the table's marginals under the hypergeometric model (Vinh et al. 2010)."""
    a, b = table.sum(axis=1).astype(np.int64), table.sum(axis=0).astype(np.int64)
    n = int(a.sum())
    log_fact = _log_factorials(n)
    emi = 0.0
    for a_i in a[a > 0]:
        for b_j in b[b > 0]:
            n_ij = np.arange(max(1, a_i + b_j - n), min(a_i, b_j) + 1)
            if not len(n_ij):
                continue
            # log P(n_ij) = log[a! b! (N-a)! (N-b)! / (N! n_ij! (a-n_ij)! (b-n_ij)! (N-a-b+n_ij)!)]
            log_p = (
                log_fact[a_i]
                + log_fact[b_j]
                + log_fact[n - a_i]
                + log_fact[n - b_j]
                - log_fact[n]
                - log_fact[n_ij]
                - log_fact[a_i - n_ij]
                - log_fact[b_j - n_ij]
                - log_fact[n - a_i - b_j + n_ij]
            )
            emi += float((n_ij / n * np.log(n * n_ij / (a_i * b_j)) * np.exp(log_p)).sum())
    return emi


def mutual_info(table: np.ndarray) -> float:
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    if n == 0:
        return 0.0
    a, b = table.sum(axis=1, keepdims=True), table.sum(axis=0, keepdims=True)
    nz = table > 0
    return float((table[nz] / n * np.log(n * table[nz] / (a @ b)[nz])).sum())


def adjusted_mutual_info_from_table(table: np.ndarray) -> float:
    """AMI = (MI - E[MI]) / (mean(H(U), H(V)) - E[MI]), arithmetic normaliser (sklearn's default)."""
    table = np.asarray(table)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    rows, cols = table.shape
    # Both partitions trivial (one cluster each, or empty): identical by convention, as in sklearn.
    if rows == cols and rows <= 1:
        return 1.0
    mi, emi = mutual_info(table), expected_mutual_info(table)
    normaliser = 0.5 * (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0)))
    denominator = normaliser - emi
    eps = np.finfo(np.float64).eps
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return float((mi - emi) / denominator)


def adjusted_mutual_info(labels_a, labels_b) -> float:
    """Adjusted mutual information of two labelings of the same items (1 = identical partitions, ~0 = chance)."""
    return adjusted_mutual_info_from_table(contingency_table(labels_a, labels_b))


def purity(table: np.ndarray) -> float:
    """Fraction of items whose cluster (row) majority label (column) is their own label."""
    table = np.asarray(table)
    total = table.sum()
    return float(table.max(axis=1).sum() / total) if total else float("nan")
