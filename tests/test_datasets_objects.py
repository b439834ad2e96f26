"""`datasets` objects as first-class sources (issue 12, item 7): a Dataset, a DatasetDict, a save_to_disk folder or
a Hub dataset loads like a name or a file, with its own column names, and keeps its ClassLabel names."""

import datasets
import numpy as np
import pandas as pd
import pytest

from conftest import make_texts, make_tokenizer, tiny_bert
from hf_lelp.base.errors import UserError
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.data.load import as_text_classification_split, load_text_classification
from hf_lelp.data.tokens import dataset_fingerprint, tokenize_split
from hf_lelp.data.transfer import with_transfer_data

NAMES = ["positive", "negative"]  # not in sorted order: the ClassLabel order must be kept


def user_split(n: int, seed: int = 0, **extra) -> datasets.Dataset:
    texts, labels, _ = make_texts(n, 2, seed)
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "sentiment": datasets.ClassLabel(names=NAMES),
            "idx": datasets.Value("int32"),
        }
    )
    return datasets.Dataset.from_dict(
        {"sentence": texts, "sentiment": labels, "idx": list(range(n))}, features=features
    )


def user_dict() -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": user_split(12), "test": user_split(6, seed=1)})


def check_loaded(data, source: datasets.DatasetDict) -> None:
    assert data.label_names == NAMES
    assert set(data.splits) == set(source)
    for name, split in source.items():
        loaded = data.splits[name]
        assert list(loaded["example_id"]) == list(range(len(split)))
        assert list(loaded["text"]) == list(split["sentence"])
        assert list(loaded["label"]) == list(split["sentiment"])


def test_dataset_dict_with_class_label_and_custom_columns():
    source = user_dict()
    data = load_text_classification(source, text_column="sentence", label_column="sentiment")
    check_loaded(data, source)
    assert data.splits["train"].column_names == ["example_id", "text", "label"]


def test_a_dataset_alone_is_the_train_split_with_int_labels_and_its_own_ids():
    dataset = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, 1], "example_id": [30, 10, 20]})
    data = load_text_classification(dataset)
    assert list(data.splits) == ["train"] and data.label_names == ["0", "1"]
    assert list(data.splits["train"]["example_id"]) == [30, 10, 20]  # kept, not renumbered
    assert list(data.splits["train"]["label"]) == [1, 0, 1]
    with pytest.raises(UserError, match=r"duplicate example_ids \[10\]"):
        load_text_classification(dataset.add_item({"text": "d", "label": 0, "example_id": 10}))
    with pytest.raises(UserError, match="must hold integers"):
        load_text_classification(dataset.remove_columns("example_id").add_column("example_id", ["x", "y", "z"]))


def test_string_labels_and_given_class_names():
    dataset = datasets.Dataset.from_dict({"body": ["a", "b", "c"], "stars": ["pos", "neg", "pos"]})
    data = load_text_classification(dataset, text_column="body", label_column="stars")
    assert data.label_names == ["neg", "pos"] and list(data.splits["train"]["label"]) == [1, 0, 1]
    data = load_text_classification(dataset, text_column="body", label_column="stars", label_names=["pos", "neg"])
    assert list(data.splits["train"]["label"]) == [0, 1, 0]
    with pytest.raises(KeyError, match="no text column 'text'.*--text_column"):
        load_text_classification(dataset)


def test_class_names_rename_class_label_ids_and_minus_one_is_unlabelled():
    source = user_dict()
    source["test"] = source["test"].map(lambda row: {"sentiment": -1})
    data = load_text_classification(
        source, text_column="sentence", label_column="sentiment", label_names=["good", "bad"]
    )
    assert data.label_names == ["good", "bad"]
    assert list(data.splits["train"]["label"]) == list(source["train"]["sentiment"])
    assert set(data.splits["test"]["label"]) == {-1}


@pytest.mark.parametrize("as_dict", [False, True])
def test_save_to_disk_folder_keeps_class_label_names(tmp_path, as_dict):
    source = user_dict() if as_dict else datasets.DatasetDict({"train": user_split(12)})
    (source if as_dict else source["train"]).save_to_disk(str(tmp_path / "saved"))
    data = load_text_classification(str(tmp_path / "saved"), text_column="sentence", label_column="sentiment")
    check_loaded(data, source)
    assert data.name == str(tmp_path / "saved")


def test_hub_dataset_keeps_class_label_names(monkeypatch):
    source = user_dict()
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, *args, **kwargs: asked.append(name) or source)
    data = load_text_classification("someone/reviews", text_column="sentence", label_column="sentiment")
    assert asked == ["someone/reviews"]
    check_loaded(data, source)


def test_a_cap_picks_the_same_rows_from_a_dataset_as_from_the_same_file(tmp_path):
    texts, labels, _ = make_texts(40, 2, seed=3)
    path = tmp_path / "train.csv"
    pd.DataFrame({"text": texts, "label": [["neg", "pos"][y] for y in labels]}).to_csv(path, index=False)
    dataset = datasets.Dataset.from_dict({"text": texts, "label": [["neg", "pos"][y] for y in labels]})
    from_file, from_object = (
        load_text_classification(source, max_examples={"train": 15}, seed=7).splits["train"]
        for source in (str(path), dataset)
    )
    assert len(from_object) == 15
    assert dataset_fingerprint(from_file) == dataset_fingerprint(from_object)  # a teacher cache serves both


def test_teacher_cache_on_a_users_dataset_without_ids(tmp_path):
    split = user_split(20)
    options = dict(label_names=NAMES, max_length=24, batch_size=8, shard_size=16, teacher_name="tiny")
    cache = build_teacher_cache(
        tiny_bert(len(NAMES)),
        make_tokenizer(),
        split,
        str(tmp_path / "cache"),
        text_column="sentence",
        label_column="sentiment",
        **options,
    )
    assert np.array_equal(cache.example_ids, np.arange(20))
    assert np.array_equal(cache.labels, np.asarray(split["sentiment"]))
    converted = as_text_classification_split(split, "sentence", "sentiment", NAMES)
    assert converted.column_names == ["example_id", "text", "label"]
    # The converted split is the same data: the finished cache is reused, not refused.
    again = build_teacher_cache(tiny_bert(len(NAMES)), make_tokenizer(), converted, str(tmp_path / "cache"), **options)
    assert again.fingerprint["dataset_sha256"] == cache.fingerprint["dataset_sha256"] == dataset_fingerprint(converted)
    # Default column names, label names and no ids: the plain shape of a user's own Dataset.
    plain = datasets.Dataset.from_dict({"text": split["sentence"], "label": [NAMES[y] for y in split["sentiment"]]})
    named = build_teacher_cache(tiny_bert(len(NAMES)), make_tokenizer(), plain, str(tmp_path / "plain"), **options)
    assert named.fingerprint["dataset_sha256"] == cache.fingerprint["dataset_sha256"]


def test_tokenize_split_with_other_column_names():
    split = user_split(8)
    tokenized = tokenize_split(split, make_tokenizer(), 16, text_column="sentence", label_column="sentiment")
    assert list(tokenized["labels"]) == list(split["sentiment"])
    assert "sentence" not in tokenized.column_names and "sentiment" not in tokenized.column_names
    assert tokenized["input_ids"][0] == make_tokenizer()(split["sentence"][0])["input_ids"]
    unlabelled = tokenize_split(split.remove_columns("sentiment"), make_tokenizer(), 16, text_column="sentence")
    assert "labels" not in unlabelled.column_names and len(unlabelled) == 8


def test_transfer_data_from_a_dataset(tmp_path):
    labelled = load_text_classification(user_dict(), text_column="sentence", label_column="sentiment")
    raw = datasets.Dataset.from_dict({"sentence": ["one text", "another text", None]})
    data = with_transfer_data(labelled, raw, text_column="sentence")
    assert list(data.splits["train"]["text"]) == ["one text", "another text", ""]
    assert set(data.splits["train"]["label"]) == {-1} and len(data.splits["labelled_train"]) == 12
