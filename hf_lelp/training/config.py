"""LELPConfig: TrainingArguments plus the distillation options (HfArgumentParser turns it into CLI flags).

Defaults: α = 0 (no hard-label term) comes from the paper. S, β and τ are in an appendix we could not read, so our
defaults (S = 4, β = 1 on standardised scores, τ = 1) are marked (ours) and meant to be checked on validation data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from hf_lelp.base.errors import UserError
from hf_lelp.base.extras import check_report_to
from hf_lelp.base.validation import check_option_values
from hf_lelp.methods.projections import GROUPINGS
from hf_lelp.methods.registry import METHOD_FLAG, Method, get_method
from hf_lelp.methods.student_heads import STUDENT_HEADS, StudentHead, get_student_head


@dataclass
class LELPConfig(TrainingArguments):
    # Help and choices come from the registry and stay current when a method is registered later.
    method: str = field(default="lelp", metadata=METHOD_FLAG)
    num_subclasses: int = field(
        default=4,
        metadata={
            "help": "S, pseudo-subclasses per class (per ensemble member for random_ensemble; ours: the paper's "
            "value is not public). Needs D >= C + S and at least S + 1 examples per class."
        },
    )
    subclass_temperature: float = field(
        default=1.0,
        metadata={
            "help": "β, temperature of the softmax over a class's S standardised scores (ours). Lower = sharper."
        },
    )
    within_class_weight: float = field(
        default=1.0,
        metadata={
            "help": "λ: with the factorised head the loss is KD's class term + λ · the within-class term (its exact "
            "split by the chain rule of KL); 1 is the paper's loss. Lower it when the within-class term, × τ² like "
            "the rest, swamps the class term (benchmarks/RESULTS.md, 'How much can subclasses add?')."
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
    subclass_head: str = field(
        default="factorized",
        metadata={
            "help": "The student's C·S distribution. 'factorized' (ours, default): the model's own C-class layer "
            "times a within-class softmax of a second layer; the export drops that layer and is exact. 'flat' "
            "(the paper's): one C·S layer, class probability = sum of its subclass probabilities; the exported "
            "C-class layer is trained alongside (on detached features) to follow it, and export_agreement "
            "measures how closely it does.",
            "choices": list(STUDENT_HEADS),
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
        default=4,
        metadata={"help": "K, random projections (of S directions each) averaged by --method random_ensemble (ours)."},
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
        drop_masked_tokens(self)
        check_option_values(self)  # before TrainingArguments reads them: NaN passes every `<=` range check
        check_report_to(self.report_to)  # a missing integration names its extra, in Python as on the CLI
        super().__post_init__()
        if self.dataloader_pin_memory and not _has_accelerator(self.use_cpu):
            # Pinning needs an accelerator; without one torch only warns at every dataloader (a no-op otherwise).
            self.dataloader_pin_memory = False
        method = self.method_spec  # an unknown name fails here, with the registered ones listed
        check_trains_at_all(self)
        if self.temperature <= 0 or self.subclass_temperature <= 0:
            raise ValueError("--temperature and --subclass_temperature must be > 0.")
        head = get_student_head(self.subclass_head)  # an unknown layout fails here, with the known ones listed
        if self.within_class_weight < 0:
            raise ValueError(f"--within_class_weight must be >= 0, got {self.within_class_weight}.")
        if self.within_class_weight != 1.0 and head.predicts_with_subclasses:
            raise ValueError(
                f"--within_class_weight {self.within_class_weight} splits the factorised head's loss; the paper's "
                f"--subclass_head {self.subclass_head} has one C·S softmax with no separate class term. Use "
                "--subclass_head factorized, or drop --within_class_weight."
            )
        if not 0.0 <= self.hard_label_weight <= 1.0:
            raise ValueError(f"--hard_label_weight must lie in [0, 1], got {self.hard_label_weight}.")
        if self.per_device_train_batch_size < 1 or self.per_device_eval_batch_size < 1:
            raise ValueError(
                "--per_device_train_batch_size and --per_device_eval_batch_size must be >= 1, got "
                f"{self.per_device_train_batch_size} and {self.per_device_eval_batch_size}."
            )
        if self.ensemble_size < 1 or self.feature_loss_weight < 0:
            raise ValueError("--ensemble_size must be >= 1 and --feature_loss_weight >= 0.")
        if method.chooses_num_subclasses and self.num_subclasses < 1:
            raise ValueError(f"--num_subclasses (S) must be >= 1 ({self.method}), got {self.num_subclasses}.")
        method.fit_options(self)  # projection methods: validates num_subclasses and grouping
        if self.auto_hparams and not method.chooses_num_subclasses:
            raise ValueError(
                f"--auto_hparams chooses S and β, which --method {self.method} does not have: use a pseudo-subclass "
                "method such as lelp, or drop --auto_hparams."
            )
        if self.label_smoothing_factor > 0 and method.uses_teacher and self.hard_label_weight == 0:
            # The Trainer's label smoother acts on a label loss; soft targets have no labels to smooth.
            raise ValueError(
                f"--label_smoothing_factor {self.label_smoothing_factor} smooths hard labels, but --method "
                f"{self.method} with --hard_label_weight 0 has no label loss. Use it with --method ce or with "
                "--hard_label_weight > 0, or drop it (a distillation temperature, --temperature, softens targets)."
            )

    @property
    def head_spec(self) -> StudentHead:
        """The layout of --subclass_head (hf_lelp.methods.student_heads)."""
        return get_student_head(self.subclass_head)

    @property
    def method_spec(self) -> Method:
        """The registry entry of --method (hf_lelp.methods.registry)."""
        return get_method(self.method)

    @property
    def uses_teacher(self) -> bool:
        return self.method_spec.uses_teacher


def check_trains_at_all(args: TrainingArguments) -> None:
    """Zero epochs (with no --max_steps) would export the untrained student as if it were distilled."""
    if args.max_steps <= 0 and args.num_train_epochs <= 0:
        raise UserError(
            f"--num_train_epochs {args.num_train_epochs} (with no --max_steps) trains for zero steps and would "
            "export the untrained student: set --num_train_epochs above 0 or --max_steps to 1 or more, on the "
            "command line or in the config file."
        )


def _has_accelerator(use_cpu: bool) -> bool:
    if use_cpu:
        return False
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def drop_masked_tokens(args) -> None:
    """`TrainingArguments.to_dict()` masks every `*_token` value as `<NAME>`; `LELPConfig(**args.to_dict())` must
    not carry that placeholder as a token (it would be sent to the Hub and refused there). None falls back to the
    login token (`hf auth login`, HF_TOKEN); pass hub_token= again to use another one."""
    for name in [name for name in vars(args) if name.endswith("_token")]:
        if getattr(args, name) == f"<{name.upper()}>":
            setattr(args, name, None)
