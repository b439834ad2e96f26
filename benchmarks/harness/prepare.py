"""Prepare one benchmark dataset once: fixed train/validation/test files, a fine-tuned teacher, its cache on the
train (transfer) split, and frozen sentence embeddings for the MLP student track. Every step is skipped when its
output already exists, so an interrupted benchmark resumes."""

from __future__ import annotations

import gc
import json
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from transformers import TrainingArguments

from hf_lelp import TeacherCache, build_teacher_cache
from hf_lelp.base.io_utils import write_atomic, write_json_atomic
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import FINE_LABEL, LABEL, TEXT, UNLABELLED
from hf_lelp.data.load import TextClassificationData, load_text_classification
from hf_lelp.teacher import RESULTS_FILE, TeacherArguments, train_teacher
from hf_lelp.training.arguments import DataArguments

from .embedding_student import sentence_embeddings

logger = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


@dataclass
class PrepareOptions:
    train: int = 2000
    validation: int = 500
    test: int = 1000
    max_length: int = 128
    teacher_model: str = "all-MiniLM-L6-v2"
    teacher_epochs: float = 2.0
    teacher_learning_rate: float = 1e-4
    feature_model: str = "all-MiniLM-L6-v2"
    # The frozen student encoder keeps the first k layers (ours: 2, the depth of the demo's transformer student):
    # a weaker student than the full 6-layer encoder, whose frozen features leave the teacher less of a lead.
    feature_layers: int = 2
    subset_seed: int = 0
    # Unlabelled transfer (issue #7): the teacher learns from the first `teacher_train` labelled rows only and the
    # students distil on the rest of the train split with its labels removed. 0 = the teacher sees all of train.
    teacher_train: int = 0


@dataclass
class PreparedDataset:
    name: str
    folder: str
    label_names: list[str]
    teacher_accuracy: float
    teacher_macro_f1: float
    split_sizes: dict[str, int]
    options: dict

    @property
    def cache_dir(self) -> str:
        return os.path.join(self.folder, "teacher_cache")

    def features(self, split: str) -> np.ndarray:
        return np.load(os.path.join(self.folder, f"features_{split}.npy"))

    def labels(self, split: str) -> np.ndarray:
        return np.load(os.path.join(self.folder, f"labels_{split}.npy"))

    def fine_labels(self, split: str) -> list[str] | None:
        path = os.path.join(self.folder, f"fine_labels_{split}.json")
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    def texts(self, split: str) -> list[str]:
        return list(pd.read_json(self.data_file(split), lines=True)[TEXT].astype(str))

    def data_file(self, split: str) -> str:
        return os.path.join(self.folder, "data", f"{split}.jsonl")

    @classmethod
    def load(cls, folder: str) -> PreparedDataset:
        with open(os.path.join(folder, "prepared.json"), encoding="utf-8") as handle:
            return cls(**json.load(handle))

    def open_cache(self) -> TeacherCache:
        return TeacherCache.open(self.cache_dir, verify=False)


def carve_splits(data: TextClassificationData, options: PrepareOptions) -> dict[str, pd.DataFrame]:
    """Validation is carved out of the train split (the offline corpora ship only train/test); seeded subsets."""
    rng = np.random.default_rng(options.subset_seed)
    train = data.splits["train"].to_pandas()
    order = rng.permutation(len(train))
    needed = options.validation + options.train
    if needed > len(train):
        raise ValueError(f"{data.name}: train has {len(train)} rows, fewer than validation + train = {needed}.")
    test = data.splits["test"].to_pandas()
    test_rows = np.sort(rng.permutation(len(test))[: options.test])
    frames = {
        "validation": train.iloc[np.sort(order[: options.validation])],
        "train": train.iloc[np.sort(order[options.validation : needed])],
        "test": test.iloc[test_rows],
    }
    return {split: frame.reset_index(drop=True) for split, frame in frames.items()}


def write_split(frame: pd.DataFrame, names: list[str], path: str, hide_labels: np.ndarray | None = None) -> None:
    columns = {TEXT: frame[TEXT], LABEL: [names[y] for y in frame[LABEL]]}
    if hide_labels is not None:
        columns[LABEL] = [None if hide else label for hide, label in zip(hide_labels, columns[LABEL])]
    if FINE_LABEL in frame.columns:
        columns[FINE_LABEL] = frame[FINE_LABEL]
    table = pd.DataFrame(columns)
    write_atomic(path, lambda tmp: table.to_json(tmp, orient="records", lines=True, force_ascii=False))


def save_array(path: str, array: np.ndarray) -> None:
    def save(tmp: str) -> None:
        with open(tmp, "wb") as handle:  # a handle: np.save would append ".npy" to a path not ending in it
            np.save(handle, array)

    write_atomic(path, save)


def _save_list(path: str, values: list[str]) -> None:
    def dump(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(values, handle)

    write_atomic(path, dump)


def _train_teacher(folder: str, names: list[str], options: PrepareOptions, teacher_file: str) -> dict:
    """Fine-tune the teacher with the job of `hf-lelp train-teacher` (in process: no script path to find)."""
    output = os.path.join(folder, "teacher")
    results_path = os.path.join(output, RESULTS_FILE)
    if not os.path.isfile(results_path):
        data_args = DataArguments(
            train_file=teacher_file,
            test_file=os.path.join(folder, "data", "test.jsonl"),
            class_names=names,
            max_length=options.max_length,
        )
        args = TrainingArguments(
            output_dir=output,
            num_train_epochs=options.teacher_epochs,
            learning_rate=options.teacher_learning_rate,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=64,
            warmup_steps=10,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        logger.info("Training the teacher %s on %s into %s", options.teacher_model, teacher_file, output)
        train_teacher(data_args, TeacherArguments(teacher_model=options.teacher_model), args)
        gc.collect()  # the teacher and its Trainer are garbage now; the cache pass reloads it from disk
    with open(results_path, encoding="utf-8") as handle:
        return json.load(handle)


def prepare(
    name: str,
    work_dir: str,
    options: PrepareOptions,
    data_files: dict[str, str] | None = None,
    fine_label_column: str | None = None,
) -> PreparedDataset:
    """Prepare an offline dataset by name, or local `data_files` {"train": ..., "test": ...} named `name`."""
    folder = os.path.join(work_dir, name if not options.teacher_train else f"{name}_transfer")
    summary_path = os.path.join(folder, "prepared.json")
    if os.path.isfile(summary_path):
        prepared = PreparedDataset.load(folder)
        if prepared.options == asdict(options):
            return prepared
        raise ValueError(f"{folder} was prepared with other options {prepared.options}: use another --work_dir.")
    data = load_text_classification(name, data_files=data_files, fine_label_column=fine_label_column)
    names = data.label_names
    frames = carve_splits(data, options)
    hidden_labels = None
    if options.teacher_train:
        hidden_labels = np.arange(len(frames["train"])) >= options.teacher_train
        teacher_rows = frames["train"].iloc[: options.teacher_train]
        write_split(teacher_rows, names, os.path.join(folder, "data", "teacher.jsonl"))
    for split, frame in frames.items():
        hide = hidden_labels if split == "train" else None
        write_split(frame, names, os.path.join(folder, "data", f"{split}.jsonl"), hide)
        labels = frame[LABEL].to_numpy().astype(np.int64)
        if split == "train" and hidden_labels is not None:
            labels = np.where(hidden_labels, UNLABELLED, labels)
        save_array(os.path.join(folder, f"labels_{split}.npy"), labels)
        if FINE_LABEL in frame.columns:
            _save_list(os.path.join(folder, f"fine_labels_{split}.json"), [str(v) for v in frame[FINE_LABEL]])
    teacher_file = os.path.join(folder, "data", "teacher.jsonl" if options.teacher_train else "train.jsonl")
    teacher = _train_teacher(folder, names, options, teacher_file)
    # The transfer set: the train split as the students see it (labels hidden in the unlabelled setting).
    transfer = load_text_classification(
        f"{name}-benchmark",
        data_files={"train": os.path.join(folder, "data", "train.jsonl")},
        label_names=names,
        fine_label_column=FINE_LABEL if FINE_LABEL in frames["train"].columns else None,
    )
    if not os.path.isfile(os.path.join(folder, "teacher_cache", "meta.json")):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        teacher_path = os.path.join(folder, "teacher")
        build_teacher_cache(
            AutoModelForSequenceClassification.from_pretrained(teacher_path),
            AutoTokenizer.from_pretrained(teacher_path),
            transfer.splits["train"],
            os.path.join(folder, "teacher_cache"),
            label_names=names,
            max_length=options.max_length,
            batch_size=64,
            teacher_name=options.teacher_model,
            dataset_name=name,
        )
    for split, frame in frames.items():
        path = os.path.join(folder, f"features_{split}.npy")
        if not os.path.isfile(path):
            features = sentence_embeddings(
                resolve_model(options.feature_model),
                list(frame[TEXT]),
                max_length=options.max_length,
                num_layers=options.feature_layers,
            )
            save_array(path, features)
    prepared = PreparedDataset(
        name=name,
        folder=folder,
        label_names=names,
        teacher_accuracy=float(teacher["test_accuracy"]),
        teacher_macro_f1=float(teacher["test_macro_f1"]),
        split_sizes={split: len(frame) for split, frame in frames.items()},
        options=asdict(options),
    )
    # Written last and atomically: its presence marks the whole preparation as done.
    write_json_atomic(summary_path, asdict(prepared))
    return prepared
