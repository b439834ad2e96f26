"""LELPConfig: TrainingArguments plus the distillation options (HfArgumentParser turns it into CLI flags).

Defaults: α = 0 (no hard-label term) comes from the paper. S, β and τ are in an appendix we could not read, so our
defaults (S = 4, β = 1 on standardised scores, τ = 1) are marked (ours) and meant to be checked on validation data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from .projections import GROUPINGS, FitOptions

# Pseudo-subclass methods: LELP and the ablations that change where the subclasses come from.
PROJECTION_METHODS = ("lelp", "pca", "no_rotation", "random", "random_ensemble")
SUBCLASS_METHODS = (*PROJECTION_METHODS, "kmeans", "oracle")
# Embedding baselines: KD on the cached logits plus a feature term on the cached teacher embedding.
FEATURE_METHODS = ("fitnet", "rkd", "pkt")
METHODS = (*SUBCLASS_METHODS, "kd", *FEATURE_METHODS, "ce")
METHOD_HELP = {
    "lelp": "pseudo-subclass targets from null-space per-class PCA (the paper)",
    "pca": "ablation: per-class PCA without the null-space projection",
    "no_rotation": "ablation: LELP without the random rotation",
    "random": "ablation: random null-space directions instead of principal ones",
    "random_ensemble": "ablation: mean loss over --ensemble_size independent random projections",
    "kmeans": "ablation: S k-means clusters per class (null space) as subclasses",
    "oracle": "known fine labels (--fine_label_column) as subclasses: an upper bound",
    "kd": "Hinton KD on the cached teacher logits",
    "fitnet": "KD + MSE between a learned regression of the student features and the teacher embedding",
    "rkd": "KD + relational distance and angle losses between student features and teacher embeddings",
    "pkt": "KD + probabilistic knowledge transfer (cosine-similarity distributions)",
    "ce": "labels only, no teacher",
}


@dataclass
class LELPConfig(TrainingArguments):
    method: str = field(
        default="lelp",
        metadata={
            "help": "Distillation method: "
            + "; ".join(f"'{name}': {text}" for name, text in METHOD_HELP.items())
            + ". Every method except 'ce' reads the teacher from the cache.",
            "choices": METHODS,  # HfArgumentParser passes it to argparse: --help lists them, typos fail early
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
    ensemble_size: int = field(
        default=4, metadata={"help": "K, random projections averaged by --method random_ensemble (ours)."}
    )
    auto_hparams: bool = field(
        default=False,
        metadata={
            "help": "Choose S and β on the validation split before training (successive halving over "
            "--auto_num_subclasses × --auto_subclass_temperatures, ours). Needs a labelled validation split "
            "(--validation_from_train N carves one)."
        },
    )
    auto_num_subclasses: list[int] = field(
        default_factory=lambda: [2, 4, 8], metadata={"help": "S candidates of --auto_hparams."}
    )
    auto_subclass_temperatures: list[float] = field(
        default_factory=lambda: [0.5, 1.0, 2.0], metadata={"help": "β candidates of --auto_hparams."}
    )
    auto_budget_epochs: float = field(
        default=1.0,
        metadata={"help": "Epochs per candidate in the first round of --auto_hparams (doubled in round two)."},
    )
    auto_keep: int = field(default=3, metadata={"help": "Candidates kept for round two of --auto_hparams."})
    feature_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the feature term of fitnet/rkd/pkt added to the KD loss (ours; choose on validation)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if self.dataloader_pin_memory and not _has_accelerator(self.use_cpu):
            # Pinning needs an accelerator; without one torch only warns at every dataloader (a no-op otherwise).
            self.dataloader_pin_memory = False
        if self.method not in METHODS:
            raise ValueError(f"--method must be one of {METHODS}, got '{self.method}'.")
        if self.temperature <= 0 or self.subclass_temperature <= 0:
            raise ValueError("--temperature and --subclass_temperature must be > 0.")
        if not 0.0 <= self.hard_label_weight <= 1.0:
            raise ValueError(f"--hard_label_weight must lie in [0, 1], got {self.hard_label_weight}.")
        if self.per_device_train_batch_size < 1 or self.per_device_eval_batch_size < 1:
            raise ValueError(
                "--per_device_train_batch_size and --per_device_eval_batch_size must be >= 1, got "
                f"{self.per_device_train_batch_size} and {self.per_device_eval_batch_size}."
            )
        if self.method in SUBCLASS_METHODS and self.method != "oracle" and self.num_subclasses < 1:
            raise ValueError(f"--num_subclasses (S) must be >= 1 ({self.method}), got {self.num_subclasses}.")
        if self.method in PROJECTION_METHODS:
            self.fit_options()  # validates num_subclasses and grouping
        if self.auto_hparams and self.method not in SUBCLASS_METHODS or self.auto_hparams and self.method == "oracle":
            raise ValueError(
                f"--auto_hparams chooses S and β, which --method {self.method} does not have: use a pseudo-subclass "
                "method such as lelp, or drop --auto_hparams."
            )
        if self.label_smoothing_factor > 0 and self.method != "ce" and self.hard_label_weight == 0:
            # The Trainer's label smoother acts on a label loss; soft targets have no labels to smooth.
            raise ValueError(
                f"--label_smoothing_factor {self.label_smoothing_factor} smooths hard labels, but --method "
                f"{self.method} with --hard_label_weight 0 has no label loss. Use it with --method ce or with "
                "--hard_label_weight > 0, or drop it (a distillation temperature, --temperature, softens targets)."
            )
        if self.ensemble_size < 1 or self.feature_loss_weight < 0:
            raise ValueError("--ensemble_size must be >= 1 and --feature_loss_weight >= 0.")

    @property
    def uses_teacher(self) -> bool:
        return self.method != "ce"

    @property
    def subclass_columns(self) -> int:
        """Subclass logits per class that the student's extra head needs (1 = no extra head)."""
        if self.method not in SUBCLASS_METHODS:
            return 1
        return self.num_subclasses * (self.ensemble_size if self.method == "random_ensemble" else 1)

    def fit_options(self) -> FitOptions:
        """Projection options of this method: the ablations switch off one step of LELP each."""
        return FitOptions(
            num_subclasses=self.num_subclasses,
            grouping=self.grouping,
            null_space=self.null_space and self.method != "pca",
            rotate=self.rotate and self.method != "no_rotation",
            seed=self.projection_seed,
            directions="random" if self.method in ("random", "random_ensemble") else "pca",
            num_members=self.ensemble_size if self.method == "random_ensemble" else 1,
        )


def _has_accelerator(use_cpu: bool) -> bool:
    if use_cpu:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()
