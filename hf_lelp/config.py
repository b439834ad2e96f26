"""LELPConfig: TrainingArguments plus the distillation options (HfArgumentParser turns it into CLI flags).

Defaults: α = 0 (no hard-label term) comes from the paper. S, β and τ are in an appendix we could not read, so our
defaults (S = 4, β = 1 on standardised scores, τ = 1) are marked (ours) and meant to be checked on validation data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .projections import GROUPINGS, FitOptions

METHODS = ("lelp", "kd", "ce")


@dataclass
class LELPConfig(TrainingArguments):
    method: str = field(
        default="lelp",
        metadata={
            "help": f"Distillation method, one of {METHODS}: 'lelp' (pseudo-subclass targets), 'kd' (Hinton KD on the "
            "cached teacher logits), 'ce' (labels only, no teacher)."
        },
    )
    num_subclasses: int = field(
        default=4,
        metadata={
            "help": "S, pseudo-subclasses per class (ours: the paper's value is not public). Needs D >= C + S and at "
            "least S + 1 examples per class."
        },
    )
    subclass_temperature: float = field(
        default=1.0,
        metadata={
            "help": "β, temperature of the softmax over a class's S standardised scores (ours). Lower = sharper."
        },
    )
    temperature: float = field(
        default=1.0, metadata={"help": "τ, distillation temperature applied to teacher and student logits (ours)."}
    )
    hard_label_weight: float = field(
        default=0.0,
        metadata={
            "help": "α in (1 - α)·distillation + α·CE(labels). The paper uses 0; > 0 needs labelled transfer data."
        },
    )
    scale_by_temperature_squared: bool = field(
        default=True,
        metadata={"help": "Multiply the soft loss by τ² (Hinton) so gradient size does not depend on τ (ours)."},
    )
    grouping: str = field(
        default="label",
        metadata={
            "help": f"How examples are grouped for per-class PCA, one of {GROUPINGS}: ground-truth 'label' (ours, the "
            "default when labels exist) or the teacher's 'prediction' (needed for unlabelled transfer sets)."
        },
    )
    null_space: bool = field(
        default=True,
        metadata={
            "help": "Project onto the null space of the teacher's output layer before PCA (paper). False = ablation."
        },
    )
    rotate: bool = field(
        default=True,
        metadata={"help": "Randomly rotate each class's S principal directions (paper). False = ablation."},
    )
    projection_seed: int = field(default=0, metadata={"help": "Seed of the random rotations (saved with them)."})

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got '{self.method}'.")
        if self.temperature <= 0 or self.subclass_temperature <= 0:
            raise ValueError("--temperature and --subclass_temperature must be > 0.")
        if not 0.0 <= self.hard_label_weight <= 1.0:
            raise ValueError(f"--hard_label_weight must lie in [0, 1], got {self.hard_label_weight}.")
        if self.method == "lelp":
            self.fit_options()  # validates num_subclasses and grouping

    def fit_options(self) -> FitOptions:
        return FitOptions(
            num_subclasses=self.num_subclasses,
            grouping=self.grouping,
            null_space=self.null_space,
            rotate=self.rotate,
            seed=self.projection_seed,
        )
