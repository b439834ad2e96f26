"""LELPTrainer: a `transformers.Trainer` whose loss reads the teacher from a cache, never from a teacher model."""

from __future__ import annotations

import json
import os
import uuid

import datasets
import torch
from accelerate.state import AcceleratorState
from transformers import DataCollatorWithPadding, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer import TRAINING_ARGS_NAME

from hf_lelp.base.io_utils import write_json_atomic
from hf_lelp.cache.store import TeacherCache
from hf_lelp.data.columns import EXAMPLE_ID
from hf_lelp.data.row_identity import TEXT_HASH
from hf_lelp.hub.output_files import fresh_save, record_files
from hf_lelp.hub.publish import (
    public_name,
    public_training_args,
)
from hf_lelp.hub.trainer_hub import PAPER, HubMixin, is_checkpoint_folder
from hf_lelp.methods.losses import ce_loss, flat_class_logits
from hf_lelp.methods.modeling import (
    AUXILIARY_FILES,
    EXPORT_LOGITS,
    STUDENT_FEATURES,
    SUBCLASS_LOGITS,
    is_peft_model,
    load_auxiliary,
    save_auxiliary,
    split_auxiliary,
    subclass_logits_of,
)
from hf_lelp.methods.terms import LossInputs
from hf_lelp.training.builder import attach_training_modules
from hf_lelp.training.callbacks import CheckpointFinisher
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.metrics import build_compute_metrics
from hf_lelp.training.one_call import prepare_one_call, wants_preparation
from hf_lelp.training.resume import check_resumable, dataset_digest, last_complete_checkpoint, run_fingerprint


class LELPTrainer(HubMixin, Trainer):
    """Trains a student on pseudo-subclass targets built per batch from cached teacher embeddings.

    Each training batch carries `example_id`; the trainer reads h and the teacher logits of those ids from the
    memory-mapped cache, forms the C·S targets with the fitted projections, and computes the loss in float32.
    Evaluation returns class-level logits, so `compute_metrics` sees C classes; the eval loss is hard-label CE
    (the cache covers the transfer set only).
    """

    # Our loss is a per-batch mean: let the Trainer divide by the accumulation steps (transformers >= 5.19).
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model=None,
        args: LELPConfig | None = None,
        teacher_cache: TeacherCache | None = None,
        projections=None,
        card_context: dict | None = None,
        teacher=None,
        run_settings: dict | None = None,
        **kwargs,
    ):
        if args is None or not isinstance(args, LELPConfig):
            raise TypeError("LELPTrainer needs args=LELPConfig(...) (TrainingArguments plus the LELP options).")
        if wants_preparation(teacher, kwargs):  # the one call: teacher= and raw text splits (one_call.py)
            model, teacher_cache, projections, kwargs = prepare_one_call(
                model, args, teacher, teacher_cache, projections, kwargs
            )
        if args.uses_teacher and teacher_cache is None:
            raise ValueError(f"--method {args.method} needs teacher_cache= (build it with build_teacher_cache).")
        if args.method_spec.subclass_source is not None and projections is None:
            raise ValueError(
                f"--method {args.method} needs projections= (its pseudo-subclasses: "
                "args.method_spec.subclass_source(SubclassInputs(cache, args)), or training.builder.build_subclasses)."
            )
        if teacher_cache is not None:
            _check_train_rows(teacher_cache, kwargs.get("train_dataset"))
        self.teacher_cache = teacher_cache
        self.projections = projections  # any pseudo-subclass source with `subclass_scores(hidden, example_ids)`
        self.card_context = card_context  # static model-card facts; None = no card written
        self.run_settings = run_settings  # the recipe's model and data flags, part of the resume fingerprint
        self.save_run_id = uuid.uuid4().hex  # whose files output_dir holds (hf_lelp/hub/output_files.py)
        self.final_results: dict | None = None
        self.num_labels = teacher_cache.num_labels if teacher_cache else model.config.num_labels
        super().__init__(model=model, args=args, **kwargs)
        self.checkpoint_finisher = CheckpointFinisher(self)
        self.add_callback(self.checkpoint_finisher)
        # Older transformers (< 5.19) only know this switch: a per-batch-mean loss is not pre-scaled for GA.
        self.model_accepts_loss_kwargs = False

    def create_accelerator_and_postprocess(self) -> None:
        # accelerate keeps the first Accelerator's state (one per process): the teacher pass's would leave the
        # dynamo backend at NO, and --torch_compile recorded as true would compile nothing.
        if self.args.torch_compile:
            AcceleratorState._reset_state()
        super().create_accelerator_and_postprocess()

    # Private override (checked against transformers 5.17-5.25): `remove_unused_columns` keeps only the model's
    # forward arguments; the loss needs `example_id` too, and turning the user's flag off would be worse.
    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if EXAMPLE_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, EXAMPLE_ID]

    def _teacher_batch(self, example_ids: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logits = self.teacher_cache.lookup(example_ids.detach().cpu().numpy())
        return hidden.to(device, non_blocking=True), logits.to(device, non_blocking=True)

    def distillation_loss(
        self, class_logits, subclass_logits, example_ids, labels, features=None, export_logits=None
    ) -> torch.Tensor:
        """The method's loss (its registry entry): soft term + feature term, mixed with α·CE(labels)."""
        args: LELPConfig = self.args
        method = args.method_spec
        batch = LossInputs(class_logits, labels, subclass_logits, features, example_ids, model=self.model)
        batch.export_logits = export_logits
        if method.uses_teacher:
            if example_ids is None:
                raise KeyError(f"Training batches need an '{EXAMPLE_ID}' column to find the cached teacher outputs.")
            batch.hidden, batch.teacher_logits = self._teacher_batch(example_ids, class_logits.device)
        if self.projections is not None:
            batch.subclasses = self._subclasses_on(class_logits.device)
        soft = method.loss(batch, args)
        if method.feature_loss is not None:
            soft = soft + args.feature_loss_weight * method.feature_loss(batch, args)
        if args.hard_label_weight > 0 and method.uses_teacher:  # a labels-only loss has no soft term to mix
            if labels is None or not bool((labels >= 0).any()):
                raise ValueError(
                    "--hard_label_weight > 0 needs labels in the transfer set; set it to 0 (as the "
                    "paper does) for unlabelled data."
                )
            hard = ce_loss(class_logits, labels, args.label_smoothing_factor)
            return (1 - args.hard_label_weight) * soft + args.hard_label_weight * hard
        return soft

    def _subclasses_on(self, device):
        """The pseudo-subclass source on the batch's device (moved once, at the first batch)."""
        if getattr(self, "_subclass_device", None) != device:
            self.projections = self.projections.to(device)
            self._subclass_device = device
        return self.projections

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        example_ids = inputs.pop(EXAMPLE_ID, None)
        inputs.pop(TEXT_HASH, None)  # reaches the batch with remove_unused_columns=False; not a model input
        labels = inputs.pop("labels", None)
        wants_features = model.training and self.args.method_spec.feature_loss is not None
        flat = self.args.head_spec.predicts_with_subclasses
        fits_export = flat and model.training
        with subclass_logits_of(model, self.num_labels, with_features=wants_features, with_export=fits_export):
            model_outputs = model(**inputs)
        class_logits = model_outputs.logits
        subclass_logits = model_outputs.get(SUBCLASS_LOGITS)
        if flat and subclass_logits is not None:
            # The paper's student predicts with its C·S layer (p_c = Σ_s q_{c,s}), in training and evaluation.
            members = self.projections.num_members if self.projections is not None else 1
            class_logits = flat_class_logits(subclass_logits, self.num_labels, members)
        # The loss runs in float32 whatever the autocast dtype of the forward pass.
        with torch.autocast(device_type=class_logits.device.type, enabled=False):
            if model.training:
                loss = self.distillation_loss(
                    class_logits,
                    subclass_logits,
                    example_ids,
                    labels,
                    features=model_outputs.get(STUDENT_FEATURES),
                    export_logits=model_outputs.get(EXPORT_LOGITS),
                )
            else:
                loss = ce_loss(class_logits, labels) if labels is not None else None
        outputs = SequenceClassifierOutput(loss=loss, logits=class_logits)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        # Checked after the backward pass, so that every process of a launch finishes its gradient exchange; the
        # Trainer's own NaN filter (logging_nan_inf_filter) would otherwise hide it and export NaN weights.
        loss = super().training_step(model, inputs, num_items_in_batch)
        if not bool(torch.isfinite(loss).all()):
            value = float(loss.detach().float().mean())
            raise FloatingPointError(non_finite_loss_message(value, self.state, self.args))
        return loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Without labels the Trainer calls model(**inputs) itself: the id columns must not reach the model.
        if "labels" not in inputs:
            inputs = {k: v for k, v in inputs.items() if k not in (EXAMPLE_ID, TEXT_HASH)}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    # Public, with the Trainer's own keyword: its checkpoint save begins here (transformers 5.17-5.25 call
    # save_model(folder, _internal_call=True) first in _save_checkpoint), before anything writes into the folder.
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if _internal_call and self.checkpoint_finisher.is_checkpoint(output_dir):
            self.checkpoint_finisher.begin(output_dir)
        super().save_model(output_dir, _internal_call=_internal_call)

    # Private override (checked against transformers 5.17-5.25): the weights must leave out the training-only
    # modules before they are written, and no public hook sees the state dict of both save_model and checkpoints.
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Every save (checkpoints included) is a plain C-class model plus the subclass head as a side file, with
        nothing of another model beside it: a checkpoint folder left by an earlier run was removed before the
        checkpoint save began (CheckpointFinisher.begin), and in any other folder the files an earlier run saved
        are removed first (hf_lelp/hub/output_files.py)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            self._save_files(output_dir, state_dict)
        elif self.checkpoint_finisher.writing == os.path.abspath(output_dir):
            # The checkpoint's arguments (training_args.bin/.json) record the user's values, not the held ones.
            with self.checkpoint_finisher.user_values():
                self._save_files(output_dir, state_dict)
        else:
            with fresh_save(output_dir, self.save_run_id):
                self._save_files(output_dir, state_dict)

    def record_written(self, *names: str) -> None:
        """Files written in output_dir after the save (results.json, the card): this run's, removed by the next
        run's save."""
        if self.args.should_save:
            record_files(self.args.output_dir, self.save_run_id, *names)

    def _save_files(self, output_dir: str, state_dict: dict | None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if is_peft_model(model):
            # PEFT saves the adapter (LoRA weights + the classifier); training-only modules become side files.
            base, (_, auxiliary) = state_dict, split_auxiliary(model.state_dict())
        else:
            base, auxiliary = split_auxiliary(state_dict if state_dict is not None else model.state_dict())
        super()._save(output_dir, state_dict=base)
        if self.args.should_save:
            save_auxiliary(auxiliary, output_dir)
            for name, file_name in AUXILIARY_FILES.items():  # a side file of an earlier run is not this model's
                stale = os.path.join(output_dir, file_name)
                if name not in auxiliary and os.path.isfile(stale):
                    os.remove(stale)
            write_json_atomic(os.path.join(output_dir, "lelp_config.json"), self.lelp_metadata())
            # Arguments as JSON (tokens masked, local paths cut to basenames) instead of the pickled
            # training_args.bin, which holds hub_token in clear.
            public_args = public_training_args(json.loads(self.args.to_json_string()))
            write_json_atomic(os.path.join(output_dir, "training_args.json"), public_args)
            pickled = os.path.join(output_dir, TRAINING_ARGS_NAME)
            if os.path.isfile(pickled) and not is_checkpoint_folder(output_dir):
                os.remove(pickled)
            if not is_checkpoint_folder(output_dir):  # a saved model has its card (checkpoints: at finish)
                self.write_card(output_dir)

    def lelp_metadata(self) -> dict:
        """lelp_config.json: the method and the options it reads (its registry entry's `option_values`: S per class
        and member, β, τ and α where the method uses them, K = ensemble_size for an ensemble, its `card_fields`)."""
        args: LELPConfig = self.args
        source = self.projections
        meta = {"method": args.method, **args.method_spec.option_values(args, source), "paper": PAPER}
        if self.teacher_cache is not None:
            fingerprint = dict(self.teacher_cache.fingerprint)
            fingerprint["teacher"] = public_name(fingerprint.get("teacher"))
            fingerprint["dataset"] = public_name(fingerprint.get("dataset"))
            meta["cache_fingerprint"] = fingerprint
        return meta

    # --- Checkpoints: a completion marker written last, recording the run's configuration.

    def run_fingerprint(self) -> dict:
        model = self.accelerator.unwrap_model(self.model)
        config = getattr(model, "config", None)
        return run_fingerprint(
            self.args,
            config.to_dict() if config is not None else {},
            self.teacher_cache.fingerprint if self.teacher_cache is not None else None,
            len(self.train_dataset) if self.train_dataset is not None else 0,
            self._train_digest(),
            self.run_settings,
        )

    def _train_digest(self) -> str | None:
        """The training set's content (computed once: the marker of every checkpoint records it)."""
        if not hasattr(self, "_train_digest_value"):
            dataset = self.train_dataset
            self._train_digest_value = dataset_digest(dataset) if hasattr(dataset, "with_format") else None
        return self._train_digest_value

    def train(self, resume_from_checkpoint=None, **kwargs):
        if resume_from_checkpoint is True:
            resume_from_checkpoint = last_complete_checkpoint(self.args.output_dir)
        if resume_from_checkpoint:
            check_resumable(resume_from_checkpoint, self.run_fingerprint())
            # The Trainer restores the model's own weights; the training-only modules come from their side files.
            load_auxiliary(self.model, resume_from_checkpoint)
        try:
            return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        finally:  # a checkpoint save that failed before on_save still holds the user's limit and push
            self.checkpoint_finisher.release()


def _check_train_rows(cache: TeacherCache, train_dataset) -> None:
    """A reopened cache meets the training data only here: refuse rows that are not the ones it was built on."""
    if isinstance(train_dataset, datasets.Dataset) and EXAMPLE_ID in train_dataset.column_names:
        cache.check_rows(train_dataset)


def non_finite_loss_message(loss: float, state, args: LELPConfig) -> str:
    """The user error of a diverged run, naming the optimizer step and the options that usually cause it."""
    epoch = f" (epoch {state.epoch:.2f})" if state.epoch is not None else ""
    return (
        f"The training loss became {loss} at optimizer step {state.global_step + 1}{epoch} of --method "
        f"{args.method}: training stopped and nothing was exported. Lower --learning_rate (now {args.learning_rate}), "
        f"keep --max_grad_norm finite and positive (now {args.max_grad_norm}), check --temperature, "
        "--subclass_temperature and --feature_loss_weight, or train in float32 (without --fp16/--bf16)."
    )


def text_trainer(student, args, tokenizer, data, cache, subclasses, train_set, **extra) -> LELPTrainer:
    """An LELPTrainer for a tokenised text student (the main run and every --auto_hparams candidate)."""
    extra.setdefault("compute_metrics", build_compute_metrics(data.num_labels))
    return LELPTrainer(
        model=student,
        args=args,
        teacher_cache=cache,
        projections=subclasses,
        train_dataset=train_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        **extra,
    )


def method_trainer(model, args, cache, subclasses, train_dataset, num_labels: int, **extra) -> LELPTrainer:
    """An LELPTrainer for `model` with the training-only modules of its method attached (the registry entry), the
    teacher cache passed only to a method that reads it (the benchmark's students, the tests)."""
    attach_training_modules(model, num_labels, args, subclasses, cache.hidden_size if cache is not None else None)
    teacher_cache = cache if args.uses_teacher else None
    return LELPTrainer(model, args, teacher_cache, subclasses, train_dataset=train_dataset, **extra)
