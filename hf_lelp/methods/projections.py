"""Fit LELP's pseudo-subclass directions from a teacher cache (lelp-method.md, steps 2-4).

1. Null space: P = I - Wᵀ(WWᵀ)⁻¹W, applied as P h = h - B Bᵀ h with B an orthonormal basis of W's row space.
2. Per-class PCA of P h, streamed over the cache: per-class counts, sums and D×D second moments in float64
   (shifted by a per-class reference point for numerical stability), then C eigendecompositions.
3. A seeded random S×S rotation per class, so the S directions carry equal variance in expectation.
Scores z_{c,s} = v_{c,s}ᵀ (P h − μ_c) / σ_{c,s}; the standardisation by σ (ours) makes β scale-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import torch
from safetensors.torch import load_file, save_file

from hf_lelp.base.io_utils import sha256_file, write_atomic
from hf_lelp.cache.fingerprint import check_fingerprint
from hf_lelp.cache.store import CacheMismatchError, CorruptCacheError, TeacherCache

GROUPINGS = ("label", "prediction")
DIRECTIONS = ("pca", "random")


@dataclass
class FitOptions:
    """How the pseudo-subclasses are built; every field is part of the projections' identity."""

    num_subclasses: int = 4
    grouping: str = "label"  # "label": ground truth; "prediction": teacher argmax (needed for unlabelled data)
    null_space: bool = True  # False = the `pca` ablation
    rotate: bool = True  # False = the `no rotation` ablation
    seed: int = 0
    directions: str = "pca"  # "random" = the random-projection ablation (seeded Gaussian directions)
    num_members: int = 1  # K > 1: an ensemble of K independent sets of S random directions per class

    def __post_init__(self) -> None:
        if self.num_subclasses < 1:
            raise ValueError(f"num_subclasses must be >= 1, got {self.num_subclasses}.")
        if self.grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, got '{self.grouping}'.")
        if self.directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got '{self.directions}'.")
        if self.num_members < 1 or (self.num_members > 1 and self.directions != "random"):
            raise ValueError("num_members > 1 (an ensemble) needs directions='random'; PCA directions are unique.")

    def slug(self) -> str:
        kind = "" if self.directions == "pca" else f"-random{self.num_members}"
        return (
            f"S{self.num_subclasses}-{self.grouping}-{'null' if self.null_space else 'full'}"
            f"-{'rot' if self.rotate else 'norot'}{kind}-seed{self.seed}"
        )


@dataclass
class SubclassProjections:
    null_basis: torch.Tensor  # [D, r] orthonormal basis of W's row space (r = 0 when null_space=False)
    components: torch.Tensor  # [C, D, S] rotated principal directions of each class
    means: torch.Tensor  # [C, D] class means of the projected embeddings
    scales: torch.Tensor  # [C, S] within-class standard deviation of each score
    options: FitOptions
    info: dict = field(default_factory=dict)  # cache fingerprint, class counts, explained variance

    @property
    def num_classes(self) -> int:
        return self.components.shape[0]

    @property
    def num_subclasses(self) -> int:
        """S, pseudo-subclasses per class in each member (an ensemble has K such sets)."""
        return self.columns // self.num_members

    @property
    def num_members(self) -> int:
        """K, ensemble members (1 = no ensemble)."""
        return self.options.num_members

    @property
    def columns(self) -> int:
        """Score columns per class, S·K: the width of the student's subclass head per class."""
        return self.components.shape[2]

    def subclass_scores(self, hidden: torch.Tensor, example_ids=None) -> torch.Tensor:
        """The scorer interface shared with k-means and oracle subclasses (which may need the example ids)."""
        return self.scores(hidden)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        basis = self.null_basis.to(hidden)
        return hidden - (hidden @ basis) @ basis.T if basis.numel() else hidden

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Standardised pseudo-subclass scores z [B, C, S] of every example for every class."""
        hidden = hidden.float()
        projected = self.project(hidden)
        components = self.components.to(hidden)
        raw = torch.einsum("bd,cds->bcs", projected, components)
        offset = torch.einsum("cd,cds->cs", self.means.to(hidden), components)
        return (raw - offset) / self.scales.to(hidden)

    def to(self, device) -> SubclassProjections:
        return SubclassProjections(
            self.null_basis.to(device),
            self.components.to(device),
            self.means.to(device),
            self.scales.to(device),
            self.options,
            self.info,
        )

    def save(self, path: str) -> None:
        """Write the tensors (safetensors) and a readable JSON beside them, each atomically; JSON last."""
        tensors = {
            "null_basis": self.null_basis,
            "components": self.components,
            "means": self.means,
            "scales": self.scales,
        }
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}
        write_atomic(path, lambda p: save_file(tensors, p, metadata={"format": "hf_lelp.methods.projections/1"}))
        payload = {"options": self.options.__dict__, "info": self.info, "sha256": sha256_file(path)}
        write_atomic(_json_path(path), lambda p: _dump(payload, p))

    @classmethod
    def load(cls, path: str, cache_fingerprint: dict | None = None) -> SubclassProjections:
        if not os.path.isfile(_json_path(path)):
            raise FileNotFoundError(f"No finished projections at {path} ({_json_path(path)} is missing).")
        payload = _read_payload(path)
        if not os.path.isfile(path) or sha256_file(path) != payload["sha256"]:
            raise CorruptCacheError(
                f"Projections file {path} is missing or corrupt (sha256 mismatch); delete it and its .json to refit."
            )
        if cache_fingerprint is not None:
            check_fingerprint(payload["info"]["cache_fingerprint"], cache_fingerprint, "projections file", path)
        tensors = load_file(path)
        return cls(
            tensors["null_basis"],
            tensors["components"],
            tensors["means"],
            tensors["scales"],
            FitOptions(**payload["options"]),
            payload["info"],
        )


def _read_payload(path: str) -> dict:
    """The JSON beside a projections file; a garbled one (e.g. a hand edit) is refused with the way out."""
    json_path = _json_path(path)
    refit = f"delete it and {path} to refit the projections"
    try:
        with open(json_path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except json.JSONDecodeError as error:
        raise CorruptCacheError(
            f"Projections metadata {json_path} is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}): {refit}."
        ) from error
    except UnicodeDecodeError as error:
        raise CorruptCacheError(f"Projections metadata {json_path} is not UTF-8 text: {refit}.") from error
    missing = [key for key in ("options", "info", "sha256") if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise CorruptCacheError(f"Projections metadata {json_path} lacks {missing}: {refit}.")
    return payload


def _json_path(path: str) -> str:
    return os.path.splitext(path)[0] + ".json"


def _dump(payload: dict, path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)


def row_space_basis(weight: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis [D, rank] of the span of W's rows, so that I - B Bᵀ = I - Wᵀ(WWᵀ)⁺W."""
    u, singular, _ = torch.linalg.svd(weight.double().T, full_matrices=False)
    rank = int((singular > singular.max() * 1e-10).sum())
    return u[:, :rank]


def random_rotation(size: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed orthogonal matrix (QR of a Gaussian with the sign of R's diagonal fixed)."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def random_null_space_directions(
    d: int, count: int, basis: torch.Tensor, members: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` random unit directions [D, count] inside the null space, orthonormal within each member's group."""
    gaussian = torch.randn(d, count, generator=generator, dtype=torch.float64)
    if basis.numel():
        gaussian = gaussian - basis @ (basis.T @ gaussian)
    groups = [torch.linalg.qr(group)[0] for group in gaussian.chunk(members, dim=1)]
    return torch.cat(groups, dim=1)


def class_groups(cache_labels: torch.Tensor, cache_logits: torch.Tensor, grouping: str) -> torch.Tensor:
    if grouping == "prediction":
        return cache_logits.argmax(dim=1)
    if bool((cache_labels < 0).any()):
        raise ValueError(
            "The transfer set has unlabelled examples: fit with grouping='prediction' (--grouping "
            "prediction), which groups examples by the teacher's predicted class."
        )
    return cache_labels


def fit_projections(
    cache: TeacherCache,
    options: FitOptions | None = None,
    chunk_size: int = 32768,
    class_names: list[str] | None = None,
) -> SubclassProjections:
    """One streaming pass over the cache, then C eigendecompositions. O(C·D²) memory, never O(N·D)."""
    options = options or FitOptions()
    c, d, s = cache.num_labels, cache.hidden_size, options.num_subclasses
    members = options.num_members
    names = class_names or cache.fingerprint.get("label_names") or [str(i) for i in range(c)]
    basis = row_space_basis(cache.weight) if options.null_space else torch.zeros(d, 0, dtype=torch.float64)
    available = d - basis.shape[1]
    if available < s:
        raise ValueError(
            f"Embedding size D={d} leaves {available} dimensions outside the teacher head's {basis.shape[1]} "
            f"directions, fewer than S={s} pseudo-subclasses (LELP needs D >= C + S). Lower --num_subclasses to at "
            f"most {available}."
        )
    counts = torch.zeros(c, dtype=torch.float64)
    shifts = torch.zeros(c, d, dtype=torch.float64)
    sums = torch.zeros(c, d, dtype=torch.float64)
    second = torch.zeros(c, d, d, dtype=torch.float64)
    for hidden, logits, labels in cache.iter_chunks(chunk_size):
        projected = hidden.double()
        if basis.numel():
            projected = projected - (projected @ basis) @ basis.T
        groups = class_groups(labels, logits, options.grouping)
        for k in range(c):
            rows = projected[groups == k]
            if not len(rows):
                continue
            if counts[k] == 0:
                shifts[k] = rows[0]  # shifted sums keep the covariance accurate when |mean| >> spread
            centred = rows - shifts[k]
            counts[k] += len(rows)
            sums[k] += centred.sum(dim=0)
            second[k] += centred.T @ centred
    too_few = {names[k]: int(counts[k]) for k in range(c) if counts[k] < s + 1}
    if too_few:
        raise ValueError(
            f"Classes with fewer than S + 1 = {s + 1} examples (grouped by {options.grouping}): {too_few}. Per-class "
            "PCA needs at least S + 1 examples per class: add data, lower --num_subclasses, or check the labels."
        )
    generator = torch.Generator().manual_seed(options.seed)
    components, means, scales, explained = [], [], [], []
    for k in range(c):
        mean_shifted = sums[k] / counts[k]
        covariance = second[k] / counts[k] - torch.outer(mean_shifted, mean_shifted)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
        if options.directions == "random":
            directions = random_null_space_directions(d, s * members, basis, members, generator)
        else:
            top = eigenvectors.flip(1)[:, :s]
            rotation = random_rotation(s, generator) if options.rotate else torch.eye(s, dtype=torch.float64)
            directions = top @ rotation
        components.append(directions)
        # Variance of each score: diag(Vᵀ Σ V) (for PCA directions, diag(Qᵀ Λ Q)).
        variances = ((covariance @ directions) * directions).sum(dim=0).clamp_min(0)
        scales.append(variances.sqrt().clamp_min(1e-8 * float(eigenvalues.abs().max()) ** 0.5 + 1e-12))
        means.append(mean_shifted + shifts[k])
        total = float(eigenvalues.clamp_min(0).sum())
        explained.append(float(variances.sum()) / members / total if total > 0 else 0.0)
    info = {
        "cache_fingerprint": cache.fingerprint,
        "class_counts": {names[k]: int(counts[k]) for k in range(c)},
        "explained_variance_ratio": {names[k]: explained[k] for k in range(c)},
        "null_space_dim": available,
    }
    return SubclassProjections(
        basis.float(),
        torch.stack(components).float(),
        torch.stack(means).float(),
        torch.stack(scales).float(),
        options,
        info,
    )


def load_or_fit_projections(cache: TeacherCache, options: FitOptions, path: str | None = None) -> SubclassProjections:
    """Reuse projections saved for this cache and these options, else fit and save them (atomically)."""
    path = path or os.path.join(cache.path, f"projections-{options.slug()}.safetensors")
    if os.path.isfile(_json_path(path)):
        projections = SubclassProjections.load(path, cache.fingerprint)
        if projections.options != options:
            raise CacheMismatchError(
                f"Projections at {path} were fitted with {projections.options}, this run asks "
                f"for {options}. Use another --projections_path or delete the file."
            )
        return projections
    projections = fit_projections(cache, options)
    projections.save(path)
    return projections
