"""Issue #7 parts 1-2: unlabelled transfer data (--transfer_data) and automatic S/β (--auto_hparams)."""

import json
import sys

import numpy as np
import pytest

from conftest import make_texts, run, run_distil, run_expecting_failure
from hf_lelp import LELPConfig
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.transfer import carve_validation, read_unlabelled_texts, with_transfer_data
from hf_lelp.training.autotune import candidate_grid, successive_halving


@pytest.fixture
def labelled(tmp_path):
    texts, labels, _ = make_texts(60, 2, seed=0)
    path = tmp_path / "train.csv"
    path.write_text("text,label\n" + "\n".join(f"{t},{'ab'[y]}" for t, y in zip(texts, labels)) + "\n")
    return load_text_classification("local", data_files={"train": str(path), "test": str(path)})


def test_transfer_file_replaces_train_with_unlabelled_text(labelled, tmp_path):
    (tmp_path / "raw.txt").write_text("first text\n\nsecond text\nthird\n")
    data = with_transfer_data(labelled, str(tmp_path / "raw.txt"))
    assert list(data.splits["train"]["text"]) == ["first text", "second text", "third"]
    assert set(data.splits["train"]["label"]) == {-1}
    assert list(data.splits["train"]["example_id"]) == [0, 1, 2]
    assert len(data.splits["labelled_train"]) == 60 and len(data.splits["test"]) == 60  # kept for evaluation


def test_transfer_table_uses_the_text_column_and_ignores_labels(labelled, tmp_path):
    (tmp_path / "raw.jsonl").write_text('{"body": "x y", "label": "a"}\n{"body": "z", "label": "b"}\n')
    assert read_unlabelled_texts(str(tmp_path / "raw.jsonl"), "body") == ["x y", "z"]
    data = with_transfer_data(labelled, str(tmp_path / "raw.jsonl"), text_column="body")
    assert set(data.splits["train"]["label"]) == {-1}
    with pytest.raises(KeyError, match="no text column 'text'"):
        with_transfer_data(labelled, str(tmp_path / "raw.jsonl"))


def test_transfer_split_drops_its_labels_and_can_be_capped(labelled):
    data = with_transfer_data(labelled, "test", max_examples=25, seed=1)
    assert len(data.splits["train"]) == 25 and set(data.splits["train"]["label"]) == {-1}
    assert set(data.splits["train"]["text"]) <= set(labelled.splits["test"]["text"])
    with pytest.raises(FileNotFoundError, match="neither a file nor a split"):
        with_transfer_data(labelled, "unlabeled")


def test_validation_carved_from_train_is_disjoint_and_renumbered(labelled):
    data = carve_validation(labelled, 15, seed=3)
    train, validation = data.splits["train"], data.splits["validation"]
    assert len(train) == 45 and len(validation) == 15
    assert list(train["example_id"]) == list(range(45)) and list(validation["example_id"]) == list(range(15))
    original = list(labelled.splits["train"]["text"])
    assert sorted(list(train["text"]) + list(validation["text"])) == sorted(original)
    with pytest.raises(ValueError, match="needs more than 60"):
        carve_validation(labelled, 60)
    with pytest.raises(ValueError, match="already has a 'validation' split"):
        carve_validation(data, 5)


def test_successive_halving_stops_poor_candidates_early_and_doubles_the_budget():
    candidates = candidate_grid([1, 2, 4, 64], [0.5, 1.0], max_subclasses=10)
    assert len(candidates) == 6  # S = 64 does not fit D - C = 10
    quality = {(1, 0.5): 0.6, (1, 1.0): 0.7, (2, 0.5): 0.65, (2, 1.0): 0.9, (4, 0.5): 0.8, (4, 1.0): 0.5}
    calls = []

    def evaluate(candidate, epochs):
        calls.append((candidate["num_subclasses"], candidate["subclass_temperature"], epochs))
        score = quality[(candidate["num_subclasses"], candidate["subclass_temperature"])] + 0.01 * epochs
        return {"accuracy": score, "macro_f1": score}

    result = successive_halving(candidates, evaluate, budget=0.5, keep=2)
    assert result.chosen == {"num_subclasses": 2, "subclass_temperature": 1.0}
    assert [c[2] for c in calls] == [0.5] * 6 + [1.0] * 2  # two survivors, trained with twice the budget
    assert {(c[0], c[1]) for c in calls[6:]} == {(2, 1.0), (4, 0.5)}
    assert len(result.table) == 8 and result.table[-1]["round"] == 2
    with pytest.raises(ValueError, match="none fits"):
        candidate_grid([32], [1.0], max_subclasses=8)


def test_auto_hparams_is_refused_for_methods_without_s_and_beta(tmp_path):
    with pytest.raises(ValueError, match="--auto_hparams chooses S and β"):
        LELPConfig(output_dir=str(tmp_path), method="kd", auto_hparams=True, report_to="none", use_cpu=True)


@pytest.mark.slow
def test_distill_on_unlabelled_transfer_text(project, tmp_path):
    texts, _, _ = make_texts(80, 2, seed=7)
    (tmp_path / "raw.txt").write_text("\n".join(texts) + "\n")
    out = tmp_path / "lelp"
    # A teacher that predicts both classes (the fixture's is deliberately weak), so both prediction groups exist.
    teacher = [sys.executable, "recipes/train_teacher.py", str(project / "teacher.yaml"), "--output_dir"]
    run([*teacher, str(tmp_path / "teacher"), "--num_train_epochs", "15", "--learning_rate", "3e-3"])
    base = [sys.executable, "recipes/distill.py", str(project / "distill.yaml"), "--output_dir", str(out)]
    base += ["--teacher", str(tmp_path / "teacher")]
    run(
        [
            *base,
            "--transfer_data",
            str(tmp_path / "raw.txt"),
            "--grouping",
            "prediction",
            "--cache_dir",
            str(tmp_path / "cache"),
        ]
    )
    results = json.loads((out / "results.json").read_text())
    assert results["train_examples"] == 80 and 0.0 <= results["test_accuracy"] <= 1.0
    lelp = json.loads((out / "lelp_config.json").read_text())
    assert lelp["grouping"] == "prediction" and lelp["hard_label_weight"] == 0.0
    labels = np.load(tmp_path / "cache" / "labels.npy")
    assert set(labels.tolist()) == {-1}  # the cache never saw a label
    # CE needs labels: refused before any work, with the fix in the message.
    failed = run_expecting_failure([*base, "--transfer_data", str(tmp_path / "raw.txt"), "--method", "ce"])
    assert "use --method lelp or kd" in failed


@pytest.mark.slow
def test_auto_hparams_chooses_on_validation_and_documents_the_sweep(project, tmp_path):
    out = tmp_path / "auto"
    run_distil(
        project,
        out,
        "--cache_dir",
        str(tmp_path / "cache"),
        "--validation_from_train",
        "30",
        "--auto_hparams",
        "true",
        "--auto_num_subclasses",
        "1",
        "2",
        "--auto_subclass_temperatures",
        "0.5",
        "2.0",
        "--auto_budget_epochs",
        "0.5",
        "--auto_keep",
        "2",
    )
    results = json.loads((out / "results.json").read_text())
    auto = results["auto_hparams"]
    assert len(auto["table"]) == 4 + 2 and {row["round"] for row in auto["table"]} == {1, 2}
    finalists = [row for row in auto["table"] if row["round"] == 2]
    best = max(finalists, key=lambda row: (row["accuracy"], row["macro_f1"]))
    assert auto["chosen"]["num_subclasses"] == best["num_subclasses"]
    lelp = json.loads((out / "lelp_config.json").read_text())
    assert lelp["num_subclasses"] == auto["chosen"]["num_subclasses"]
    assert lelp["subclass_temperature"] == auto["chosen"]["subclass_temperature"]
    assert results["train_examples"] == 90  # 120 train rows minus the 30 carved into validation
    card = (out / "README.md").read_text()
    assert "chosen automatically" in card and card.count("| 2 | 1.0 |") == 2
