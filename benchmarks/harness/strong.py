"""Preparation of the strong-teacher study (issue #14): one teacher per (dataset, teacher model), its learning rate
and epochs chosen on validation, its cache over the whole shuffled train split, and nested transfer sets.

Layout under runs/strong/<dataset>/<teacher>/:
    data/{train,validation,test,teacher}.jsonl  train in a seeded random order, so that its first n rows are a
                                                random transfer set of size n (nested across sizes)
    teacher_search/lr<lr>/                      one fine-tuning per learning rate, best epoch kept (validation)
    teacher/                                    the chosen one; teacher_choice.json says why
    full/teacher_cache/                         the teacher's cache over all of train (the teacher runs once)
    n<size>/                                    a PreparedDataset (benchmarks.harness.prepare's layout) whose train
                                                split is the first <size> rows, with the matching rows of the cache
Every step is skipped when its output exists, so an interrupted stage resumes where it stopped.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from transformers import TrainerCallback

from hf_lelp import TeacherCache, build_teacher_cache
from hf_lelp.base.io_utils import write_atomic, write_json_atomic
from hf_lelp.cache.writer import write_cache
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import LABEL, TEXT
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import dataset_fingerprint
from hf_lelp.teacher import TeacherArguments, train_teacher
from hf_lelp.training.arguments import DataArguments
from hf_lelp.training.metrics import build_compute_metrics

from .embedding_student import sentence_embeddings
from .prepare import PreparedDataset, save_array, write_split

logger = logging.getLogger(__name__)

# Learning rates searched for each teacher (ours). mpnet: the usual range for fine-tuning a 110M encoder (a probe
# at 1e-4 reached 82.2 % on RT, 87.5 % at a lower rate); MiniLM-L6: around the MLP benchmark's 1e-4.
TEACHER_LEARNING_RATES = {"all-mpnet-base-v2": (2e-5, 5e-5), "all-MiniLM-L6-v2": (5e-5, 1e-4)}
TEACHER_MAX_EPOCHS = {"all-mpnet-base-v2": 2, "all-MiniLM-L6-v2": 3}


@dataclass
class StrongOptions:
    teacher_model: str = "all-mpnet-base-v2"
    validation: int = 500
    test: int = 1000
    teacher_rows: int = 2000  # the teacher learns from the first rows of the shuffled train split (labelled)
    max_length: int = 64
    teacher_learning_rates: tuple[float, ...] = ()  # empty: TEACHER_LEARNING_RATES[teacher_model]
    teacher_max_epochs: int = 0  # 0: TEACHER_MAX_EPOCHS[teacher_model]; the best epoch on validation is kept
    teacher_batch_size: int = 32
    feature_model: str = "all-MiniLM-L6-v2"
    feature_layers: int = 2
    subset_seed: int = 0
    max_train: int = 0  # 0: every train row not in validation; > 0: the first max_train of the shuffled rest
    transfer_sizes: tuple[int, ...] = field(default=(1000, 3000, 10000, 30000))

    def learning_rates(self) -> tuple[float, ...]:
        return tuple(self.teacher_learning_rates) or TEACHER_LEARNING_RATES.get(self.teacher_model, (5e-5,))

    def max_epochs(self) -> int:
        return self.teacher_max_epochs or TEACHER_MAX_EPOCHS.get(self.teacher_model, 2)


def teacher_folder_name(teacher_model: str) -> str:
    return os.path.basename(teacher_model.rstrip("/"))


def write_data(dataset: str, folder: str, options: StrongOptions) -> list[str]:
    """Seeded validation/test subsets and the rest of train in a seeded order; returns the label names."""
    data = load_text_classification(dataset)
    names = data.label_names
    if os.path.isfile(os.path.join(folder, "data", "teacher.jsonl")):
        return names
    rng = np.random.default_rng(options.subset_seed)
    train = data.splits["train"].to_pandas()
    order = rng.permutation(len(train))
    test = data.splits["test"].to_pandas()
    test_rows = np.sort(rng.permutation(len(test))[: options.test])
    frames = {
        "validation": train.iloc[np.sort(order[: options.validation])],
        # shuffled: its prefixes are random transfer sets, nested across sizes
        "train": train.iloc[order[options.validation :][: options.max_train or None]],
        "test": test.iloc[test_rows],
    }
    frames["teacher"] = frames["train"].iloc[: options.teacher_rows]
    for split, frame in frames.items():  # teacher.jsonl last: its presence marks the data as written
        frame = frame.reset_index(drop=True)
        write_split(frame, names, os.path.join(folder, "data", f"{split}.jsonl"))
        if split != "teacher":
            save_array(os.path.join(folder, f"labels_{split}.npy"), frame[LABEL].to_numpy().astype(np.int64))
    return names


class EvaluationLog(TrainerCallback):
    """Every evaluation of a training run (the epochs' validation accuracies)."""

    def __init__(self) -> None:
        self.evaluations: list[dict] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations.append({"epoch": state.epoch, **(metrics or {})})


def _teacher_run(folder: str, names: list[str], options: StrongOptions, lr: float) -> dict:
    """Fine-tune with one learning rate, evaluating on validation after each epoch; keeps the best epoch."""
    output = os.path.join(folder, "teacher_search", f"lr{lr:g}")
    summary_path = os.path.join(output, "search_result.json")
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as handle:
            return json.load(handle)
    from transformers import TrainingArguments

    data_args = DataArguments(
        train_file=os.path.join(folder, "data", "teacher.jsonl"),
        validation_file=os.path.join(folder, "data", "validation.jsonl"),
        class_names=names,
        max_length=options.max_length,
        eval_split="validation",
    )
    args = TrainingArguments(
        output_dir=output,
        num_train_epochs=options.max_epochs(),
        learning_rate=lr,
        per_device_train_batch_size=options.teacher_batch_size,
        per_device_eval_batch_size=64,
        warmup_steps=0.06,  # transformers 5: a float below 1 is a fraction of the steps
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        save_only_model=True,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    logger.info(
        "Teacher %s, lr %g, up to %d epochs, into %s", options.teacher_model, lr, args.num_train_epochs, output
    )
    history = EvaluationLog()
    results = train_teacher(data_args, TeacherArguments(teacher_model=options.teacher_model), args, [history])
    for state_dir in [d for d in os.listdir(output) if d.startswith("checkpoint-")]:
        shutil.rmtree(os.path.join(output, state_dir))  # the best epoch is saved in `output` itself
    summary = {
        "learning_rate": lr,
        "validation_accuracy": float(results["validation_accuracy"]),
        "validation_macro_f1": float(results["validation_macro_f1"]),
        "epochs": [
            {"epoch": e["epoch"], "validation_accuracy": e["eval_accuracy"]}
            for e in history.evaluations
            if "eval_accuracy" in e  # the per-epoch evaluations (the final one is keyed validation_*)
        ],
    }
    write_json_atomic(summary_path, summary)
    gc.collect()
    return summary


def _evaluate_on_test(teacher_dir: str, folder: str, names: list[str], max_length: int) -> dict:
    """The chosen teacher's test metrics (reported only: nothing is chosen on them)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, EvalPrediction

    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    test = load_text_classification(
        "test", data_files={"train": os.path.join(folder, "data", "test.jsonl")}, label_names=names
    ).splits["train"]
    logits = []
    with torch.no_grad():
        for start in range(0, len(test), 64):
            batch = tokenizer(
                test[TEXT][start : start + 64],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            logits.append(model(**batch).logits.float())
    predictions = EvalPrediction(predictions=torch.cat(logits).numpy(), label_ids=np.asarray(test[LABEL]))
    metrics = build_compute_metrics(len(names))(predictions)
    return {f"test_{k}": float(v) for k, v in metrics.items()}


def choose_teacher(folder: str, names: list[str], options: StrongOptions) -> dict:
    """Every learning rate's run, the best on validation copied to teacher/, its test metrics measured."""
    choice_path = os.path.join(folder, "teacher", "teacher_choice.json")
    if os.path.isfile(choice_path):
        with open(choice_path, encoding="utf-8") as handle:
            return json.load(handle)
    runs = [_teacher_run(folder, names, options, lr) for lr in options.learning_rates()]
    best = max(runs, key=lambda r: (r["validation_accuracy"], r["validation_macro_f1"]))
    source = os.path.join(folder, "teacher_search", f"lr{best['learning_rate']:g}")
    target = os.path.join(folder, "teacher")
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint-*", "search_result.json"))
    choice = {
        "teacher_model": options.teacher_model,
        "chosen_on": "validation accuracy (macro-F1 breaks ties)",
        "chosen": best,
        "searched": runs,
        "train_examples": options.teacher_rows,
        **_evaluate_on_test(target, folder, names, options.max_length),
    }
    write_json_atomic(choice_path, choice)  # last: marks the choice as made
    return choice


def build_full_cache(folder: str, names: list[str], options: StrongOptions) -> TeacherCache:
    cache_dir = os.path.join(folder, "full", "teacher_cache")
    if not os.path.isfile(os.path.join(cache_dir, "meta.json")):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        teacher_dir = os.path.join(folder, "teacher")
        train = _load_train(os.path.join(folder, "data", "train.jsonl"), names)
        build_teacher_cache(
            AutoModelForSequenceClassification.from_pretrained(teacher_dir),
            AutoTokenizer.from_pretrained(teacher_dir),
            train,
            cache_dir,
            label_names=names,
            max_length=options.max_length,
            batch_size=64,
            teacher_name=options.teacher_model,
            dataset_name=os.path.basename(os.path.dirname(folder)),
        )
    return TeacherCache.open(cache_dir, verify=False)


def _load_train(path: str, names: list[str]):
    """A train file as every job loads it (example ids 0..n-1 in file order)."""
    return load_text_classification("train", data_files={"train": path}, label_names=names).splits["train"]


def build_features(folder: str, options: StrongOptions) -> None:
    """Frozen sentence embeddings of the MLP track, for the whole shuffled train split and the evaluation splits."""
    import pandas as pd

    for split in ("train", "validation", "test"):
        path = os.path.join(folder, "full", f"features_{split}.npy")
        if not os.path.isfile(path):
            texts = list(pd.read_json(os.path.join(folder, "data", f"{split}.jsonl"), lines=True)[TEXT].astype(str))
            features = sentence_embeddings(
                resolve_model(options.feature_model), texts, options.max_length, num_layers=options.feature_layers
            )
            save_array(path, features)


def transfer_set(folder: str, names: list[str], options: StrongOptions, size: int, choice: dict) -> PreparedDataset:
    """The first `size` train rows as a PreparedDataset: data, labels, features and the cache's first rows (the
    cache keeps the example ids 0..size-1, so its fingerprint is that of the prefix file)."""
    target = os.path.join(folder, f"n{size}")
    if os.path.isfile(os.path.join(target, "prepared.json")):
        return PreparedDataset.load(target)
    full = TeacherCache.open(os.path.join(folder, "full", "teacher_cache"), verify=False)
    if size > full.num_examples:
        raise ValueError(f"Transfer size {size} exceeds the {full.num_examples} train rows of {folder}.")
    with open(os.path.join(folder, "data", "train.jsonl"), encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(size)]  # the file's own lines: no type guessing on the way
    os.makedirs(os.path.join(target, "data"), exist_ok=True)
    train_file = os.path.join(target, "data", "train.jsonl")

    def write_lines(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as out:
            out.writelines(lines)

    write_atomic(train_file, write_lines)
    for split in ("validation", "test"):
        shutil.copyfile(os.path.join(folder, "data", f"{split}.jsonl"), os.path.join(target, "data", f"{split}.jsonl"))
        shutil.copyfile(os.path.join(folder, f"labels_{split}.npy"), os.path.join(target, f"labels_{split}.npy"))
        shutil.copyfile(
            os.path.join(folder, "full", f"features_{split}.npy"), os.path.join(target, f"features_{split}.npy")
        )
    save_array(os.path.join(target, "labels_train.npy"), np.load(os.path.join(folder, "labels_train.npy"))[:size])
    save_array(
        os.path.join(target, "features_train.npy"), np.load(os.path.join(folder, "full", "features_train.npy"))[:size]
    )
    cache_dir = os.path.join(target, "teacher_cache")
    if not os.path.isfile(os.path.join(cache_dir, "meta.json")):
        fingerprint = dict(full.fingerprint)
        fingerprint.update(dataset_sha256=dataset_fingerprint(_load_train(train_file, names)), num_examples=size)
        hidden = np.asarray(full.hidden[:size])
        if fingerprint["dtype"] != "float32":
            raise ValueError(f"{full.path}: transfer sets are cut from float32 caches only.")
        write_cache(
            cache_dir,
            torch.from_numpy(hidden),
            torch.from_numpy(np.asarray(full.logits[:size])),
            torch.from_numpy(np.asarray(full.labels[:size])),
            full.weight,
            full.bias,
            fingerprint,
            text_hashes=full.text_hashes[:size] if full.records_texts else None,  # the cut's rows stay checkable
        )
    prepared = PreparedDataset(
        name=os.path.basename(os.path.dirname(folder)),
        folder=target,
        label_names=names,
        teacher_accuracy=choice["test_accuracy"],
        teacher_macro_f1=choice["test_macro_f1"],
        split_sizes={"train": size, "validation": options.validation, "test": options.test},
        options={**asdict(options), "transfer_size": size},
    )
    write_json_atomic(os.path.join(target, "prepared.json"), asdict(prepared))
    return prepared


def prepare_strong(dataset: str, work_dir: str, options: StrongOptions) -> dict[int, PreparedDataset]:
    """All of one (dataset, teacher)'s preparation; returns the transfer sets the train split allows, by size."""
    folder = os.path.join(work_dir, dataset, teacher_folder_name(options.teacher_model))
    options_path = os.path.join(folder, "strong_options.json")
    # What the teacher, its cache and the splits depend on (transfer sets of any size are cut on demand).
    fixed = json.loads(json.dumps({k: v for k, v in asdict(options).items() if k != "transfer_sizes"}))
    if os.path.isfile(options_path):
        with open(options_path, encoding="utf-8") as handle:
            # an option added later reads as its default (the folder was prepared before it existed)
            found = {**json.loads(json.dumps(asdict(StrongOptions()))), **json.load(handle)}
        found.pop("transfer_sizes", None)
        if found != fixed:
            raise ValueError(f"{folder} was prepared with other options {found}: use another --work_dir.")
    else:
        write_json_atomic(options_path, fixed)
    names = write_data(dataset, folder, options)
    choice = choose_teacher(folder, names, options)
    full = build_full_cache(folder, names, options)
    build_features(folder, options)
    sizes = sorted({min(size, full.num_examples) for size in options.transfer_sizes})
    return {size: transfer_set(folder, names, options, size, choice) for size in sizes}
