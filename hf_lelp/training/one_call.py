"""The one-call Python API: `LELPTrainer(model=..., teacher=..., args=LELPConfig(...), train_dataset=...)`.

`prepare_one_call` turns what a user has (a student model or checkpoint name, a teacher model or checkpoint name,
raw text `datasets.Dataset`s with any text/label column names) into what the trainer runs on (the teacher cache,
the pseudo-subclass source, a student with its training-only modules, tokenised splits with labels in the
teacher's class order, a collator and metrics). Every piece it fills in stays public for experts, who pass
`teacher_cache=`, `projections=` and tokenised splits themselves; what they pass is used as it is.
"""

from __future__ import annotations

import gc
import logging
import os
from contextlib import nullcontext
from typing import NamedTuple

import datasets
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_lelp.base.locks import exclusive_folder
from hf_lelp.cache.fingerprint import sha256_state_dict, sha256_tokenizer
from hf_lelp.cache.folders import teacher_cache_folder
from hf_lelp.cache.store import TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, LABEL, TEXT
from hf_lelp.data.label_order import check_teacher_labels
from hf_lelp.data.load import as_text_classification_split, native_label_names
from hf_lelp.data.preflight import check_max_length, position_limit
from hf_lelp.data.tokens import dataset_fingerprint, tokenize_split
from hf_lelp.hub.export import read_as_trained
from hf_lelp.methods.modeling import AUXILIARY_FILES, load_student
from hf_lelp.methods.sources import SubclassInputs
from hf_lelp.training.builder import attach_training_modules, mixed_precision
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.metrics import build_compute_metrics

logger = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 128  # as the CLI's --max_length
# Keyword arguments of LELPTrainer that only the one-call path reads (the Trainer never sees them).
ONE_CALL_OPTIONS = {
    "text_column": TEXT,  # the text column of train_dataset / eval_dataset
    "label_column": LABEL,  # their label column (ClassLabel, names or ids); None for unlabelled transfer text
    # Token limit of the teacher pass and of the student (the CLI's --max_length); default: a given cache's, else
    # DEFAULT_MAX_LENGTH or less where a model's position embeddings hold less.
    "max_length": None,
    "cache_dir": None,  # teacher cache folder; default $HF_LELP_CACHE/teacher_caches/<teacher>-<content key>
    "teacher_tokenizer": None,  # default: the teacher checkpoint's own tokenizer
    "fine_label_column": None,  # known fine labels, for method="oracle"
    "dataset_name": None,  # names the data in the cache and the model card; default: the Dataset's own name
}


class Prepared(NamedTuple):
    """What LELPTrainer.__init__ continues with."""

    model: object
    teacher_cache: TeacherCache | None
    projections: object
    trainer_kwargs: dict


def wants_preparation(teacher, kwargs: dict) -> bool:
    """The one-call path runs when a teacher or a one-call option is given, or the training split is raw text;
    tokenised splits with a cache (the expert path, and every existing call site) go through untouched."""
    if teacher is not None or any(name in kwargs for name in ONE_CALL_OPTIONS):
        return True
    return _is_raw(kwargs.get("train_dataset"), kwargs.get("text_column", TEXT))


def _is_raw(dataset, text_column: str) -> bool:
    """Raw text: a DatasetDict (refused with the fix in _split) or a split with its text column and no tokens.
    Other untokenised splits (e.g. precomputed feature vectors for a custom model) are the expert path's."""
    if isinstance(dataset, datasets.DatasetDict):
        return True
    if not isinstance(dataset, datasets.Dataset):
        return False
    return "input_ids" not in dataset.column_names and text_column in dataset.column_names


def prepare_one_call(model, args: LELPConfig, teacher, teacher_cache, projections, kwargs: dict) -> Prepared:
    """Fill in whatever the caller left out (see the module docstring); `kwargs` are LELPTrainer's remaining
    keyword arguments, returned without the one-call options and with the Trainer's defaults filled in."""
    kwargs = dict(kwargs)
    options = {name: kwargs.pop(name, default) for name, default in ONE_CALL_OPTIONS.items()}
    train = _split(kwargs.get("train_dataset"), "train_dataset")
    if "input_ids" in train.column_names:
        raise ValueError(
            "train_dataset is already tokenised, but teacher= and the one-call options work from the raw split: "
            "pass the split with its text column (the teacher and the student each tokenise it), or pass "
            "teacher_cache= and projections= with tokenised splits as before."
        )
    evals = kwargs.get("eval_dataset")
    teacher_model, teacher_tokenizer, teacher_name = _load_teacher(teacher, args, teacher_cache, options)
    teacher_names = _teacher_label_names(teacher_model, teacher_cache)
    label_names = _label_order(train, evals, options["label_column"], teacher_names)
    convert = _converter(label_names, options)
    train_rows = convert(train, "train")
    student, tokenizer = _student(model, label_names, kwargs.get("processing_class"), teacher_tokenizer)
    options["max_length"] = _max_length(options["max_length"], teacher_model, student, teacher_cache)
    read_as_trained(tokenizer, options["max_length"])  # the saved tokenizer truncates where training did
    if args.uses_teacher and teacher_cache is None:
        cache_dir = options["cache_dir"] or _default_cache_dir(
            teacher_model, teacher_tokenizer, teacher_name, train_rows, label_names, options
        )
        teacher_cache = _build_cache(
            teacher_model, teacher_tokenizer, train_rows, cache_dir, label_names, args, options, teacher_name, train
        )
    del teacher_model  # the teacher is never in memory while the student trains
    gc.collect()
    if args.method_spec.subclass_source is not None and projections is None:
        projections = _subclass_source(teacher_cache, train_rows, args)
    if not any(hasattr(student, name) for name in AUXILIARY_FILES):  # the caller's own attached modules are kept
        hidden = teacher_cache.hidden_size if teacher_cache is not None else None
        attach_training_modules(student, len(label_names), args, projections, hidden)
    kwargs["train_dataset"] = tokenize_split(train_rows, tokenizer, options["max_length"])
    if evals is not None:
        kwargs["eval_dataset"] = _map_evals(
            evals, lambda split, name: _tokenised(split, name, convert, tokenizer, options)
        )
    return Prepared(student, teacher_cache, projections, _with_defaults(kwargs, tokenizer, len(label_names)))


def _subclass_source(cache: TeacherCache, train_rows: datasets.Dataset, args: LELPConfig):
    """The method's pseudo-subclasses, fitted as the CLI fits them (saved beside the cache, reused next time)."""
    fine = None
    if FINE_LABEL in train_rows.column_names:
        fine = dict(zip(train_rows[EXAMPLE_ID], train_rows[FINE_LABEL]))
    return args.method_spec.subclass_source(SubclassInputs(cache, args, fine, save=True))


def _with_defaults(kwargs: dict, tokenizer, num_labels: int) -> dict:
    """The Trainer arguments a text classifier needs, where the caller gave none."""
    if kwargs.get("processing_class") is None:
        kwargs["processing_class"] = tokenizer
    if kwargs.get("data_collator") is None:
        kwargs["data_collator"] = DataCollatorWithPadding(tokenizer)
    kwargs.setdefault("compute_metrics", build_compute_metrics(num_labels))
    return kwargs


def _split(dataset, argument: str) -> datasets.Dataset:
    if isinstance(dataset, datasets.DatasetDict):
        raise TypeError(
            f"{argument} is a DatasetDict with splits {list(dataset)}: pass one split, e.g. "
            f"train_dataset=data['train'], eval_dataset=data['test']."
        )
    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"{argument} must be a datasets.Dataset (raw text or tokenised), got {type(dataset).__name__}."
        )
    return dataset


def _map_evals(evals, function):
    """eval_dataset as the Trainer takes it: one Dataset, or a dict of named Datasets."""
    if isinstance(evals, dict):  # a DatasetDict too: the Trainer evaluates each split under its name
        return {name: function(_split(split, f"eval_dataset['{name}']"), name) for name, split in evals.items()}
    return function(_split(evals, "eval_dataset"), "eval")


def _tokenised(split: datasets.Dataset, name: str, convert, tokenizer, options: dict) -> datasets.Dataset:
    if "input_ids" in split.column_names:  # already tokenised by the caller
        return split
    return tokenize_split(convert(split, name), tokenizer, options["max_length"])


def _converter(label_names: list[str], options: dict):
    """A user's split -> example_id/text/label (ids in `label_names` order), labels matched by name."""

    def convert(split: datasets.Dataset, name: str) -> datasets.Dataset:
        label_column = options["label_column"]
        if label_column and label_column not in split.column_names and name != "train":
            label_column = None  # an unlabelled evaluation split is allowed (predict-only)
        return as_text_classification_split(
            split,
            options["text_column"],
            label_column,
            label_names,
            split=name,
            fine_label_column=options["fine_label_column"],
        )

    return convert


def _load_teacher(teacher, args: LELPConfig, teacher_cache, options: dict):
    """(teacher model or None, its tokenizer, its name); a checkpoint name is loaded, a model used as it is."""
    if teacher is None or not args.uses_teacher:
        if args.uses_teacher and teacher_cache is None:
            raise ValueError(
                f"method={args.method!r} distils a teacher: pass teacher= (a fine-tuned classifier, or its folder or "
                "Hub id) or teacher_cache=."
            )
        if teacher is not None:
            logger.info("method=%r trains on labels alone: the teacher is not used.", args.method)
        return None, None, None
    if teacher_cache is not None:
        logger.info("teacher_cache= given: the teacher is not run again.")
        return None, None, None
    if isinstance(teacher, (str, os.PathLike)):
        name = os.fspath(teacher)
        path = resolve_model(name)
        model = AutoModelForSequenceClassification.from_pretrained(path)
    else:
        model, name = teacher, getattr(teacher, "name_or_path", "") or "teacher"
        path = name
    tokenizer = options["teacher_tokenizer"]
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_model(path))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"Cannot load the teacher's tokenizer from {path!r} ({error}): pass teacher_tokenizer=, the "
                "tokenizer the teacher was trained with."
            ) from error
    return model, tokenizer, name


def _teacher_label_names(teacher_model, teacher_cache) -> list[str] | None:
    if teacher_cache is not None:
        return list(teacher_cache.fingerprint.get("label_names") or []) or None
    if teacher_model is None:
        return None
    config = teacher_model.config
    id2label = {int(k): v for k, v in (config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def _label_order(train, evals, label_column: str | None, teacher_names: list[str] | None) -> list[str]:
    """The class names in the order the student learns them: the data's (ClassLabel names, else sorted names or
    ids), put in the teacher's output order by the one check the CLI uses too (hf_lelp.data.label_order)."""
    splits = {"train": train}
    if isinstance(evals, datasets.Dataset) and label_column in evals.column_names:
        splits["eval"] = evals
    data_names = native_label_names(splits, label_column) if label_column else []
    if teacher_names is None:
        return data_names
    return check_teacher_labels(teacher_names, data_names or teacher_names).names


def _student(model, label_names: list[str], tokenizer, teacher_tokenizer=None):
    """The student model (a checkpoint name is loaded with the class names) and its tokenizer; a model from no
    checkpoint (e.g. `student_from_config`, trained from scratch) reads the teacher's tokenizer unless one is given."""
    if isinstance(model, (str, os.PathLike)):
        path = resolve_model(os.fspath(model))
        return load_student(path, label_names), tokenizer or AutoTokenizer.from_pretrained(path)
    if model is None:
        raise ValueError("LELPTrainer needs model= (the student: a model, or a checkpoint folder or Hub id).")
    config = model.config
    if config.num_labels != len(label_names):
        raise ValueError(
            f"The student has {config.num_labels} outputs but the data has {len(label_names)} classes {label_names}: "
            f"load it with num_labels={len(label_names)}, or pass its checkpoint name as model= (hf-lelp then "
            "builds the classifier with the class names)."
        )
    # The saved student must answer with the class names (pipeline), in the order it was trained on.
    config.id2label = dict(enumerate(label_names))
    config.label2id = {name: i for i, name in enumerate(label_names)}
    source = getattr(model, "name_or_path", "")
    if tokenizer is None and not source and teacher_tokenizer is not None:
        tokenizer = teacher_tokenizer
    if tokenizer is None:
        if not source:
            raise ValueError("Cannot find the student's tokenizer: pass processing_class=tokenizer.")
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(source))
    vocabulary = getattr(config, "vocab_size", None)
    if vocabulary is not None and len(tokenizer) > vocabulary:
        raise ValueError(
            f"The student's vocabulary has {vocabulary} entries but its tokenizer has {len(tokenizer)} tokens: build "
            "the student for this tokenizer (student_from_config(spec, tokenizer, label_names) sizes it), or pass "
            "processing_class= with the tokenizer the student was made for."
        )
    return model, tokenizer


def _max_length(given: int | None, teacher_model, student, teacher_cache) -> int:
    models = {"student": student.config}
    if teacher_model is not None:
        models["teacher"] = teacher_model.config
    if given is not None:
        check_max_length(given, models)
        return int(given)
    if teacher_cache is not None:
        return int(teacher_cache.fingerprint["max_length"])
    limits = [limit for limit in map(position_limit, models.values()) if limit is not None]
    return min([DEFAULT_MAX_LENGTH, *limits])


def _default_cache_dir(teacher_model, tokenizer, teacher_name: str, rows, label_names, options: dict) -> str:
    """The CLI's default location, keyed by content (the teacher's weights, the rows, the cache options), so that
    a retrained teacher or edited data gets a cache of its own and the same inputs reuse theirs."""
    key = {
        "teacher_sha256": sha256_state_dict(teacher_model),
        "tokenizer_sha256": sha256_tokenizer(tokenizer),
        "dataset_sha256": dataset_fingerprint(rows),
        "label_names": label_names,
        "max_length": options["max_length"],
    }
    return teacher_cache_folder(teacher_name, key)


def _build_cache(teacher_model, tokenizer, rows, cache_dir, label_names, args, options, teacher_name, source):
    from accelerate import Accelerator

    building = not os.path.isfile(os.path.join(cache_dir, "meta.json"))
    holding = exclusive_folder(cache_dir, "teacher cache") if building and args.process_index == 0 else nullcontext()
    with holding:
        return build_teacher_cache(
            teacher_model,
            tokenizer,
            rows,
            cache_dir,
            label_names=label_names,
            max_length=options["max_length"],
            teacher_name=teacher_name,
            dataset_name=options["dataset_name"] or _dataset_name(source),
            accelerator=Accelerator(cpu=args.use_cpu, mixed_precision=mixed_precision(args)),
        )


def _dataset_name(split: datasets.Dataset) -> str:
    info = getattr(split, "info", None)
    return getattr(info, "dataset_name", None) or "dataset"
