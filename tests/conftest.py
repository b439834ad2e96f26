"""Tiny models, a tiny tokenizer and a synthetic few-class corpus, all built in-process (no network)."""

from __future__ import annotations

import os
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmark harness (benchmarks.harness) is not in the installed package: tests import it from the checkout.
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Two sub-topics per class, so that the data has real sub-class structure for LELP to find.
TOPICS = {
    0: [["awful", "boring", "dull", "slow"], ["broken", "cheap", "noisy", "ugly"]],
    1: [["great", "fun", "lovely", "witty"], ["solid", "sturdy", "quiet", "sleek"]],
    2: [["okay", "average", "fine", "plain"], ["usual", "normal", "common", "middling"]],
}
FILLER = ["the", "a", "movie", "phone", "was", "is", "very", "quite", "and", "it"]
VOCAB = SPECIAL + FILLER + sorted({w for topics in TOPICS.values() for t in topics for w in t})


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


def make_tokenizer() -> BertTokenizerFast:
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)


def make_texts(n: int, num_classes: int = 2, seed: int = 0) -> tuple[list[str], list[int], list[int]]:
    """(texts, labels, fine labels = class * 2 + sub-topic)."""
    rng = np.random.default_rng(seed)
    texts, labels, fine = [], [], []
    for i in range(n):
        label, topic = i % num_classes, int(rng.integers(2))
        words = list(rng.choice(TOPICS[label][topic], size=3)) + list(rng.choice(FILLER, size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(label)
        fine.append(label * 2 + topic)
    return texts, labels, fine


def make_split(n: int, num_classes: int = 2, seed: int = 0) -> datasets.Dataset:
    texts, labels, _ = make_texts(n, num_classes, seed)
    return datasets.Dataset.from_dict({"example_id": np.arange(n), "text": texts, "label": labels})


def tiny_bert(num_labels: int = 2, hidden: int = 32, layers: int = 2, seed: int = 0, dropout: float = 0.0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        # Unnamed classes (transformers' default LABEL_i): an in-memory teacher for any data's class names; a teacher
        # with names is matched to the data's by name (hf_lelp.data.label_order), see save_tiny_model(label_names=...).
        id2label={i: f"LABEL_{i}" for i in range(num_labels)},
        label2id={f"LABEL_{i}": i for i in range(num_labels)},
    )
    return BertForSequenceClassification(config).eval()


def hold(folder):
    """Another live process holding `folder`, as a concurrent hf-lelp run does."""
    script = (
        "import sys, time; from hf_lelp.base.locks import exclusive_folder\n"
        f"with exclusive_folder({str(folder)!r}, 'test'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def save_tiny_model(
    folder, num_labels: int = 2, hidden: int = 32, layers: int = 2, seed: int = 0, label_names: list[str] | None = None
) -> str:
    """A tiny BERT classifier + tokenizer saved like a real checkpoint (teacher or student)."""
    model = tiny_bert(num_labels, hidden, layers, seed)
    names = label_names or [f"class_{i}" for i in range(num_labels)]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return str(folder)


def synthetic_fingerprint(dtype: str = "float32", **overrides) -> dict:
    fingerprint = {
        "teacher": "synthetic",
        "teacher_head_sha256": "0" * 64,
        "dataset": "synthetic",
        "dataset_sha256": "1" * 64,
        "num_examples": 0,
        "max_length": 32,
        "label_names": ["a", "b"],
        "dtype": dtype,
    }
    fingerprint.update(overrides)
    return fingerprint


def synthetic_cache(
    folder, n: int = 300, d: int = 16, c: int = 2, seed: int = 0, dtype: str = "float32", unlabelled: bool = False
):
    """A cache of Gaussian embeddings with class-dependent means and a random linear head (logits = W h + b)."""
    from hf_lelp.cache.writer import write_cache

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % c
    centres = torch.randn(c, d, generator=generator) * 2
    spread = torch.linspace(3.0, 0.2, d)  # anisotropic, so PCA has well separated directions
    hidden = centres[labels] + torch.randn(n, d, generator=generator) * spread
    weight = torch.randn(c, d, generator=generator)
    bias = torch.randn(c, generator=generator)
    logits = hidden @ weight.T + bias
    names = [f"class_{i}" for i in range(c)]
    stored_labels = torch.full((n,), -1) if unlabelled else labels
    return write_cache(
        str(folder),
        hidden,
        logits,
        stored_labels,
        weight,
        bias,
        synthetic_fingerprint(dtype, num_examples=n, label_names=names),
    )


@pytest.fixture(scope="session")
def project(tmp_path_factory):
    """Local csv files, a tiny teacher trained by the recipe, and YAML configs for the recipes."""
    folder = tmp_path_factory.mktemp("recipe")
    names = ["neg", "pos"]
    for split, n, seed in (("train", 120, 0), ("test", 40, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        pd.DataFrame({"review": texts, "stars": [names[y] for y in labels]}).to_csv(
            folder / f"{split}.csv", index=False
        )
    save_tiny_model(folder / "student_init", hidden=32, layers=2, seed=2)
    config = {
        "train_file": str(folder / "train.csv"),
        "test_file": str(folder / "test.csv"),
        "text_column": "review",
        "label_column": "stars",
        "max_length": 24,
        "teacher_model": str(folder / "student_init"),
        "student": str(folder / "student_init"),
        "student_num_layers": 1,
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 32,
        "num_train_epochs": 1,
        "learning_rate": 1.0e-3,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "disable_tqdm": True,
        "seed": 0,
    }
    teacher_config = {k: v for k, v in config.items() if k not in ("student", "student_num_layers")}
    (folder / "teacher.yaml").write_text(
        yaml.safe_dump({**teacher_config, "output_dir": str(folder / "teacher"), "num_train_epochs": 3})
    )
    distill_config = {k: v for k, v in config.items() if k != "teacher_model"}
    distill_config.update(
        {
            "teacher": str(folder / "teacher"),
            "cache_dir": str(folder / "cache"),
            "output_dir": str(folder / "will_be_overridden"),
            "num_subclasses": 2,
        }
    )
    (folder / "distill.yaml").write_text(yaml.safe_dump(distill_config))
    run([sys.executable, "recipes/train_teacher.py", str(folder / "teacher.yaml")])
    (folder / "ce_results.json").write_text('{"method": "ce", "test_accuracy": 0.5, "test_macro_f1": 0.4}')
    return folder


def run_expecting_failure(command) -> str:
    """Run a recipe that must fail; returns its stdout + stderr (for the error text)."""
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert result.returncode != 0
    return result.stdout + result.stderr


def run(command, **env):
    result = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def run_distil(project, out, *flags, **env):
    """recipes/distill.py as a script (a subprocess) on the project's distill.yaml, writing to `out`; must succeed."""
    return run(
        [sys.executable, "recipes/distill.py", str(project / "distill.yaml"), "--output_dir", str(out), *flags], **env
    )


def distil(project, out, *flags) -> dict:
    """recipes/distill.py's main in this process on the project's distill.yaml, writing to `out`; its results."""
    recipes = os.path.join(ROOT, "recipes")
    if recipes not in sys.path:
        sys.path.insert(0, recipes)
    import distill

    return distill.main([str(project / "distill.yaml"), "--output_dir", str(out), *flags])


# Model selection on a validation split carved from train: the flags a best-checkpoint run needs.
BEST_ON_VALIDATION = (
    "--load_best_model_at_end",
    "true",
    "--eval_strategy",
    "epoch",
    "--save_strategy",
    "epoch",
    "--validation_from_train",
    "20",
)


def cpu_config(output_dir, **overrides):
    """LELPConfig for a quiet in-process CPU run: no reporting, no checkpoints, no progress bars; `overrides` win."""
    from hf_lelp import LELPConfig

    options = {"report_to": "none", "use_cpu": True, "save_strategy": "no", "disable_tqdm": True, **overrides}
    return LELPConfig(output_dir=str(output_dir), **options)


def tiny_teacher_cache(folder, tokenizer, split, label_names: list[str], max_length: int):
    """The teacher pass of a tiny 48-wide teacher (tiny_bert(2, hidden=48, seed=1)) over `split`, cached in folder."""
    from hf_lelp import build_teacher_cache

    teacher = tiny_bert(2, hidden=48, seed=1)
    return build_teacher_cache(teacher, tokenizer, split, str(folder), label_names=label_names, max_length=max_length)


def cache_trainer(model, args, cache, tokenizer, split, max_length: int, **options):
    """An LELPTrainer that learns from `cache` alone: projections fitted on it with args.num_subclasses, and `split`
    tokenized to `max_length`."""
    from transformers import DataCollatorWithPadding

    from hf_lelp import FitOptions, LELPTrainer, fit_projections, tokenize_split

    return LELPTrainer(
        model=model,
        args=args,
        teacher_cache=cache,
        projections=fit_projections(cache, FitOptions(num_subclasses=args.num_subclasses)),
        train_dataset=tokenize_split(split, tokenizer, max_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        **options,
    )


@pytest.fixture(scope="session", autouse=True)
def default_cache_home(tmp_path_factory):
    """Default teacher caches (no --cache_dir) go to a temporary folder, not the user's ~/.cache; subprocesses
    inherit it through the environment."""
    os.environ["HF_LELP_CACHE"] = str(tmp_path_factory.mktemp("hf_lelp_cache"))
    # evaluate copies each metric script it loads into HF_MODULES_CACHE and makes folders in HF_METRICS_CACHE
    # (~/.cache/huggingface by default); it read the variables when first imported, so set its config too.
    import evaluate

    for variable in ("HF_MODULES_CACHE", "HF_METRICS_CACHE"):
        folder = tmp_path_factory.mktemp(variable.lower())
        os.environ[variable] = str(folder)  # subprocesses
        setattr(evaluate.config, variable, folder)
    yield
