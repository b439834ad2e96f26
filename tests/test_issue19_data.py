"""Issue 19, data items: a newcomer's own files (string labels, columns `review`/`sentiment`, 3 and 5 classes) give a
model of *their* data, or a clear refusal; the teacher's label order is one check for the CLI and the Python API."""

from __future__ import annotations

import json
import logging

import datasets
import numpy as np
import pandas as pd
import pytest
import yaml
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from conftest import TOPICS, make_tokenizer, save_tiny_model, tiny_bert
from hf_lelp import TeacherCache, build_teacher_cache
from hf_lelp.commands import main
from hf_lelp.data.load import load_text_classification

THREE = ["positive", "negative", "neutral"]  # the user's order (not sorted)
FIVE = ["travel", "sports", "arts", "science", "politics"]
FILLER = ["the", "a", "movie", "was", "very", "it"]
COMMON = ["--text_column", "review", "--label_column", "sentiment", "--max_length", "24", "--report_to", "none"]
COMMON += ["--use_cpu", "true", "--disable_tqdm", "true", "--save_strategy", "no", "--seed", "0"]


def user_rows(names: list[str], n: int, seed: int) -> pd.DataFrame:
    """Texts whose words say the class (sub-topic k of TOPICS for class k), labels as the class names."""
    groups = [words for topics in TOPICS.values() for words in topics]
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        k = i % len(names)
        words = list(rng.choice(groups[k], size=3)) + list(rng.choice(FILLER, size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(names[k])
    return pd.DataFrame({"review": texts, "sentiment": labels})


def save_base_model(folder) -> str:
    """A tiny pre-trained encoder without a classifier, as a user would start from (any number of classes)."""
    tiny_bert(hidden=32, layers=2, seed=2).bert.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return str(folder)


def write_user_files(folder, names: list[str], train: int, test: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    user_rows(names, train, seed=0).to_csv(folder / "train.csv", index=False)
    user_rows(names, test, seed=1).to_csv(folder / "test.csv", index=False)
    return ["--train_file", str(folder / "train.csv"), "--test_file", str(folder / "test.csv")]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """3-class csv files and a teacher trained on them with the issue's command (no --dataset, no --class_names)."""
    folder = tmp_path_factory.mktemp("issue19")
    files = write_user_files(folder / "data3", THREE, train=60, test=21)
    save_base_model(folder / "init")
    main(
        ["train-teacher", *files, *COMMON, "--teacher_model", str(folder / "init"), "--output_dir"]
        + [str(folder / "teacher"), "--num_train_epochs", "10", "--learning_rate", "3e-3"]
        + ["--per_device_train_batch_size", "16"]
    )
    return folder, files


def distill(folder, out: str, *flags: str) -> dict:
    main(
        ["distill", *COMMON, "--student", str(folder / "init"), "--student_num_layers", "1", "--output_dir", out]
        + ["--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--learning_rate", "1e-3"]
        + list(flags)
    )
    with open(f"{out}/results.json", encoding="utf-8") as handle:
        return json.load(handle)


def id2label(folder) -> list[str]:
    config = AutoConfig.from_pretrained(folder)
    return [config.id2label[i] for i in range(config.num_labels)]


def error_of(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return " ".join(capsys.readouterr().err.split())


# ---------------------------------------------------------------------------------------------- item 1: files win
def test_train_teacher_on_local_files_trains_on_them(three):
    folder, _ = three
    results = json.loads((folder / "teacher" / "teacher_results.json").read_text())
    assert results["train_examples"] == 60  # not the 10202 offline Rotten Tomatoes snippets
    assert results["dataset"] == "train.csv" and results["data_source"] == "local files train=train.csv, test=test.csv"
    assert results["class_names"] == sorted(THREE) == id2label(folder / "teacher")
    assert results["test_accuracy"] > 0.9  # it learnt the user's classes


def test_distill_on_local_files_records_and_logs_what_it_trained_on(three, tmp_path, caplog):
    folder, files = three
    caplog.set_level(logging.INFO, logger="hf_lelp")
    out = str(tmp_path / "student")
    results = distill(folder, out, *files, "--teacher", str(folder / "teacher"), "--method", "lelp")
    assert results["train_examples"] == 60 and results["class_names"] == sorted(THREE)
    assert results["data_source"] == "local files train=train.csv, test=test.csv"
    assert id2label(out) == sorted(THREE)
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Data: ")]
    assert said and "local files train=train.csv, test=test.csv; train: 60 rows" in said[0]
    assert str(sorted(THREE)) in said[0]


def test_five_classes_keep_the_users_order(tmp_path):
    files = write_user_files(tmp_path / "data5", FIVE, train=40, test=15)
    save_base_model(tmp_path / "init")
    save_tiny_model(tmp_path / "teacher", num_labels=5, seed=4, label_names=FIVE)
    results = distill(tmp_path, str(tmp_path / "kd"), *files, "--teacher", str(tmp_path / "teacher"), "--method", "kd")
    assert results["train_examples"] == 40 and results["class_names"] == FIVE  # the teacher's names, matched
    assert id2label(tmp_path / "kd") == FIVE
    results = distill(tmp_path, str(tmp_path / "ce"), *files, "--method", "ce", "--class_names", *FIVE)
    assert results["train_examples"] == 40 and id2label(tmp_path / "ce") == FIVE


def test_dataset_and_files_together_is_an_error_naming_both(three, tmp_path, capsys):
    _, files = three
    message = error_of(capsys, ["train-teacher", "--dataset", "rotten_tomatoes", *files, *COMMON])
    assert "--dataset rotten_tomatoes" in message and "--train_file" in message and "train.csv" in message
    config = tmp_path / "teacher.yaml"
    config.write_text(yaml.safe_dump({"dataset": "rotten_tomatoes", "output_dir": str(tmp_path / "t")}))
    message = error_of(capsys, ["train-teacher", str(config), *files, *COMMON])
    assert "--dataset rotten_tomatoes" in message and "--test_file" in message
    with pytest.raises(ValueError, match=r"Both a dataset \('rotten_tomatoes'\) and data files"):
        load_text_classification("rotten_tomatoes", data_files={"train": files[1]})


# ------------------------------------------------------------------------------------- item 2: teacher label order
def test_cli_maps_the_datas_classes_to_the_teachers_order(three, tmp_path):
    folder, files = three
    out, cache_dir = str(tmp_path / "student"), str(tmp_path / "cache")
    results = distill(
        folder,
        out,
        *files,
        "--teacher",
        str(folder / "teacher"),
        "--method",
        "kd",
        "--class_names",
        *THREE,
        "--cache_dir",
        cache_dir,
    )
    teacher_order = id2label(folder / "teacher")
    assert results["class_names"] == teacher_order == id2label(out)
    cache = TeacherCache.open(cache_dir)
    assert cache.fingerprint["label_names"] == teacher_order
    assert np.mean(np.asarray(cache.logits).argmax(-1) == np.asarray(cache.labels)) > 0.9


def test_python_api_maps_classlabel_names_to_the_teachers_order(three, tmp_path):
    folder, _ = three
    frame = user_rows(THREE, 30, seed=5)
    train = datasets.Dataset.from_dict(
        {"text": list(frame["review"]), "label": [THREE.index(name) for name in frame["sentiment"]]},
        features=datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=THREE)}),
    )
    teacher = AutoModelForSequenceClassification.from_pretrained(folder / "teacher")
    assert id2label(folder / "teacher") == ["negative", "neutral", "positive"]
    cache = build_teacher_cache(
        teacher,
        AutoTokenizer.from_pretrained(folder / "teacher"),
        train,
        str(tmp_path / "cache"),
        label_names=THREE,
        max_length=24,
    )
    names = cache.fingerprint["label_names"]
    assert names == ["negative", "neutral", "positive"]
    cached = [names[k] for k in np.asarray(cache.labels)[np.argsort(np.asarray(cache.example_ids))]]
    assert cached == list(frame["sentiment"])  # the cached labels are the data's names
    predicted = [names[k] for k in np.asarray(cache.logits).argmax(-1)]
    assert np.mean(np.asarray(predicted) == np.asarray([names[k] for k in np.asarray(cache.labels)])) > 0.9


def test_teacher_of_other_classes_is_refused_naming_both_orders(three, tmp_path, capsys):
    folder, _ = three
    files = write_user_files(tmp_path / "data5", FIVE, train=10, test=5)
    argv = ["distill", *files, *COMMON, "--teacher", str(folder / "teacher"), "--output_dir", str(tmp_path / "s")]
    message = error_of(capsys, argv)
    assert "['negative', 'neutral', 'positive']" in message and str(sorted(FIVE)) in message


# ---------------------------------------------------------------------------------------- item 5: silent inputs
def test_jsonl_labels_mixing_names_and_numbers_are_refused(tmp_path, capsys):
    rows = [{"review": "great fun", "sentiment": "pos"}, {"review": "awful", "sentiment": "neg"}]
    rows += [{"review": "witty", "sentiment": 1}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    message = error_of(capsys, ["train-teacher", "--train_file", str(path), *COMMON, "--output_dir", str(tmp_path)])
    assert "train.jsonl (--train_file)" in message and "['neg', 'pos']" in message and "numbers [1]" in message
    assert "data rows [3]" in message


def test_duplicate_class_names_are_refused(three, tmp_path, capsys):
    _, files = three
    argv = ["train-teacher", *files, *COMMON, "--class_names", "neg", "pos", "neg", "--output_dir", str(tmp_path)]
    assert "--class_names neg pos neg repeats ['neg']" in error_of(capsys, argv)
    with pytest.raises(ValueError, match=r"repeat \['a'\]"):
        load_text_classification(
            None,
            data_files={"train": files[1]},
            text_column="review",
            label_column="sentiment",
            label_names=["a", "b", "a"],
        )


def test_missing_labels_never_become_float_class_names(tmp_path, capsys, caplog):
    pd.DataFrame({"review": ["great", "awful", "fun", "dull"], "sentiment": [1, 0, None, 0]}).to_csv(
        tmp_path / "train.csv", index=False
    )
    pd.DataFrame({"review": ["witty", "slow", "lovely"], "sentiment": [1, None, 1]}).to_csv(
        tmp_path / "test.csv", index=False
    )
    flags = ["--train_file", str(tmp_path / "train.csv"), "--test_file", str(tmp_path / "test.csv"), *COMMON]
    message = error_of(capsys, ["train-teacher", *flags, "--output_dir", str(tmp_path / "t")])
    assert "test.csv (--test_file) has 1 of 3 rows without a label (data rows [2]" in message
    with caplog.at_level(logging.WARNING, logger="hf_lelp"):
        data = load_text_classification(
            None, data_files={"train": str(tmp_path / "train.csv")}, text_column="review", label_column="sentiment"
        )
    assert data.label_names == ["0", "1"]  # not "0.0" / "1.0"
    assert list(data.splits["train"]["label"]) == [1, 0, -1, 0]
    assert "train.csv (--train_file): 1 of 4 rows have no label (data rows [3])" in caplog.text
