"""The whole job behind `recipes/distill.py`: data → cache → fit → train → evaluate → export → card → push."""

from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import logging
import os
import time
from contextlib import nullcontext

import numpy as np
from accelerate import Accelerator
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    set_seed,
)

from hf_lelp.base.errors import StateError, UserError
from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.base.locks import exclusive_folder
from hf_lelp.cache.store import TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.cli import DataArguments, ModelArguments
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, TEXT
from hf_lelp.data.label_order import align_to_teacher, check_teacher_labels  # noqa: F401 (check_teacher_labels: re-export)
from hf_lelp.data.load import TextClassificationData, data_summary, load_text_classification
from hf_lelp.data.preflight import check_max_length, check_models
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.data.transfer import carve_validation, with_transfer_data
from hf_lelp.hub.card import static_card_context
from hf_lelp.hub.export import base_overrides, measure_export, read_as_trained
from hf_lelp.hub.output_files import foreign_model_files
from hf_lelp.launch import warn_if_fewer_processes
from hf_lelp.methods.modeling import apply_lora, load_student, parameter_counts
from hf_lelp.methods.registry import SubclassInputs
from hf_lelp.training.autotune import candidate_grid, successive_halving
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.metrics import build_compute_metrics
from hf_lelp.training.trainer import LELPTrainer

logger = logging.getLogger(__name__)


def load_data(data_args: DataArguments) -> TextClassificationData:
    """The run's data as the flags say (files win: --dataset beside them is an error), logged in one line."""
    data = load_text_classification(
        data_args.source(),
        text_column=data_args.text_column,
        label_column=data_args.label_column or None,
        label_names=data_args.class_names,
        data_files=data_args.data_files(),
        max_examples=data_args.caps(),
        encoding=data_args.encoding,
        seed=data_args.subset_seed,
        fine_label_column=data_args.fine_label_column,
    )
    if data_args.validation_from_train:
        data = carve_validation(data, data_args.validation_from_train, data_args.subset_seed)
    if data_args.transfer_data:
        data = with_transfer_data(
            data,
            data_args.transfer_data,
            data_args.text_column,
            data_args.encoding,
            data_args.max_transfer_examples,
            data_args.subset_seed,
        )
    if "train" not in data.splits:
        raise KeyError(f"Dataset '{data_args.data_name()}' has no 'train' split (splits: {list(data.splits)}).")
    log_data(data)
    train_labels = set(data.splits["train"]["label"])
    for split, rows in data.splits.items():
        unseen = sorted(set(rows["label"]) - train_labels - {-1})
        if unseen and split != "train" and train_labels != {-1}:  # an unlabelled transfer set has no classes
            logger.warning(
                "Split '%s' has classes absent from train: %s (a student cannot learn them).",
                split,
                [data.label_names[i] for i in unseen],
            )
    return data


def log_data(data: TextClassificationData) -> None:
    """One line that says what the run trains on: source, rows, class names."""
    summary = data_summary(data)
    logger.info(
        "Data: %s; train: %d rows (%d labelled); splits %s; %d classes %s.",
        summary["data_source"],
        summary["train_examples"],
        summary["labelled_train_examples"],
        summary["split_examples"],
        len(summary["class_names"]),
        summary["class_names"],
    )


def check_labels_for_method(data: TextClassificationData, args: LELPConfig) -> None:
    """Fail before any work when the method needs labels that the transfer set does not have."""
    labelled = any(label >= 0 for label in data.splits["train"]["label"])
    if labelled:
        return
    method = args.method_spec
    if method.needs_labels:
        raise ValueError(
            f"--method {args.method} {method.needs_labels}, but the transfer set has none: use --method lelp or kd."
        )
    if args.hard_label_weight > 0:
        raise ValueError(
            "--hard_label_weight > 0 needs labels, but the transfer set has none: set it to 0 (as the paper does)."
        )
    if method.subclass_source is not None and args.grouping == "label":
        raise ValueError(
            "The transfer set is unlabelled: pass --grouping prediction (per-class PCA over the "
            "teacher's predicted classes)."
        )


def mixed_precision(args: LELPConfig) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "no"


def check_process_group(args: LELPConfig) -> None:
    """Refuse processes that were launched together but did not join one group (they would race on files); say so
    when `accelerate launch` was asked for more processes than it started."""
    warn_if_fewer_processes(args.world_size)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise StateError(
            f"{launched} processes were launched but each runs alone (world size {args.world_size}). On a machine "
            "without GPUs pass --use_cpu true so that they join one gloo process group."
        )


def ensure_teacher_cache(
    data: TextClassificationData, data_args: DataArguments, model_args: ModelArguments, args: LELPConfig
) -> TeacherCache:
    """Open the cache when it matches this run, else run the teacher once (data-parallel across processes)."""
    check_process_group(args)
    if not model_args.teacher:
        raise ValueError(
            f"--method {args.method} needs --teacher (a fine-tuned classifier folder or Hub id; train one with "
            "`hf-lelp train-teacher`)."
        )
    cache_dir = model_args.cache_dir or default_cache_dir(data_args, model_args)
    teacher_path = resolve_model(model_args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path)
    data = align_to_teacher(data, teacher.config)  # a no-op for distill, which aligned its data first
    check_max_length(data_args.max_length, {f"--teacher {model_args.teacher}": teacher.config})
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    building = not os.path.isfile(os.path.join(cache_dir, "meta.json"))
    # Two runs building one cache would race on its shards: the main process holds the folder while it builds.
    holding = exclusive_folder(cache_dir, "teacher cache") if building and args.process_index == 0 else nullcontext()
    with holding:
        cache = _build_cache(teacher, tokenizer, data, cache_dir, data_args, model_args, args)
    del teacher  # the teacher is never in memory while the student trains
    gc.collect()
    return cache


def _build_cache(teacher, tokenizer, data, cache_dir, data_args, model_args, args) -> TeacherCache:
    return build_teacher_cache(
        teacher,
        tokenizer,
        data.splits["train"],
        cache_dir,
        label_names=data.label_names,
        max_length=data_args.max_length,
        batch_size=model_args.teacher_batch_size,
        dtype=model_args.cache_dtype,
        shard_size=model_args.cache_shard_size,
        teacher_name=model_args.teacher,
        dataset_name=data.name,
        head_module=model_args.teacher_head_module,
        accelerator=Accelerator(cpu=args.use_cpu, mixed_precision=mixed_precision(args)),
    )


def default_cache_dir(data_args: DataArguments, model_args: ModelArguments) -> str:
    """Where a cache lives when --cache_dir is not given: never inside output_dir (which is what gets published),
    but under $HF_LELP_CACHE (default ~/.cache/hf_lelp), keyed by the teacher, the data and the cache options."""
    teacher = resolve_model(model_args.teacher)
    key = {
        "teacher": os.path.abspath(teacher) if os.path.exists(teacher) else teacher,
        "dataset": data_args.source(),
        "files": {k: os.path.abspath(v) for k, v in (data_args.data_files() or {}).items()},
        "transfer": data_args.transfer_data and os.path.abspath(data_args.transfer_data),
        "caps": [data_args.caps(), data_args.max_transfer_examples, data_args.subset_seed],
        "validation_from_train": data_args.validation_from_train,
        "text": [data_args.text_column, data_args.label_column, data_args.class_names],
        "cache": [data_args.max_length, model_args.cache_dtype, model_args.teacher_head_module],
    }
    return teacher_cache_folder(teacher, key)


def teacher_cache_folder(teacher: str, key: dict) -> str:
    """$HF_LELP_CACHE/teacher_caches/<teacher>-<hash of key>: the default cache folder of the CLI and of the
    one-call Python API (hf_lelp.training.one_call), which keys it by content."""
    home = os.environ.get("HF_LELP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_lelp")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = os.path.basename(os.path.normpath(teacher)) or "teacher"
    return os.path.join(home, "teacher_caches", f"{name}-{digest}")


def align_data_to_teacher(data: TextClassificationData, model_args: ModelArguments) -> TextClassificationData:
    """The data with its label ids in the order of --teacher's outputs (matched by name; see label_order.py), read
    from the teacher's config alone, so that the student, the cache and every split agree before any work."""
    if not model_args.teacher:
        return data  # ensure_teacher_cache says that the method needs one
    return align_to_teacher(data, AutoConfig.from_pretrained(resolve_model(model_args.teacher)))


def build_subclasses(cache: TeacherCache, data: TextClassificationData, model_args: ModelArguments, args: LELPConfig):
    """The pseudo-subclass source of a subclass method, built as its registry entry says (projections are saved
    beside the cache, or at --projections_path, and reused by the next run)."""
    train = data.splits["train"]
    fine = dict(zip(train[EXAMPLE_ID], train[FINE_LABEL])) if FINE_LABEL in train.column_names else None
    inputs = SubclassInputs(cache, args, fine, save=True, projections_path=model_args.projections_path)
    return args.method_spec.subclass_source(inputs)


def build_student(
    data: TextClassificationData,
    model_args: ModelArguments,
    args: LELPConfig,
    subclasses=None,
    teacher_size: int | None = None,
):
    """The student model (with the subclass head / FitNet regressor its method needs, wrapped with LoRA on
    request) and its tokenizer."""
    student_path = resolve_model(model_args.student)
    student = load_student(student_path, data.label_names, model_args.student_num_layers)
    attach_training_modules(student, data.num_labels, args, subclasses, teacher_size)
    if model_args.use_peft:
        student = apply_lora(
            student,
            data.num_labels,
            model_args.lora_r,
            model_args.lora_alpha,
            model_args.lora_dropout,
            model_args.lora_target_modules,
        )
    return student, AutoTokenizer.from_pretrained(student_path)


def attach_training_modules(student, num_labels: int, args: LELPConfig, subclasses=None, teacher_size=None) -> None:
    """Add the layers only training uses (never exported), as the method's registry entry lists them: the
    subclass head (S·K columns per class), FitNet's regressor."""
    for attach in args.method_spec.training_modules:
        attach(student, num_labels, args, subclasses, teacher_size)


def load_baselines(paths: list[str], split: str) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
        rows.append(
            {
                "method": results.get("method", os.path.basename(os.path.dirname(path))),
                "accuracy": results.get(f"{split}_accuracy"),
                "macro_f1": results.get(f"{split}_macro_f1"),
            }
        )
    return rows


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


def choose_hparams_automatically(
    data: TextClassificationData, data_args: DataArguments, model_args: ModelArguments, args: LELPConfig, cache
) -> tuple[LELPConfig, dict]:
    """--auto_hparams: successive halving over (S, β) on the validation split. Returns new arguments with the
    chosen S and β (`args` itself is left as given) and the sweep for the card."""
    if "validation" not in data.splits or not any(y >= 0 for y in data.splits["validation"]["label"]):
        raise ValueError(
            "--auto_hparams needs a labelled 'validation' split: pass --validation_file, or --validation_from_train N "
            "to carve N labelled train examples into one (never the test split)."
        )
    candidates = candidate_grid(
        args.auto_num_subclasses, args.auto_subclass_temperatures, cache.hidden_size - cache.num_labels
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model_args.student))
    train_set = tokenize_split(data.splits["train"], tokenizer, data_args.max_length)
    validation = tokenize_split(data.splits["validation"], tokenizer, data_args.max_length)

    def evaluate(candidate: dict, epochs: float) -> dict:
        trial = copy.copy(args)
        for key, value in {**candidate, "num_train_epochs": epochs, "auto_hparams": False}.items():
            setattr(trial, key, value)
        trial.output_dir = os.path.join(args.output_dir, "auto_hparams")
        trial.save_strategy, trial.push_to_hub, trial.eval_strategy = "no", False, "no"
        set_seed(args.seed)
        subclasses = build_subclasses(cache, data, model_args, trial)
        student, _ = build_student(data, model_args, trial, subclasses, cache.hidden_size)
        trainer = text_trainer(student, trial, tokenizer, data, cache, subclasses, train_set)
        trainer.train()
        metrics = trainer.evaluate(validation, metric_key_prefix="validation")
        del trainer, student
        gc.collect()
        return {"accuracy": metrics["validation_accuracy"], "macro_f1": metrics["validation_macro_f1"]}

    result = successive_halving(candidates, evaluate, args.auto_budget_epochs, keep=args.auto_keep)
    logger.info("--auto_hparams chose %s", result.chosen)
    # A new object (validated again), so one LELPConfig never means two runs' S.
    chosen = dataclasses.replace(
        args,
        num_subclasses=result.chosen["num_subclasses"],
        subclass_temperature=result.chosen["subclass_temperature"],
    )
    return chosen, result.as_dict()


def check_eval_split(data: TextClassificationData, data_args: DataArguments) -> None:
    if data_args.eval_split and data_args.eval_split not in data.splits:
        raise ValueError(
            f"--eval_split '{data_args.eval_split}' is not a split of {data_args.data_name()} (splits: "
            f"{sorted(data.splits)}). Pass one of them, add the file with --test_file/--validation_file, or pass "
            "--eval_split '' to train without a final evaluation."
        )


def selection_split(data: TextClassificationData, data_args: DataArguments, args: LELPConfig) -> str | None:
    """The split the Trainer evaluates during training (eval_strategy, load_best_model_at_end): a labelled
    `validation` split (the data's own, or carved from train by --validation_from_train), never the reported one."""
    selects = args.eval_strategy != "no" or args.load_best_model_at_end
    labelled = "validation" in data.splits and any(y >= 0 for y in data.splits["validation"]["label"])
    if selects and not labelled:
        raise ValueError(
            f"--eval_strategy {getattr(args.eval_strategy, 'value', args.eval_strategy)} / --load_best_model_at_end "
            "evaluate during training, which needs a "
            "labelled 'validation' split (model selection on the reported split would overstate its metrics): pass "
            "--validation_file, or --validation_from_train N to carve N seeded train examples into one."
        )
    if selects and data_args.eval_split == "validation":
        raise ValueError(
            "--eval_split validation is also the model-selection split: report on a split that played no part in "
            "training (e.g. --eval_split test), or set --eval_strategy no."
        )
    return "validation" if selects else None


def split_roles(data: TextClassificationData, data_args: DataArguments, args: LELPConfig, selection: str | None):
    """What each split did in this run, from the run's facts (written into the model card)."""
    roles = {"train": "training (the distillation transfer set)" if args.uses_teacher else "training"}
    if data_args.transfer_data:
        roles["train"] = f"training: unlabelled transfer text from {os.path.basename(data_args.transfer_data)}"
    uses = []
    if selection:
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)  # an IntervalStrategy enum
        uses.append(f"evaluated every {strategy}" if strategy != "no" else "evaluated")
        if args.load_best_model_at_end:
            uses.append(f"best checkpoint chosen by {args.metric_for_best_model or 'loss'}")
    if args.auto_hparams:
        uses.append("S and β chosen by --auto_hparams")
    if "validation" in data.splits:
        roles["validation"] = "model selection: " + "; ".join(uses) if uses else "not used"
    if data_args.eval_split:
        roles[data_args.eval_split] = reported_role(data_args.eval_split, roles.get(data_args.eval_split))
    for name in data.splits:
        roles.setdefault(name, "not used")
    return {name: {"role": role, "examples": len(data.splits[name])} for name, role in roles.items()}


def reported_role(split: str, earlier: str | None) -> str:
    """The reported split's role; a split that also trained or chose something is said to be no held-out estimate."""
    if earlier in (None, "not used"):
        return "reported once, after training; never used for any choice"
    logger.warning(
        "--eval_split %s is also used for %s: its reported metrics are not a held-out estimate. Report on a split "
        "that played no part in the run (e.g. --eval_split test) for one.",
        split,
        earlier,
    )
    return f"{earlier}; also reported after training, so its metrics are not a held-out estimate"


def _same_or_inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_roles(output_dir: str, model_args: ModelArguments) -> None:
    """--output_dir must not be the teacher's or the student's folder, nor the teacher cache's."""
    for flag in ("teacher", "student"):
        folder = os.path.expanduser(getattr(model_args, flag) or "")
        if folder and os.path.isdir(folder) and os.path.realpath(output_dir) == os.path.realpath(folder):
            raise UserError(
                f"--output_dir {output_dir} is the --{flag} folder: the student would be saved over the {flag} "
                f"model. Pass another --output_dir (e.g. {os.path.normpath(output_dir)}_student)."
            )
    cache_dir = model_args.cache_dir
    if cache_dir and _same_or_inside(output_dir, cache_dir):
        where = "the same folder as" if _same_or_inside(cache_dir, output_dir) else "inside"
        raise UserError(
            f"--output_dir {output_dir} is {where} --cache_dir {cache_dir}: the student and the teacher cache would "
            "share one folder (its files and its lock, so the run would refuse itself as in use). Pass a --cache_dir "
            "of its own (e.g. a sibling of --output_dir), or leave --cache_dir out for the default place."
        )


def check_output_dir(output_dir: str, method: str, model_args: ModelArguments | None = None) -> None:
    """Refuse an --output_dir where the student would replace or mix with a model this run does not own: the
    teacher's, the student's or the cache's folder, a folder holding a model hf-lelp did not write, or another
    method's student (their side files and results would mix)."""
    if model_args is not None:
        check_output_roles(output_dir, model_args)
    foreign = foreign_model_files(output_dir)
    if foreign:
        raise UserError(
            f"{output_dir} holds a model that hf-lelp did not write ({', '.join(foreign)}): saving the student there "
            "would replace it. Pass another --output_dir (an empty or new folder, or one an earlier hf-lelp run "
            "wrote)."
        )
    config_path = os.path.join(output_dir, "lelp_config.json")
    if not os.path.isfile(config_path):
        return
    previous = read_json(config_path).get("method")
    if previous != method:
        raise ValueError(
            f"{output_dir} holds a finished --method {previous} student; a --method {method} run there would mix "
            f"the two (side files, results, checkpoints). Pass another --output_dir, or delete {output_dir}."
        )


def run_distillation(data_args: DataArguments, model_args: ModelArguments, args: LELPConfig) -> dict:
    """The whole job, holding output_dir against a second run (refused with this run named)."""
    check_process_group(args)
    check_output_roles(args.output_dir, model_args)  # before the lock: not even a lock file in the teacher's folder
    holding = exclusive_folder(args.output_dir, "output folder") if args.process_index == 0 else nullcontext()
    with holding:
        return _run_distillation(data_args, model_args, args)


def _run_distillation(data_args: DataArguments, model_args: ModelArguments, args: LELPConfig) -> dict:
    start = time.time()
    set_seed(args.seed)
    data = load_data(data_args)
    if args.uses_teacher:  # label ids in the teacher's output order, for the cache, the student and every split
        data = align_data_to_teacher(data, model_args)
    check_eval_split(data, data_args)
    selection_name = selection_split(data, data_args, args)
    check_labels_for_method(data, args)
    check_output_dir(args.output_dir, args.method, model_args)
    teacher = {"--teacher": model_args.teacher} if args.uses_teacher else {}
    check_models(data_args.max_length, data.label_names, {"--student": model_args.student}, teacher)
    cache = projections = None
    if args.uses_teacher:
        cache = ensure_teacher_cache(data, data_args, model_args, args)
    auto = None
    if args.auto_hparams:
        args, auto = choose_hparams_automatically(data, data_args, model_args, args, cache)
    if args.method_spec.subclass_source is not None:
        projections = build_subclasses(cache, data, model_args, args)
    set_seed(args.seed)
    student, tokenizer = build_student(data, model_args, args, projections, cache.hidden_size if cache else None)
    read_as_trained(tokenizer, data_args.max_length)  # saved with the export: it reads texts as training did
    parameters = parameter_counts(student)
    train_set = tokenize_split(data.splits["train"], tokenizer, data_args.max_length)
    eval_name = data_args.eval_split or None  # '' = no final evaluation, asked for explicitly
    eval_set = tokenize_split(data.splits[eval_name], tokenizer, data_args.max_length) if eval_name else None
    selection_set = (
        tokenize_split(data.splits[selection_name], tokenizer, data_args.max_length) if selection_name else None
    )
    card = static_card_context(
        data,
        data_args,
        model_args,
        _teacher_eval(model_args.teacher),
        load_baselines(model_args.baseline_results, data_args.eval_split),
    )
    card["auto_hparams"] = auto
    card["split_roles"] = split_roles(data, data_args, args, selection_name)
    card["base_overrides"] = base_overrides(student.config, model_args.student_num_layers)
    trainer = text_trainer(
        student,
        args,
        tokenizer,
        data,
        cache,
        projections,
        train_set,
        eval_dataset=selection_set,  # never the reported split: selection happens on validation only
        compute_metrics=build_compute_metrics(data.num_labels, model_args.extra_metrics),
        card_context=card,
        run_settings={**dataclasses.asdict(data_args), **dataclasses.asdict(model_args)},
    )
    resume = args.resume_from_checkpoint
    resume = True if str(resume).lower() in ("true", "1", "yes") else resume  # "latest complete checkpoint"
    train_result = trainer.train(resume_from_checkpoint=resume)
    results = {
        **data_summary(data),  # what it trained on: source, rows, class names
        "method": args.method,
        "train_seconds": train_result.metrics.get("train_runtime"),
        "train_examples": len(train_set),
        "selection_split": selection_name,
        **parameters,
    }
    if projections is not None:  # S per class and member, K members: as the source was built
        results.update(num_subclasses=projections.num_subclasses, ensemble_size=projections.num_members)
    if auto:
        results["auto_hparams"] = auto
    if selection_set is not None:
        results.update(trainer.evaluate(selection_set, metric_key_prefix=selection_name))
    if eval_set is not None:  # the reported split, evaluated once, after every choice is made
        prediction = trainer.predict(eval_set, metric_key_prefix=eval_name)
        results.update({f"{eval_name}_trainer_{k[len(eval_name) + 1 :]}": v for k, v in prediction.metrics.items()})
        results[f"{eval_name}_examples"] = len(prediction.label_ids)  # each example once, also across processes
    if model_args.use_peft and model_args.merge_lora:
        trainer.model = trainer.model_wrapped = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.final_results = results
    # Saved without the Trainer's own push (save_model pushes when --push_to_hub): the push comes last, after
    # results.json is written, so that a refused push leaves the measured results behind.
    trainer.save_model(args.output_dir, _internal_call=True)
    if args.should_save:
        if eval_set is not None:
            # The reported metrics are the saved student's, reloaded the way users load it (not the trainer's
            # bf16-autocast forward); the trainer's stay beside them as <split>_trainer_*.
            adapter = model_args.use_peft and not model_args.merge_lora
            results.update(
                measure_export(
                    args.output_dir,
                    list(data.splits[eval_name][TEXT]),
                    np.asarray(data.splits[eval_name]["label"]),
                    np.asarray(prediction.predictions).argmax(axis=-1),
                    build_compute_metrics(data.num_labels, model_args.extra_metrics),
                    eval_name,
                    num_labels=data.num_labels,
                    batch_size=args.per_device_eval_batch_size,
                    adapter_overrides=card["base_overrides"] if adapter else None,
                    max_length=data_args.max_length,
                )
            )
        results["wall_seconds"] = time.time() - start
        write_json_atomic(os.path.join(args.output_dir, "results.json"), results)
        trainer.write_card(args.output_dir)  # now with the measured export
        trainer.record_written("results.json", "README.md")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-lelp: {args.method} student", blocking=True)
    trainer.accelerator.wait_for_everyone()
    return results


def _teacher_eval(teacher: str | None) -> dict:
    """The teacher's own test metrics, written by recipes/train_teacher.py beside its weights."""
    path = os.path.join(resolve_model(teacher), "teacher_results.json") if teacher else ""
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    return {}
