"""Acceptance: a newcomer's first runs on their own data (issue 19), the way users run them.

Foreign data the project never ships, written here: string labels, columns `review`/`sentiment`, 3 and 5 classes,
CSV files for the CLI and a DatasetDict with a ClassLabel for the Python API. `hf-lelp train-teacher`, `hf-lelp
distill` for every built-in method family (labels only, KD, LELP, a feature method, an ablation) and the one-call
`LELPTrainer(teacher=...)` must each give outputs that reflect *the user's* data: id2label is the user's class names
in the user's order, train_examples the user's row count, the card names the user's files, and the exported model
reloads with `transformers.pipeline` and answers with the user's class names. Every run happens outside the
checkout (cwd = a temp folder). The installed-wheel part is tests/wheel_smoke.py (`make test-wheel`).
"""

from __future__ import annotations

import gc
import json
import os
import weakref

import datasets
import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForSequenceClassification, pipeline

from conftest import FILLER, TOPICS, cpu_config, save_tiny_model
from hf_lelp import LELPConfig, LELPTrainer, commands
from hf_lelp.methods.registry import get_method

THREE = ["positive", "negative", "neutral"]  # the user's order (not sorted): given with --class_names / ClassLabel
FIVE = ["very negative", "negative", "neutral", "positive", "very positive"]  # no --class_names: sorted
WORDS = [words for label in sorted(TOPICS) for words in TOPICS[label]]  # six topics of the tiny vocabulary
ROWS = {"train": 60, "test": 25}
# One of each built-in family: labels only, KD, LELP, a feature method, an ablation.
FAMILIES = ["ce", "kd", "lelp", "fitnet", "random"]
FAST = ["--max_length", "16", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32"]
FAST += ["--report_to", "none", "--use_cpu", "true", "--save_strategy", "no", "--disable_tqdm", "true", "--seed", "0"]


def user_texts(n: int, names: list[str], seed: int) -> tuple[list[str], list[str]]:
    """Texts whose words say their class (class k: topic k of the tiny vocabulary), with their class names."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        k = (i * 7 + seed) % len(names)  # not sorted by class, not aligned with the names' order
        words = [*rng.choice(WORDS[k], 3), *rng.choice(FILLER, 3)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(names[k])
    return texts, labels


def write_user_files(folder, names: list[str]) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    paths = {}
    for seed, (split, n) in enumerate(ROWS.items()):
        texts, labels = user_texts(n, names, seed)
        paths[split] = os.path.join(folder, f"{split}.csv")
        pd.DataFrame({"review": texts, "sentiment": labels}).to_csv(paths[split], index=False)
    return paths


def file_flags(paths: dict[str, str]) -> list[str]:
    return ["--train_file", paths["train"], "--test_file", paths["test"], "--text_column", "review"] + [
        "--label_column",
        "sentiment",
    ]


def id2label(folder) -> list[str]:
    config = json.loads(open(os.path.join(folder, "config.json"), encoding="utf-8").read())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def assert_answers_with(folder, names: list[str]) -> None:
    """The export reloads with plain transformers and answers with the user's class names."""
    texts, _ = user_texts(10, names, 7)
    answers = pipeline("text-classification", model=str(folder), device=-1)(texts)
    assert len(answers) == len(texts) and {answer["label"] for answer in answers} <= set(names), answers


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A user's folder outside the checkout: 3-class CSV files, a checkpoint to start from, and a teacher trained
    on the files with `hf-lelp train-teacher`."""
    folder = tmp_path_factory.mktemp("user")
    paths = write_user_files(folder / "my_data", THREE)
    init = save_tiny_model(folder / "init", 3, hidden=32, layers=2, seed=2)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        commands.main(
            ["train-teacher", *file_flags(paths), "--class_names", *THREE, "--teacher_model", init]
            + ["--output_dir", str(folder / "teacher"), "--num_train_epochs", "4", "--learning_rate", "2e-3", *FAST]
        )
    finally:
        os.chdir(cwd)
    return {"folder": folder, "paths": paths, "init": init, "teacher": str(folder / "teacher")}


def test_train_teacher_learns_the_users_files(user):
    results = json.loads((user["folder"] / "teacher" / "teacher_results.json").read_text())
    assert results["train_examples"] == ROWS["train"], results
    assert "train.csv" in json.dumps(results), results  # it says which data it trained on
    assert id2label(user["teacher"]) == THREE
    assert_answers_with(user["teacher"], THREE)


def test_the_families_cover_the_registry_kinds():
    kinds = {name: get_method(name) for name in FAMILIES}
    assert not kinds["ce"].uses_teacher and kinds["kd"].subclass_source is None and kinds["kd"].uses_teacher
    assert kinds["lelp"].subclass_source is not None and kinds["fitnet"].feature_loss is not None
    assert kinds["random"].subclass_source is not None


@pytest.mark.parametrize("method", FAMILIES)
def test_distill_on_the_users_files(user, method, monkeypatch):
    monkeypatch.chdir(user["folder"])
    out = user["folder"] / f"student_{method}"
    commands.main(
        ["distill", *file_flags(user["paths"]), "--class_names", *THREE, "--teacher", user["teacher"]]
        + ["--student", user["init"], "--student_num_layers", "1", "--method", method, "--num_subclasses", "2"]
        + ["--num_train_epochs", "1", "--learning_rate", "1e-3", "--output_dir", str(out), *FAST]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == method
    assert results["train_examples"] == ROWS["train"] and results["test_examples"] == ROWS["test"], results
    assert id2label(out) == THREE
    card = (out / "README.md").read_text()
    assert "train.csv" in card and "rotten" not in card.lower(), card[:3000]
    assert all(name in card for name in THREE)
    assert_answers_with(out, THREE)


def test_five_classes_without_class_names_keep_the_users_names(tmp_path, monkeypatch):
    """5 classes named by strings, no --class_names: the documented order (sorted) everywhere, the user's names."""
    paths = write_user_files(tmp_path / "my_data", FIVE)
    init = save_tiny_model(tmp_path / "init", 5, hidden=32, layers=2, seed=2)
    monkeypatch.chdir(tmp_path)
    commands.main(
        ["train-teacher", *file_flags(paths), "--teacher_model", init, "--output_dir", "teacher"]
        + ["--num_train_epochs", "2", "--learning_rate", "2e-3", *FAST]
    )
    commands.main(
        ["distill", *file_flags(paths), "--teacher", "teacher", "--student", init, "--student_num_layers", "1"]
        + ["--num_subclasses", "2", "--num_train_epochs", "1", "--output_dir", "student", *FAST]
    )
    results = json.loads((tmp_path / "student" / "results.json").read_text())
    assert results["train_examples"] == ROWS["train"] and results["test_examples"] == ROWS["test"], results
    assert id2label(tmp_path / "teacher") == id2label(tmp_path / "student") == sorted(FIVE)
    assert "train.csv" in (tmp_path / "student" / "README.md").read_text()
    assert_answers_with(tmp_path / "student", FIVE)


# ------------------------------------------------------------------------------------------ the one-call Python API
def user_datasetdict(names: list[str], label_order: list[str] | None = None) -> datasets.DatasetDict:
    """The user's data as a DatasetDict: columns review/sentiment, sentiment a ClassLabel in `label_order`."""
    label_order = label_order or names
    features = datasets.Features(
        {"review": datasets.Value("string"), "sentiment": datasets.ClassLabel(names=label_order)}
    )
    splits = {}
    for seed, (split, n) in enumerate(ROWS.items()):
        texts, labels = user_texts(n, names, seed)
        splits[split] = datasets.Dataset.from_dict({"review": texts, "sentiment": labels}, features=features)
    return datasets.DatasetDict(splits)


def one_call_args(folder, method: str = "lelp") -> LELPConfig:
    return cpu_config(
        folder, method=method, num_subclasses=2, num_train_epochs=1, learning_rate=1e-3, per_device_train_batch_size=16
    )


def one_call_trainer(user, folder, train, **options) -> LELPTrainer:
    """The one-call API on the review/sentiment columns: the init student, the teacher, one_call_args(folder)."""
    return LELPTrainer(
        model=user["init"],
        teacher=user["teacher"],
        args=one_call_args(folder),
        train_dataset=train,
        text_column="review",
        label_column="sentiment",
        **options,
    )


@pytest.mark.parametrize("method", FAMILIES)
def test_one_call_python_api_on_a_datasetdict(user, method, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = user_datasetdict(THREE)
    student = AutoModelForSequenceClassification.from_pretrained(user["init"], num_labels=3)
    trainer = LELPTrainer(
        model=student,
        teacher=user["teacher"],
        args=one_call_args(tmp_path / "out", method),
        train_dataset=data["train"],
        eval_dataset=data["test"],
        text_column="review",
        label_column="sentiment",
        max_length=16,
        dataset_name="my_reviews",
    )
    assert len(trainer.train_dataset) == ROWS["train"]
    if get_method(method).uses_teacher:  # the CLI's default place, keyed by content; never the cwd
        home = os.path.join(os.environ["HF_LELP_CACHE"], "teacher_caches")
        assert os.path.dirname(trainer.teacher_cache.path) == home and trainer.teacher_cache.num_examples == 60
    trainer.train()
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and "eval_macro_f1" in metrics
    trainer.save_model("exported")
    assert id2label(tmp_path / "exported") == THREE
    card = (tmp_path / "exported" / "README.md").read_text()
    assert all(name in card for name in THREE) and "rotten" not in card.lower(), card[:3000]
    assert "my_reviews" in card or not get_method(method).uses_teacher, card[:3000]
    assert_answers_with(tmp_path / "exported", THREE)
    assert set(os.listdir(tmp_path)) <= {"exported", "out"}  # no cache or stray files in the user's folder


def test_one_call_maps_the_users_classes_to_the_teachers_order_by_name(user, tmp_path):
    """ClassLabel names in another order than the teacher's outputs: labels follow the teacher by name."""
    data = user_datasetdict(THREE, label_order=sorted(THREE))
    trainer = one_call_trainer(user, tmp_path / "out", data["train"], max_length=16)
    names = [trainer.model.config.id2label[i] for i in range(3)]
    assert names == THREE  # the teacher's order
    given = [sorted(THREE)[k] for k in data["train"]["sentiment"]]
    learned = [names[k] for k in trainer.train_dataset["labels"]]
    assert learned == given
    cached = np.asarray(trainer.teacher_cache.labels)
    assert [names[k] for k in cached] == given


def test_one_call_refuses_classes_the_teacher_does_not_have(user, tmp_path):
    data = user_datasetdict(["good", "bad", "meh"])
    with pytest.raises(ValueError, match=r"positive.*negative.*neutral.*good|good.*positive"):
        one_call_trainer(user, tmp_path / "out", data["train"])


def test_one_call_reuses_its_content_keyed_cache_and_frees_the_teacher(user, tmp_path):
    data = user_datasetdict(THREE)

    def trainer_on(train):
        teacher = AutoModelForSequenceClassification.from_pretrained(user["teacher"])
        alive = weakref.ref(teacher)
        trainer = LELPTrainer(
            model=user["init"],
            teacher=teacher,
            args=one_call_args(tmp_path / "out", "kd"),
            train_dataset=train,
            text_column="review",
            label_column="sentiment",
            max_length=16,
        )
        del teacher
        gc.collect()
        assert alive() is None, "the trainer keeps the teacher in memory"
        return trainer

    first, again = trainer_on(data["train"]), trainer_on(data["train"])
    assert first.teacher_cache.path == again.teacher_cache.path
    shuffled = trainer_on(data["train"].shuffle(seed=1))  # other rows under the same ids: a cache of its own
    assert shuffled.teacher_cache.path != first.teacher_cache.path
    shuffled.train()


def test_one_call_without_options_on_plain_text_and_label_columns(user, tmp_path):
    """The shortest call: columns named text/label, string labels, a checkpoint name as the student."""
    texts, labels = user_texts(ROWS["train"], THREE, 0)
    train = datasets.Dataset.from_dict({"text": texts, "label": labels})
    trainer = LELPTrainer(
        model=user["init"], teacher=user["teacher"], args=one_call_args(tmp_path / "out"), train_dataset=train
    )
    trainer.train()
    trainer.save_model(str(tmp_path / "exported"))
    assert id2label(tmp_path / "exported") == THREE
    # max_length: 128 by default, here cut to the tiny models' 64 positions; the export truncates where training did
    assert trainer.teacher_cache.fingerprint["max_length"] == 64
    saved = json.loads((tmp_path / "exported" / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 64
    assert_answers_with(tmp_path / "exported", THREE)


def test_one_call_mistakes_say_the_fix(user, tmp_path):
    data = user_datasetdict(THREE)
    common = {"model": user["init"], "args": one_call_args(tmp_path / "out", "kd"), "text_column": "review"}
    common["label_column"] = "sentiment"
    with pytest.raises(TypeError, match=r"DatasetDict.*train_dataset=data\['train'\]"):
        LELPTrainer(teacher=user["teacher"], train_dataset=data, **common)
    with pytest.raises(ValueError, match="pass teacher="):
        LELPTrainer(train_dataset=data["train"], **common)
    tokenised = data["train"].map(lambda row: {"input_ids": [2, 3]})
    with pytest.raises(ValueError, match="already tokenised"):
        LELPTrainer(teacher=user["teacher"], train_dataset=tokenised, **common)
