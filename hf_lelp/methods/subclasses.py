"""Pseudo-subclass sources other than LELP's projections: per-class k-means, and oracle (known fine labels).

Every source offers `subclass_scores(hidden, example_ids) -> [B, C, S]`, turned into targets by
`losses.lelp_targets` exactly as LELP's scores are, so the ablations differ only in where the subclasses come from;
and S (`num_subclasses`), K (`num_members`, 1 here) and the S·K score `columns` (see `methods.SubclassSource`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hf_lelp.cache.store import TeacherCache
from hf_lelp.methods.projections import class_groups, row_space_basis


@dataclass
class KMeansSubclasses:
    """S k-means clusters per class of the null-space projected embeddings (the paper's clustering ablation).

    Score z_{c,s} = −‖P h − μ_{c,s}‖² / d̄²_c, with d̄²_c the class's mean squared distance to its own centroid
    (ours: makes β scale-free, like the standardised LELP scores).
    """

    null_basis: torch.Tensor  # [D, r]
    centroids: torch.Tensor  # [C, S, D]
    scales: torch.Tensor  # [C]
    num_members: int = 1

    @property
    def num_subclasses(self) -> int:
        return self.centroids.shape[1]

    @property
    def columns(self) -> int:
        return self.num_subclasses * self.num_members

    def to(self, device) -> KMeansSubclasses:
        return KMeansSubclasses(self.null_basis.to(device), self.centroids.to(device), self.scales.to(device))

    def subclass_scores(self, hidden: torch.Tensor, example_ids=None) -> torch.Tensor:
        hidden = hidden.float()
        basis = self.null_basis.to(hidden)
        projected = hidden - (hidden @ basis) @ basis.T if basis.numel() else hidden
        distances = (projected[:, None, None, :] - self.centroids.to(hidden)[None]).pow(2).sum(dim=-1)
        return -distances / self.scales.to(hidden)[None, :, None]


def kmeans(points: torch.Tensor, k: int, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """Lloyd's algorithm with k-means++ seeding; returns the centroids [k, D]."""
    first = int(torch.randint(len(points), (1,), generator=generator))
    centroids = points[first : first + 1]
    for _ in range(1, k):
        nearest = torch.cdist(points, centroids).min(dim=1).values.pow(2)
        pick = int(torch.multinomial(nearest / nearest.sum(), 1, generator=generator)) if nearest.sum() > 0 else 0
        centroids = torch.cat([centroids, points[pick : pick + 1]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(dim=1)
        updated = torch.stack(
            [points[assignment == j].mean(dim=0) if (assignment == j).any() else centroids[j] for j in range(k)]
        )
        if torch.allclose(updated, centroids):
            break
        centroids = updated
    return centroids


def fit_kmeans_subclasses(
    cache: TeacherCache,
    num_subclasses: int,
    grouping: str = "label",
    seed: int = 0,
    max_rows_per_class: int = 20000,
) -> KMeansSubclasses:
    """Cluster each class (by label or teacher prediction) in the null space; at most `max_rows_per_class` rows
    per class (a seeded subsample) are held in memory."""
    basis = row_space_basis(cache.weight).float()
    rows: dict[int, list[torch.Tensor]] = {k: [] for k in range(cache.num_labels)}
    for hidden, logits, labels in cache.iter_chunks():
        projected = hidden - (hidden @ basis) @ basis.T
        groups = class_groups(labels, logits, grouping)
        for k in rows:
            rows[k].append(projected[groups == k])
    generator = torch.Generator().manual_seed(seed)
    names = cache.fingerprint.get("label_names") or [str(k) for k in rows]
    centroids, scales = [], []
    for k, parts in rows.items():
        points = torch.cat(parts).double()
        if len(points) < num_subclasses + 1:
            raise ValueError(
                f"Class '{names[k]}' has {len(points)} examples, fewer than S + 1 = {num_subclasses + 1} for "
                "k-means: add data or lower --num_subclasses."
            )
        if len(points) > max_rows_per_class:
            points = points[torch.randperm(len(points), generator=generator)[:max_rows_per_class]]
        centres = kmeans(points, num_subclasses, generator)
        own = torch.cdist(points, centres).min(dim=1).values.pow(2).mean()
        centroids.append(centres)
        scales.append(own.clamp_min(1e-12))
    return KMeansSubclasses(basis, torch.stack(centroids).float(), torch.stack(scales).float())


@dataclass
class OracleSubclasses:
    """Known fine labels as subclasses (the upper bound of the paper's binarised CIFAR experiment).

    For the example's own class the within-class distribution is one-hot on its fine label; for every other
    class it is uniform over that class's fine labels (the example has no fine label there). Classes with fewer
    fine labels than the largest one get padding slots with target 0 (score −inf).
    """

    example_ids: np.ndarray  # sorted ids of the transfer set
    fine_index: torch.Tensor  # [N] index of each example's fine label within its class
    labels: torch.Tensor  # [N] class of each example
    allowed: torch.Tensor  # [C, S] True where class c has a fine label in slot s
    fine_names: list[list[str]]  # per class, the fine label of each slot
    num_members: int = 1

    @property
    def num_subclasses(self) -> int:
        return self.allowed.shape[1]

    @property
    def columns(self) -> int:
        return self.num_subclasses * self.num_members

    def to(self, device) -> OracleSubclasses:
        return self  # tensors are indexed on the CPU, scores are moved by the caller

    def subclass_scores(self, hidden: torch.Tensor, example_ids) -> torch.Tensor:
        example_ids = np.asarray(example_ids.detach().cpu() if torch.is_tensor(example_ids) else example_ids)
        rows = np.searchsorted(self.example_ids, example_ids)
        rows = np.minimum(rows, len(self.example_ids) - 1)
        if not np.all(self.example_ids[rows] == example_ids):
            raise KeyError("Oracle subclasses: example ids missing from the fine-label table (other training data?).")
        rows_t = torch.from_numpy(rows)
        b, (c, s) = len(rows), self.allowed.shape
        scores = torch.where(self.allowed, 0.0, float("-inf")).expand(b, c, s).clone()
        own = self.labels[rows_t]
        own_row = torch.full((b, s), float("-inf"))
        own_row[torch.arange(b), self.fine_index[rows_t]] = 0.0
        scores[torch.arange(b), own] = own_row
        return scores.to(hidden.device)


def oracle_subclasses(example_ids, labels, fine_labels: list[str], num_labels: int) -> OracleSubclasses:
    """Build the oracle table from a labelled transfer set with a fine-label column."""
    example_ids, labels = np.asarray(example_ids, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if (labels < 0).any():
        raise ValueError("--method oracle needs every transfer example labelled (coarse and fine labels).")
    order = np.argsort(example_ids)
    example_ids, labels = example_ids[order], labels[order]
    fine = [str(fine_labels[i]) for i in order]
    names = [sorted({f for f, y in zip(fine, labels) if y == k}) for k in range(num_labels)]
    if any(not n for n in names):
        raise ValueError("--method oracle: a class has no examples with a fine label in the transfer set.")
    width = max(len(n) for n in names)
    slot = {(k, name): j for k, n in enumerate(names) for j, name in enumerate(n)}
    allowed = torch.zeros(num_labels, width, dtype=torch.bool)
    for k, n in enumerate(names):
        allowed[k, : len(n)] = True
    fine_index = torch.tensor([slot[(int(y), f)] for f, y in zip(fine, labels)])
    return OracleSubclasses(example_ids, fine_index, torch.from_numpy(labels), allowed, names)
