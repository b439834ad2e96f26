"""Statistics of the pseudo-subclass explorer, streamed over a teacher cache.

Per class c (examples grouped as the projections were fitted: by label, or by the teacher's argmax for
grouping="prediction" and for unlabelled rows), per pseudo-subclass s:
  * share: the fraction of the class's examples whose hard assignment argmax_s z_{c,s} is s;
  * variance: the variance of the raw score v_{c,s}ᵀ P h and its fraction of the class's total variance of P h;
  * the top_k example ids with the highest z_{c,s} among the class's examples;
  * with a fine label, the adjusted mutual information and purity of assignment vs fine label.
Statistics are streamed over the cache in chunks; only the scatter's seeded subsample (max_points per class) and a
running top-k are held in memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from hf_lelp.cache.store import TeacherCache
from hf_lelp.explore.agreement import adjusted_mutual_info_from_table, purity
from hf_lelp.methods.projections import SubclassProjections

NO_FINE_LABEL = -1

TextSource = Mapping[int, str] | Sequence[str]


@dataclass
class ClassStats:
    """Running statistics of one class, float64 so that millions of rows sum accurately."""

    num_subclasses: int
    hidden_size: int
    num_fine: int
    top_k: int
    max_points: int
    count: int = 0
    assigned: np.ndarray = field(init=False)  # [S] hard-assignment counts
    score_sum: np.ndarray = field(init=False)  # [S] sum of centred raw scores v_sᵀ(P h - μ)
    score_sq: np.ndarray = field(init=False)  # [S] sum of their squares
    resid_sum: np.ndarray = field(init=False)  # [D] sum of P h - μ
    resid_sq: float = 0.0  # sum of |P h - μ|²
    fine_table: np.ndarray = field(init=False)  # [S, K] assignment × fine label counts
    top_scores: list[np.ndarray] = field(init=False)  # per s, the running top-k z (descending)
    top_ids: list[np.ndarray] = field(init=False)
    sample_keys: np.ndarray = field(init=False)  # scatter sample: random keys, P h, assignment, ids
    sample_points: np.ndarray = field(init=False)
    sample_assign: np.ndarray = field(init=False)
    sample_ids: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        s, d = self.num_subclasses, self.hidden_size
        self.assigned = np.zeros(s, dtype=np.int64)
        self.score_sum, self.score_sq = np.zeros(s), np.zeros(s)
        self.resid_sum = np.zeros(d)
        self.fine_table = np.zeros((s, self.num_fine), dtype=np.int64)
        self.top_scores = [np.empty(0) for _ in range(s)]
        self.top_ids = [np.empty(0, dtype=np.int64) for _ in range(s)]
        self.sample_keys = np.empty(0)
        self.sample_points = np.empty((0, d), dtype=np.float32)
        self.sample_assign = np.empty(0, dtype=np.int64)
        self.sample_ids = np.empty(0, dtype=np.int64)

    def update(self, ids, projected, centred_scores, z, residual, fine_codes, keys) -> None:
        """Add one chunk of this class's rows (all float64 numpy except `projected`, kept as float32)."""
        assignment = z.argmax(axis=1)
        self.count += len(ids)
        self.assigned += np.bincount(assignment, minlength=self.num_subclasses)
        self.score_sum += centred_scores.sum(axis=0)
        self.score_sq += (centred_scores**2).sum(axis=0)
        self.resid_sum += residual.sum(axis=0)
        self.resid_sq += float((residual**2).sum())
        known = fine_codes != NO_FINE_LABEL
        np.add.at(self.fine_table, (assignment[known], fine_codes[known]), 1)
        for s in range(self.num_subclasses):
            self._update_top(s, z[:, s], ids)
        self._update_sample(keys, projected, assignment, ids)

    def _update_top(self, s: int, scores: np.ndarray, ids: np.ndarray) -> None:
        all_scores = np.concatenate([self.top_scores[s], scores])
        all_ids = np.concatenate([self.top_ids[s], ids])
        order = np.lexsort((all_ids, -all_scores))[: self.top_k]  # highest score first, ties by id
        self.top_scores[s], self.top_ids[s] = all_scores[order], all_ids[order]

    def _update_sample(self, keys, projected, assignment, ids) -> None:
        # Bottom-k of uniform random keys: a uniform sample without replacement, whatever the chunking.
        keys = np.concatenate([self.sample_keys, keys])
        keep = np.argsort(keys, kind="stable")[: self.max_points]
        self.sample_keys = keys[keep]
        self.sample_points = np.concatenate([self.sample_points, projected])[keep]
        self.sample_assign = np.concatenate([self.sample_assign, assignment])[keep]
        self.sample_ids = np.concatenate([self.sample_ids, ids])[keep]

    def total_variance(self) -> float:
        if not self.count:
            return float("nan")
        mean = self.resid_sum / self.count
        return max(self.resid_sq / self.count - float(mean @ mean), 0.0)

    def score_variances(self) -> np.ndarray:
        if not self.count:
            return np.full(self.num_subclasses, np.nan)
        mean = self.score_sum / self.count
        return np.maximum(self.score_sq / self.count - mean**2, 0.0)


def _groups(projections: SubclassProjections, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The class each row belongs to, as in the fit; unlabelled rows take the teacher's prediction."""
    predicted = logits.argmax(dim=1)
    if projections.options.grouping == "prediction":
        return predicted
    return torch.where(labels >= 0, labels, predicted)


def _ids_missing(source: TextSource, example_ids: np.ndarray) -> np.ndarray:
    if isinstance(source, Mapping):
        keys = np.fromiter((int(k) for k in source.keys()), dtype=np.int64, count=len(source))
        return example_ids[~np.isin(example_ids, keys)]
    return example_ids[(example_ids < 0) | (example_ids >= len(source))]


def check_covers(source: TextSource, example_ids: np.ndarray, what: str) -> None:
    """Refuse texts (or fine labels) that do not cover every cached example id: they come from other data."""
    missing = _ids_missing(source, np.asarray(example_ids, dtype=np.int64))
    if len(missing):
        raise ValueError(
            f"{what} are missing for {len(missing)} of the {len(example_ids)} cached example ids (first: "
            f"{missing[:10].tolist()}): the dataset or its caps (--max_train_examples, --subset_seed) differ from "
            "the ones the teacher cache was built with."
        )


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == ""


def encode_fine_labels(fine_labels: TextSource, example_ids: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes aligned with the cache rows (NO_FINE_LABEL where missing) and the sorted label names."""
    values = [fine_labels[int(i)] for i in example_ids]
    names = sorted({str(v) for v in values if not _is_missing(v)})
    index = {name: k for k, name in enumerate(names)}
    codes = np.array([NO_FINE_LABEL if _is_missing(v) else index[str(v)] for v in values], dtype=np.int64)
    return codes, names


def collect_statistics(
    cache: TeacherCache,
    projections: SubclassProjections,
    fine_codes: np.ndarray | None,
    num_fine: int,
    top_k: int,
    max_points: int,
    seed: int,
    chunk_size: int,
) -> list[ClassStats]:
    """One streaming pass over the cache: per-class counts, moments, contingency, top-k and scatter sample."""
    c, s, d = cache.num_labels, projections.num_subclasses, cache.hidden_size
    stats = [ClassStats(s, d, num_fine, top_k, max_points) for _ in range(c)]
    rng = np.random.default_rng(seed)
    means = projections.means.double().numpy()
    scales = projections.scales.double().numpy()
    start = 0
    for hidden, logits, labels in cache.iter_chunks(chunk_size):
        rows = np.arange(start, start + len(hidden))
        start += len(hidden)
        ids = np.asarray(cache.example_ids[rows], dtype=np.int64)
        groups = _groups(projections, labels, logits).numpy()
        z = projections.scores(hidden).double().numpy()  # [B, C, S]
        projected = projections.project(hidden.float())
        codes = fine_codes[rows] if fine_codes is not None else np.full(len(rows), NO_FINE_LABEL)
        keys = rng.random(len(rows))
        for k in range(c):
            mine = groups == k
            if not mine.any():
                continue
            own_z = z[mine, k]
            points = projected[torch.from_numpy(mine)]
            stats[k].update(
                ids[mine],
                points.numpy(),
                own_z * scales[k],  # = v_sᵀ (P h - μ_k), the centred raw score
                own_z,
                points.double().numpy() - means[k],
                codes[mine],
                keys[mine],
            )
    return stats


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def class_summary(k: int, name: str, st: ClassStats, projections: SubclassProjections, fine_names) -> dict:
    """Class k's entry of summary.json (and of the report): counts, variances, agreement, top example ids."""
    total = st.total_variance()
    variances = st.score_variances()
    table = st.fine_table[:, st.fine_table.sum(axis=0) > 0]
    has_fine = fine_names is not None and table.sum() > 0
    subclasses = [
        {
            "index": s,
            "count": int(st.assigned[s]),
            "share": _nan_to_none(st.assigned[s] / st.count if st.count else float("nan")),
            "variance": _nan_to_none(float(variances[s])),
            "variance_fraction": _nan_to_none(float(variances[s]) / total if total > 0 else float("nan")),
            "top": [{"example_id": int(i), "score": float(z)} for z, i in zip(st.top_scores[s], st.top_ids[s])],
        }
        for s in range(st.num_subclasses)
    ]
    fractions = [sub["variance_fraction"] for sub in subclasses]
    return {
        "index": k,
        "name": name,
        "count": st.count,
        "variance": _nan_to_none(total),
        "explained_fraction": None if None in fractions else float(sum(fractions)),
        "fitted_explained_fraction": projections.info.get("explained_variance_ratio", {}).get(name),
        "ami": adjusted_mutual_info_from_table(table) if has_fine else None,
        "purity": purity(table) if has_fine else None,
        "fine_labels": int(table.shape[1]) if has_fine else 0,
        "sampled_points": len(st.sample_ids),
        "scatter_png": f"class-{k}-scatter.png" if st.count else None,
        "subclasses": subclasses,
    }


def overall_agreement(stats: list[ClassStats], has_fine: bool) -> dict:
    """(class, pseudo-subclass) pairs as one partition of all examples, against the fine labels."""
    if not has_fine:
        return {"ami": None, "purity": None, "fine_labels": 0}
    table = np.concatenate([st.fine_table for st in stats])
    table = table[:, table.sum(axis=0) > 0]
    return {
        "ami": adjusted_mutual_info_from_table(table),
        "purity": purity(table),
        "fine_labels": int(table.shape[1]),
    }
