"""LELPTrainer: a `transformers.Trainer` whose loss reads the teacher from a cache, never from a teacher model."""

from __future__ import annotations

import os

import torch
from transformers import Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from .cache import TeacherCache
from .config import LELPConfig
from .data import EXAMPLE_ID
from .io_utils import write_json_atomic
from .losses import ce_loss, kd_loss, lelp_loss, lelp_targets
from .modeling import SUBCLASS_LOGITS, load_subclass_head, save_subclass_head, split_subclass_head, subclass_logits_of
from .projections import SubclassProjections


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
        projections: SubclassProjections | None = None,
        **kwargs,
    ):
        if args is None or not isinstance(args, LELPConfig):
            raise TypeError("LELPTrainer needs args=LELPConfig(...) (TrainingArguments plus the LELP options).")
        if args.method in ("lelp", "kd") and teacher_cache is None:
            raise ValueError(f"--method {args.method} needs teacher_cache= (build it with build_teacher_cache).")
        if args.method == "lelp" and projections is None:
            raise ValueError("--method lelp needs projections= (fit them with fit_projections).")
        self.teacher_cache = teacher_cache
        self.projections = projections
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

    def distillation_loss(self, class_logits, subclass_logits, example_ids, labels) -> torch.Tensor:
        args: LELPConfig = self.args
        if args.method == "ce":
            return ce_loss(class_logits, labels)
        if example_ids is None:
            raise KeyError(f"Training batches need an '{EXAMPLE_ID}' column to find the cached teacher outputs.")
        hidden, teacher_logits = self._teacher_batch(example_ids, class_logits.device)
        if args.method == "kd":
            soft = kd_loss(class_logits, teacher_logits, args.temperature, args.scale_by_temperature_squared)
        else:
            if self.projections.components.device != class_logits.device:
                self.projections = self.projections.to(class_logits.device)
            targets = lelp_targets(
                self.projections.scores(hidden), teacher_logits, args.temperature, args.subclass_temperature
            )
            soft = lelp_loss(
                class_logits, subclass_logits, targets, args.temperature, args.scale_by_temperature_squared
            )
        if args.hard_label_weight > 0:
            if labels is None or not bool((labels >= 0).any()):
                raise ValueError(
                    "--hard_label_weight > 0 needs labels in the transfer set; set it to 0 (as the "
                    "paper does) for unlabelled data."
                )
            return (1 - args.hard_label_weight) * soft + args.hard_label_weight * ce_loss(class_logits, labels)
        return soft

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        example_ids = inputs.pop(EXAMPLE_ID, None)
        labels = inputs.pop("labels", None)
        with subclass_logits_of(model, self.num_labels):
            model_outputs = model(**inputs)
        class_logits = model_outputs.logits
        # The loss runs in float32 whatever the autocast dtype of the forward pass.
        with torch.autocast(device_type=class_logits.device.type, enabled=False):
            if model.training:
                loss = self.distillation_loss(class_logits, model_outputs.get(SUBCLASS_LOGITS), example_ids, labels)
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
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        base, head = split_subclass_head(state_dict)
        super()._save(output_dir, state_dict=base)
        if self.args.should_save:
            if head:
                save_subclass_head(head, output_dir)
            write_json_atomic(os.path.join(output_dir, "lelp_config.json"), self.lelp_metadata())

    def lelp_metadata(self) -> dict:
        args: LELPConfig = self.args
        meta = {
            "method": args.method,
            "num_subclasses": args.num_subclasses if args.method == "lelp" else 1,
            "subclass_temperature": args.subclass_temperature,
            "temperature": args.temperature,
            "hard_label_weight": args.hard_label_weight,
            "paper": self._paper,
        }
        if args.method == "lelp":
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

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model=model)
        load_subclass_head(model if model is not None else self.model, resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        load_subclass_head(self.model, self.state.best_model_checkpoint)
