"""One student run of the MLP track: a method, its hyperparameters and a seed -> validation or test metrics.

The student is trained by the same LELPTrainer as every other student, from the prepared cache (no teacher)."""

from __future__ import annotations

import functools
import logging
import time

import datasets
import numpy as np
from transformers import default_data_collator, set_seed

from hf_lelp import TeacherCache
from hf_lelp.data.columns import EXAMPLE_ID
from hf_lelp.methods.registry import get_method
from hf_lelp.methods.sources import SubclassInputs
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.metrics import build_compute_metrics
from hf_lelp.training.trainer import method_trainer

from .embedding_student import FEATURES, embedding_student
from .prepare import PreparedDataset

logger = logging.getLogger(__name__)
# Fixed for every method (ours): a 2-layer MLP as in the paper's cheap NLP setting.
STUDENT_DEFAULTS = {
    "hidden_size": 256,
    "dropout": 0.1,
    "num_train_epochs": 20,
    "per_device_train_batch_size": 64,
    "weight_decay": 0.01,
}
# Settings of the student model itself; every other setting (the defaults above and a method's searched knobs, as
# its registry grid names them) is a LELPConfig field.
MODEL_KEYS = ("hidden_size", "dropout")


@functools.lru_cache(maxsize=4)
def _split_dataset(folder: str, split: str) -> datasets.Dataset:
    prepared = _prepared(folder)
    features = prepared.features(split)
    return datasets.Dataset.from_dict(
        {FEATURES: features, "labels": prepared.labels(split), EXAMPLE_ID: np.arange(len(features))}
    ).with_format("torch")


@functools.lru_cache(maxsize=4)
def _prepared(folder: str) -> PreparedDataset:
    return PreparedDataset.load(folder)


@functools.lru_cache(maxsize=4)
def _cache(folder: str) -> TeacherCache:
    return _prepared(folder).open_cache()


@functools.lru_cache(maxsize=4)
def _fine_labels(folder: str) -> dict[int, str] | None:
    """Example id -> fine label of the train split (None without fine labels): the cache holds its rows in order."""
    fine = _prepared(folder).fine_labels("train")
    return dict(enumerate(fine)) if fine is not None else None


def subclass_source(folder: str, args: LELPConfig):
    """The pseudo-subclasses of `args.method`, built by its registry entry (None for a method without them)."""
    recipe = get_method(args.method).subclass_source
    if recipe is None:
        return None
    return recipe(SubclassInputs(_cache(folder), args, fine_labels=_fine_labels(folder)))


def run_student(
    folder: str, method: str, hparams: dict, seed: int, eval_split: str, output_dir: str
) -> dict[str, float]:
    """Train one MLP student; returns accuracy, macro_f1 on `eval_split` and train_seconds."""
    prepared, cache = _prepared(folder), _cache(folder)
    settings = {**STUDENT_DEFAULTS, **hparams}
    args = LELPConfig(
        output_dir=output_dir,
        method=method,
        seed=seed,
        projection_seed=seed,  # the rotation / random directions / k-means seeding vary with the run seed
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        per_device_eval_batch_size=1024,
        **{k: v for k, v in settings.items() if k not in MODEL_KEYS},
    )
    set_seed(seed)
    source = subclass_source(folder, args)
    model = embedding_student(
        prepared.features("train").shape[1],
        prepared.label_names,
        hidden_size=settings["hidden_size"],
        dropout=settings["dropout"],
        seed=seed,
    )
    train = _split_dataset(folder, "train")
    if not args.uses_teacher:
        labelled = np.flatnonzero(prepared.labels("train") >= 0)
        train = train.select(labelled)  # a method without the teacher (CE) learns from the labelled rows only
    num_labels = len(prepared.label_names)
    metrics = build_compute_metrics(num_labels)
    trainer = method_trainer(
        model, args, cache, source, train, num_labels, data_collator=default_data_collator, compute_metrics=metrics
    )
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    metrics = trainer.evaluate(_split_dataset(folder, eval_split), metric_key_prefix=eval_split)
    return {
        "accuracy": float(metrics[f"{eval_split}_accuracy"]),
        "macro_f1": float(metrics[f"{eval_split}_macro_f1"]),
        "train_seconds": seconds,
    }
