"""recipes/benchmark.py end to end on a tiny corpus: schema, seeds, selection on validation only, report, plots."""

import json
import os
import sys

import pandas as pd
import pytest

from benchmarks.harness.machine import describe
from benchmarks.harness.method_stats import method_stats
from benchmarks.harness.report import LEGACY_MACHINE_NOTE, write_report
from benchmarks.harness.search import SearchSpace, select
from conftest import ROOT, make_texts, run, save_tiny_model
from hf_lelp.methods.registry import BUILTIN_METHODS as METHODS


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    for split, n, seed in (("train", 160, 0), ("test", 60, 1)):
        texts, labels, fine = make_texts(n, 2, seed)
        frame = pd.DataFrame({"text": texts, "label": [f"c{y}" for y in labels], "fine": [f"f{f}" for f in fine]})
        frame.to_csv(folder / f"{split}.csv", index=False)
    tiny = save_tiny_model(folder / "tiny", hidden=32, layers=2, seed=3, label_names=["c0", "c1"])
    command = [
        sys.executable,
        "recipes/benchmark.py",
        "--datasets",
        "tiny",
        "--train_file",
        str(folder / "train.csv"),
        "--test_file",
        str(folder / "test.csv"),
        "--fine_label_column",
        "fine",
        "--train",
        "100",
        "--validation",
        "40",
        "--test",
        "60",
        "--max_length",
        "16",
        "--teacher_model",
        tiny,
        "--feature_model",
        tiny,
        "--teacher_epochs",
        "3",
        "--search",
        "smoke",
        "--sweep_datasets",
        "tiny",
        "--work_dir",
        str(folder / "work"),
        "--results_dir",
        str(folder / "results"),
        "--report",
        str(folder / "RESULTS.md"),
        "--plots_dir",
        str(folder / "plots"),
    ]
    run(command)
    return folder, command


def test_results_file_has_the_issue_schema_and_three_seeds_per_method(benchmark):
    folder, _ = benchmark
    result = json.loads((folder / "results" / "tiny.json").read_text())
    assert {"dataset", "num_classes", "split_sizes", "teacher", "student", "runs", "command", "machine"} <= set(result)
    assert {"platform", "cpu_count", "torch_threads", "device", "student_processes"} <= set(result["machine"])
    assert result["split_sizes"] == {"train": 100, "validation": 40, "test": 60}
    assert {"model", "accuracy"} <= set(result["teacher"]) and 0.0 <= result["teacher"]["accuracy"] <= 1.0
    assert "model" in result["student"]
    for row in result["runs"]:
        assert set(row) == {"method", "seed", "accuracy", "macro_f1", "hparams", "train_seconds"}
    seeds = {m: sorted(r["seed"] for r in result["runs"] if r["method"] == m) for m in METHODS}
    assert seeds == {m: [0, 1, 2] for m in METHODS}
    assert all(n == 3 for _, _, n in method_stats(result).values())


def test_hyperparameters_are_the_best_validation_trial(benchmark):
    folder, _ = benchmark
    result = json.loads((folder / "results" / "tiny.json").read_text())
    trials = result["selection"]["trials"]
    assert result["selection"]["split"] == "validation"
    for method in METHODS:
        best = select([t for t in trials if t["method"] == method])
        assert all(r["hparams"] == best["hparams"] for r in result["runs"] if r["method"] == method), method
    # Both learning rates were tried for CE and KD, so a choice was really made.
    assert len([t for t in trials if t["method"] == "kd"]) == len(SearchSpace.smoke().grid("kd")) == 2
    oracle = next(r for r in result["runs"] if r["method"] == "oracle")
    assert "num_subclasses" not in oracle["hparams"]  # S comes from the fine labels


def test_sweeps_report_and_plots(benchmark):
    folder, command = benchmark
    result = json.loads((folder / "results" / "tiny.json").read_text())
    s_values = sorted({r["value"] for r in result["sweeps"]["num_subclasses"]})
    assert s_values == list(SearchSpace.smoke().s_sweep)
    assert {r["split"] for r in result["sweeps"]["subclass_temperature"]} == {"validation", "test"}
    report = (folder / "RESULTS.md").read_text()
    for method in METHODS:
        assert f"| {method} |" in report
    assert "| *teacher* |" in report and "LELP − KD" in report and "recipes/benchmark.py" in report
    # The machine comes from the result file, not from a sentence typed about one machine.
    assert f"Machine: {describe(result['machine'])} (`tiny.json`)." in report and LEGACY_MACHINE_NOTE not in report
    pngs = sorted((folder / "plots").glob("*.png"))
    assert {p.name.split("_")[0] for p in pngs} == {"methods", "sweep"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    # The report is a pure function of the result files.
    run([*command, "--report_only"])
    assert (folder / "RESULTS.md").read_text() == report


def test_auto_hparams_compared_with_the_full_search(benchmark):
    folder, _ = benchmark
    auto = json.loads((folder / "results" / "tiny.json").read_text())["auto_hparams"]
    space = SearchSpace.smoke()
    assert auto["auto_choice"]["num_subclasses"] in space.values["num_subclasses"]
    assert auto["full_search_choice"] == {"num_subclasses": 2, "subclass_temperature": 1.0}
    assert len(auto["auto_test"]) == 3 and len(auto["full_search_test"]) == 3
    assert auto["auto_epochs_spent"] < auto["full_search_epochs_spent"]
    assert "Automatic S and β" in (folder / "RESULTS.md").read_text()


def test_committed_report_is_rebuilt_from_the_committed_results(tmp_path):
    # Files without a `machine` field fall back to the note once typed in PROTOCOL; ties resolve in METHOD_ORDER.
    text = write_report(
        os.path.join(ROOT, "benchmarks", "results"), str(tmp_path / "RESULTS.md"), str(tmp_path / "plots")
    )
    with open(os.path.join(ROOT, "benchmarks", "RESULTS.md"), encoding="utf-8") as handle:
        assert text == handle.read()


def test_selection_refuses_test_trials():
    with pytest.raises(ValueError, match="validation trials only"):
        select([{"split": "test", "accuracy": 1.0, "macro_f1": 1.0}])


def test_unlabelled_transfer_rows(benchmark):
    folder, command = benchmark
    # A teacher from 50 labelled rows needs a higher learning rate to predict both classes (grouping by prediction).
    teacher = ["--teacher_epochs", "15", "--teacher_learning_rate", "3e-3"]
    run([*command, *teacher, "--unlabelled_transfer", "50", "--methods", "ce", "kd", "lelp", "--sweep_datasets"])
    result = json.loads((folder / "results" / "tiny_unlabelled.json").read_text())
    assert result["track"].endswith("unlabelled_transfer")
    assert sorted({r["method"] for r in result["runs"]}) == ["ce", "kd", "lelp"]
    lelp = [r for r in result["runs"] if r["method"] == "lelp"]
    assert len(lelp) == 3 and all(r["hparams"]["grouping"] == "prediction" for r in lelp)
    work = folder / "work" / "tiny_transfer"
    import numpy as np

    labels = np.load(work / "labels_train.npy")
    assert (labels[:50] >= 0).all() and (labels[50:] == -1).all()  # only the teacher's part keeps labels
    assert np.load(work / "teacher_cache" / "labels.npy")[50:].max() == -1
    assert "unlabelled transfer set" in (folder / "RESULTS.md").read_text()
