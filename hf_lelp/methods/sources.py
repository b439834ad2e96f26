"""Pseudo-subclass sources: what a subclass method builds from the teacher cache (projections, k-means, oracle
labels), and the protocol that every source offers the loss and the student's subclass head."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from hf_lelp.methods.projections import FitOptions, fit_projections, load_or_fit_projections
from hf_lelp.methods.subclasses import fit_kmeans_subclasses, oracle_subclasses

if TYPE_CHECKING:
    from hf_lelp.cache.store import TeacherCache

# The run's options: an LELPConfig (hf_lelp.training.config), read by attribute. Typed loosely so that the
# methods layer does not import the training layer that builds on it.
RunOptions = Any


class SubclassSource(Protocol):
    """What every pseudo-subclass source offers (SubclassProjections, KMeansSubclasses, OracleSubclasses)."""

    num_subclasses: int  # S, per class and per member
    num_members: int  # K, ensemble members (1 = no ensemble)
    columns: int  # S·K score columns per class: the width of the student's subclass head per class

    def subclass_scores(self, hidden: torch.Tensor, example_ids=None) -> torch.Tensor: ...  # [B, C, S·K]

    def to(self, device) -> SubclassSource: ...


# --- Pseudo-subclass sources: how a method builds its subclasses from the cache.


@dataclass
class SubclassInputs:
    """What a pseudo-subclass source is built from."""

    cache: TeacherCache
    args: RunOptions
    fine_labels: Mapping[int, str] | None = None  # example id -> known fine label (the oracle's subclasses)
    save: bool = False  # keep fitted projections beside the cache (or at projections_path) and reuse them
    projections_path: str | None = None


class SubclassRecipe:
    """How a method builds its pseudo-subclass source: `recipe(SubclassInputs) -> SubclassSource`."""

    chooses_num_subclasses = True  # S (and β) are knobs; False where the source fixes S itself (the oracle)

    def fit_options(self, args: RunOptions) -> FitOptions | None:
        """The projection options, for sources that are LELP projections (None otherwise)."""
        return None

    def num_members(self, args: RunOptions) -> int:
        return 1

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        raise NotImplementedError


@dataclass(frozen=True)
class Projections(SubclassRecipe):
    """LELP's projections (projections.py); each ablation switches off one step through its overrides."""

    null_space: bool = True
    rotate: bool = True
    directions: str = "pca"
    ensemble: bool = False  # K = --ensemble_size independent sets of S random directions

    def fit_options(self, args: RunOptions) -> FitOptions:
        return FitOptions(
            num_subclasses=args.num_subclasses,
            grouping=args.grouping,
            null_space=args.null_space and self.null_space,
            rotate=args.rotate and self.rotate,
            seed=args.projection_seed,
            directions=self.directions,
            num_members=self.num_members(args),
        )

    def num_members(self, args: RunOptions) -> int:
        return args.ensemble_size if self.ensemble else 1

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        options = self.fit_options(inputs.args)
        if not inputs.save:
            return fit_projections(inputs.cache, options)
        # The main process fits and saves; the others then load the same file.
        with inputs.args.distributed_state.main_process_first():
            return load_or_fit_projections(inputs.cache, options, inputs.projections_path)


@dataclass(frozen=True)
class KMeans(SubclassRecipe):
    """S k-means clusters per class in the null space (subclasses.py)."""

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        args = inputs.args
        # Deterministic (seeded) and cheap next to training, so every process fits it itself.
        return fit_kmeans_subclasses(inputs.cache, args.num_subclasses, args.grouping, args.projection_seed)


@dataclass(frozen=True)
class Oracle(SubclassRecipe):
    """Known fine labels as subclasses: S is the largest number of fine labels in a class."""

    chooses_num_subclasses = False

    def __call__(self, inputs: SubclassInputs) -> SubclassSource:
        if inputs.fine_labels is None:
            raise ValueError(
                "--method oracle needs known fine labels: pass --fine_label_column (or use 20newsgroups_binary / "
                "20newsgroups_4class, which have them)."
            )
        cache = inputs.cache
        ids = np.asarray(cache.example_ids)
        missing = [int(i) for i in ids if int(i) not in inputs.fine_labels]
        if missing:
            raise KeyError(
                f"--method oracle: {len(missing)} cached examples have no fine label (e.g. id {missing[0]})."
            )
        fine = [str(inputs.fine_labels[int(i)]) for i in ids]
        return oracle_subclasses(ids, np.asarray(cache.labels), fine, cache.num_labels)
