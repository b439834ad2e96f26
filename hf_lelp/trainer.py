"""LELPTrainer: a `transformers.Trainer` whose loss reads the teacher from a cache, never from a teacher model."""

from __future__ import annotations

import json
import logging
import os
import shutil

import torch
from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .cache import TeacherCache
from .card import trainer_card_context, write_model_card
from .config import FEATURE_METHODS, SUBCLASS_METHODS, LELPConfig
from .data import EXAMPLE_ID
from .io_utils import write_json_atomic
from .losses import ce_loss, fitnet_loss, kd_loss, lelp_loss, lelp_targets, pkt_loss, rkd_loss
from .modeling import (
    FEATURE_REGRESSOR,
    STUDENT_FEATURES,
    SUBCLASS_HEAD_FILE,
    SUBCLASS_LOGITS,
    auxiliary_module,
    is_peft_model,
    load_auxiliary,
    save_auxiliary,
    split_auxiliary,
    subclass_logits_of,
)

logger = logging.getLogger(__name__)


CHECKPOINT_MARKER = "lelp_checkpoint_complete.json"


def last_complete_checkpoint(output_dir: str) -> str:
    """The newest checkpoint folder whose completion marker exists (incomplete ones are skipped, with a warning)."""
    folders = (
        [name for name in os.listdir(output_dir) if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-")]
        if (os.path.isdir(output_dir))
        else []
    )
    for name in sorted(
        folders, key=lambda n: int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else -1, reverse=True
    ):
        if os.path.isfile(os.path.join(output_dir, name, CHECKPOINT_MARKER)):
            return os.path.join(output_dir, name)
        logger.warning("Skipping incomplete checkpoint %s (interrupted while saving).", name)
    raise ValueError(f"No complete checkpoint in {output_dir} to resume from.")


class LELPTrainer(Trainer):
    """Trains a student on pseudo-subclass targets built per batch from cached teacher embeddings.

    Each training batch carries `example_id`; the trainer reads h and the teacher logits of those ids from the
    memory-mapped cache, forms the C·S targets with the fitted projections, and computes the loss in float32.
    Evaluation returns class-level logits, so `compute_metrics` sees C classes; the eval loss is hard-label CE
    (the cache covers the transfer set only).
    """

    _paper = {
        "title": "Linear Projections of Teacher Embeddings for Few-Class Distillation",
        "id": "2409.20449",
        "citation": "@article{loo2024lelp, title={Linear Projections of Teacher Embeddings for Few-Class "
        "Distillation}, author={Loo, Noel and Iliopoulos, Fotis and Hu, Wei and Vee, Erik}, "
        "journal={arXiv preprint arXiv:2409.20449}, year={2024}}",
    }
    # Our loss is a per-batch mean: let the Trainer divide by the accumulation steps (transformers >= 5.19).
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model=None,
        args: LELPConfig | None = None,
        teacher_cache: TeacherCache | None = None,
        projections=None,
        card_context: dict | None = None,
        **kwargs,
    ):
        if args is None or not isinstance(args, LELPConfig):
            raise TypeError("LELPTrainer needs args=LELPConfig(...) (TrainingArguments plus the LELP options).")
        if args.uses_teacher and teacher_cache is None:
            raise ValueError(f"--method {args.method} needs teacher_cache= (build it with build_teacher_cache).")
        if args.method in SUBCLASS_METHODS and projections is None:
            raise ValueError(
                f"--method {args.method} needs projections= (pseudo-subclasses: fit_projections, "
                "fit_kmeans_subclasses or oracle_subclasses; see workflow.build_subclasses)."
            )
        self.teacher_cache = teacher_cache
        self.projections = projections  # any pseudo-subclass source with `subclass_scores(hidden, example_ids)`
        self.card_context = card_context  # static model-card facts; None = no card written
        self.final_results: dict | None = None
        self.num_labels = teacher_cache.num_labels if teacher_cache else model.config.num_labels
        super().__init__(model=model, args=args, **kwargs)
        # Older transformers (< 5.19) only know this switch: a per-batch-mean loss is not pre-scaled for GA.
        self.model_accepts_loss_kwargs = False

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if EXAMPLE_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, EXAMPLE_ID]

    def _teacher_batch(self, example_ids: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logits = self.teacher_cache.lookup(example_ids.detach().cpu().numpy())
        return hidden.to(device, non_blocking=True), logits.to(device, non_blocking=True)

    def distillation_loss(self, class_logits, subclass_logits, example_ids, labels, features=None) -> torch.Tensor:
        args: LELPConfig = self.args
        if args.method == "ce":
            return ce_loss(class_logits, labels)
        if example_ids is None:
            raise KeyError(f"Training batches need an '{EXAMPLE_ID}' column to find the cached teacher outputs.")
        hidden, teacher_logits = self._teacher_batch(example_ids, class_logits.device)
        if args.method in SUBCLASS_METHODS:
            soft = self.subclass_loss(class_logits, subclass_logits, hidden, teacher_logits, example_ids)
        else:
            soft = kd_loss(class_logits, teacher_logits, args.temperature, args.scale_by_temperature_squared)
        if args.method in FEATURE_METHODS:
            soft = soft + args.feature_loss_weight * self.feature_loss(features, hidden)
        if args.hard_label_weight > 0:
            if labels is None or not bool((labels >= 0).any()):
                raise ValueError(
                    "--hard_label_weight > 0 needs labels in the transfer set; set it to 0 (as the "
                    "paper does) for unlabelled data."
                )
            return (1 - args.hard_label_weight) * soft + args.hard_label_weight * ce_loss(class_logits, labels)
        return soft

    def subclass_loss(self, class_logits, subclass_logits, hidden, teacher_logits, example_ids) -> torch.Tensor:
        args: LELPConfig = self.args
        source = self.projections
        if getattr(self, "_subclass_device", None) != class_logits.device:
            source = self.projections = source.to(class_logits.device)
            self._subclass_device = class_logits.device
        scores = source.subclass_scores(hidden, example_ids)
        targets = lelp_targets(
            scores, teacher_logits, args.temperature, args.subclass_temperature, num_members=source.num_members
        )
        if subclass_logits is None and scores.shape[-1] > 1:
            raise ValueError(
                f"--method {args.method} has {scores.shape[-1]} subclass columns but the student has no subclass head "
                "(attach_subclass_head with that many columns)."
            )
        return lelp_loss(
            class_logits,
            subclass_logits,
            targets,
            args.temperature,
            args.scale_by_temperature_squared,
            num_members=source.num_members,
        )

    def feature_loss(self, features: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        method = self.args.method
        if method == "fitnet":
            regressor = auxiliary_module(self.model, FEATURE_REGRESSOR)
            if regressor is None:
                raise ValueError("--method fitnet needs the regressor: attach_feature_regressor(student, ...).")
            return fitnet_loss(regressor(features), hidden)
        if method == "rkd":
            return rkd_loss(features, hidden)
        return pkt_loss(features, hidden)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        example_ids = inputs.pop(EXAMPLE_ID, None)
        labels = inputs.pop("labels", None)
        wants_features = model.training and self.args.method in FEATURE_METHODS
        with subclass_logits_of(model, self.num_labels, with_features=wants_features):
            model_outputs = model(**inputs)
        class_logits = model_outputs.logits
        # The loss runs in float32 whatever the autocast dtype of the forward pass.
        with torch.autocast(device_type=class_logits.device.type, enabled=False):
            if model.training:
                loss = self.distillation_loss(
                    class_logits,
                    model_outputs.get(SUBCLASS_LOGITS),
                    example_ids,
                    labels,
                    features=model_outputs.get(STUDENT_FEATURES),
                )
            else:
                loss = ce_loss(class_logits, labels) if labels is not None else None
        outputs = SequenceClassifierOutput(loss=loss, logits=class_logits)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Without labels the Trainer calls model(**inputs) itself: the id column must not reach the model.
        if "labels" not in inputs:
            inputs = {k: v for k, v in inputs.items() if k != EXAMPLE_ID}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Every save (checkpoints included) is a plain C-class model plus the subclass head as a side file."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            # An adapter keeps its trained classifier and subclass head inside (modules_to_save).
            base, auxiliary = state_dict, {}
        else:
            base, auxiliary = split_auxiliary(state_dict if state_dict is not None else model.state_dict())
        super()._save(output_dir, state_dict=base)
        if self.args.should_save:
            save_auxiliary(auxiliary, output_dir)
            write_json_atomic(os.path.join(output_dir, "lelp_config.json"), self.lelp_metadata())
            # Arguments as JSON instead of the Trainer's pickled training_args.bin (safe to publish).
            write_json_atomic(os.path.join(output_dir, "training_args.json"), json.loads(self.args.to_json_string()))
            pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
            if os.path.isfile(pickled) and not self._keeps_pickled_args(output_dir):
                os.remove(pickled)
            if self.card_context is not None:
                self.write_card(output_dir)

    def _keeps_pickled_args(self, output_dir: str) -> bool:
        # Checkpoint folders keep the Trainer's own files untouched; only published folders drop the pickle.
        return os.path.basename(os.path.normpath(output_dir)).startswith(PREFIX_CHECKPOINT_DIR)

    def write_card(self, output_dir: str) -> None:
        """README.md model card (from model_cards/) with the freshest metrics; at every save and push."""
        write_model_card(output_dir, trainer_card_context(self, self.card_context, self.final_results))

    def create_model_card(self, *args, **kwargs):
        # Trainer.push_to_hub calls this; our card replaces the generic Trainer card.
        if self.card_context is not None and self.args.should_save:
            self.write_card(self.args.output_dir)
        else:
            super().create_model_card(*args, **kwargs)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # The Trainer copies only weights and config from the checkpoint; our side files and card travel too.
        if self.is_world_process_zero():
            for name in (SUBCLASS_HEAD_FILE, "lelp_config.json", "training_args.json", "README.md"):
                source = os.path.join(checkpoint_folder, name)
                if os.path.isfile(source):
                    shutil.copy(source, os.path.join(self.args.output_dir, name))
        super()._push_from_checkpoint(checkpoint_folder)

    def lelp_metadata(self) -> dict:
        args: LELPConfig = self.args
        meta = {
            "method": args.method,
            "num_subclasses": getattr(self.projections, "num_subclasses", 1),
            "subclass_temperature": args.subclass_temperature,
            "temperature": args.temperature,
            "hard_label_weight": args.hard_label_weight,
            "paper": self._paper,
        }
        if args.method in FEATURE_METHODS:
            meta["feature_loss_weight"] = args.feature_loss_weight
        if args.method == "random_ensemble":
            meta["ensemble_size"] = args.ensemble_size
        if args.method in SUBCLASS_METHODS and args.method != "oracle":
            meta.update(
                {
                    "grouping": args.grouping,
                    "null_space": args.null_space,
                    "rotate": args.rotate,
                    "projection_seed": args.projection_seed,
                }
            )
        if self.teacher_cache is not None:
            meta["cache_fingerprint"] = self.teacher_cache.fingerprint
        return meta

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        # The Trainer writes a checkpoint file by file; a kill in between leaves a folder that looks complete
        # but misses e.g. optimizer.pt (then silently skipped on resume). This marker, written last, says it isn't.
        folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
        if self.args.should_save and os.path.isdir(folder):
            write_json_atomic(os.path.join(folder, CHECKPOINT_MARKER), {"global_step": self.state.global_step})

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if not os.path.isfile(os.path.join(resume_from_checkpoint, CHECKPOINT_MARKER)):
            raise ValueError(
                f"Checkpoint {resume_from_checkpoint} is incomplete (training stopped while it was being written) "
                f"or was not written by LELPTrainer. Resume from an earlier checkpoint, or pass "
                "--resume_from_checkpoint true to pick the last complete one."
            )
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        load_auxiliary(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        load_auxiliary(self.model, self.state.best_model_checkpoint)
