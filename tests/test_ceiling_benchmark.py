"""The ceiling study's protocol and report (issue 22): who trains on which rows, and a reading computed from the
tables (headroom and LELP's share only where the oracle's gain is beyond noise)."""

from __future__ import annotations

import json

import pytest

from benchmarks.harness import ceiling, ceiling_report


def result(accuracies: dict[str, list[float]], labelled: int = 250) -> dict:
    runs = [
        {"method": m, "seed": s, "split": "test", "hparams": {}, "accuracy": a, "macro_f1": a}
        for m, values in accuracies.items()
        for s, a in enumerate(values)
    ]
    return {
        "dataset": "toy",
        "labelled_rows": labelled,
        "transfer_rows": 9000,
        "teacher": {"accuracy": 0.9},
        "runs": runs,
    }


def test_lelps_share_is_measured_only_where_the_oracle_gains_beyond_noise():
    headroom = result({"kd": [0.80, 0.81, 0.79], "lelp": [0.82, 0.83, 0.81], "oracle": [0.85, 0.86, 0.84]})
    assert ceiling_report.gap(headroom, "oracle", "kd")["beyond_noise"]
    assert ceiling_report.share(headroom) == pytest.approx(0.4)
    (line,) = ceiling_report.reading([headroom])
    assert "the oracle has headroom, +5.00" in line and "40 % of the oracle's gain" in line
    assert "LELP gains ≥ 1 point beyond noise there" in line
    flat = result({"kd": [0.80, 0.82, 0.78], "lelp": [0.80, 0.81, 0.79], "oracle": [0.81, 0.79, 0.83]}, 1000)
    assert ceiling_report.share(flat) is None
    assert ceiling_report.reading([flat])[0].startswith("No measured setting (toy at 1,000 labelled rows) has oracle")


def test_ce_learns_from_the_labelled_rows_and_the_teacher_methods_from_every_row(tmp_path, monkeypatch):
    (tmp_path / "ceiling.json").write_text(json.dumps({"label_names": ["a", "b"], "max_length": 32}))
    seen = {}

    def fake_distill(data_args, model_args, method, seed, hparams, **settings):
        seen[method] = (data_args, model_args, settings)
        return {"test_accuracy": 0.5, "test_macro_f1": 0.5, "train_seconds": 1.0}

    monkeypatch.setattr("benchmarks.harness.student_job.distill_student", fake_distill)
    for method in ("ce", "kd", "lelp", "oracle"):
        ceiling._job(str(tmp_path), method, {"learning_rate": 1e-3}, 0, "test")
    assert seen["ce"][0].train_file.endswith("teacher.jsonl")  # the labelled rows only
    assert all(seen[m][0].train_file.endswith("train.jsonl") for m in ("kd", "lelp", "oracle"))
    assert all(seen[m][1].student_config == ceiling.STUDENT_CONFIG for m in seen)
    assert seen["lelp"][2]["grouping"] == "prediction" and "grouping" not in seen["kd"][2]  # labels unused
    assert seen["oracle"][0].fine_label_column == "fine_label" and seen["kd"][0].fine_label_column is None


def test_the_labels_reading_compares_lelp_with_labels_to_kd_with_labels_and_ce(tmp_path):
    families = {"ce": [0.80, 0.79, 0.81], "kd + labels": [0.78, 0.78, 0.78], "lelp + labels": [0.80, 0.80, 0.80]}
    runs = [{"family": f, "method": f.split()[0], "accuracy": a} for f, values in families.items() for a in values]
    chosen = {"ce": {"learning_rate": 1e-3}, "kd + labels": {"hard_label_weight": 0.5}, "lelp + labels": {}}
    chosen["lelp + labels"] = {"hard_label_weight": 0.25, "num_subclasses": 2}
    payload = {"dataset": "toy", "transfer_size": 100, "teacher": {"model": "t", "accuracy": 0.7}, "alphas": [0, 0.5]}
    payload.update(chosen=chosen, runs=runs, command="cmd", wall_seconds=60)
    (tmp_path / "labels_toy.json").write_text(json.dumps(payload))
    text = "\n".join(ceiling_report.labels_section(str(tmp_path)))
    assert "| lelp + labels | α = 0.25, S = 2 | 80.00 ± 0.00 |" in text
    assert "LELP + labels − KD + labels +2.00 (±0.00, ahead)" in text
    assert (
        "LELP + labels − CE +0.00 (±1.00, within noise)" in text and "KD + labels − CE -2.00 (±1.00, behind)" in text
    )


def test_the_weight_table_shows_each_lambda_and_the_gap_to_kd(tmp_path):
    def run(method, accuracy, weight, split="test", seed=0):
        hparams = {"within_class_weight": weight}
        return {"method": method, "seed": seed, "split": split, "hparams": hparams, "accuracy": accuracy}

    payload = {
        "dataset": "toy",
        "labelled_rows": 250,
        "chosen": {"oracle": {"within_class_weight": 0.25}},
        "selection": {"trials": [run("oracle", 0.80, 1.0, "validation"), run("oracle", 0.90, 0.25, "validation")]},
        "runs": [run("oracle", a, 0.25, seed=s) for s, a in enumerate((0.91, 0.91, 0.91))],
        "kd_runs": [{"method": "kd", "accuracy": a} for a in (0.88, 0.88, 0.88)],
        "command": "cmd",
        "wall_seconds": 60,
    }
    (tmp_path / "toy_scratch_labelled250_weight.json").write_text(json.dumps(payload))
    text = "\n".join(ceiling_report.weight_section(str(tmp_path)))
    assert "| oracle | 1: 80.0, 0.25: 90.0 | 0.25 | 91.00 ± 0.00 | +3.00 (±0.00, ahead) |" in text
    line = ceiling_report.weighted_oracle_reading(str(tmp_path))[-1]
    assert line.endswith(
        "(oracle 0.25): oracle − KD +3.00 (±0.00, ahead), LELP − KD –; the oracle has headroom here; LELP has no "
        "runs beside it."
    )
    (g,) = ceiling_report.tuned_oracle_gaps(ceiling_report.weight_results(str(tmp_path))).items()
    assert g[0] == ("toy", 250) and g[1]["points"] == pytest.approx(3.0)
    payload["chosen"]["lelp"] = {"within_class_weight": 1.0}
    payload["runs"] += [run("lelp", a, 1.0, seed=s) for s, a in enumerate((0.895, 0.895, 0.895))]
    (tmp_path / "toy_scratch_labelled250_weight.json").write_text(json.dumps(payload))
    line = ceiling_report.weighted_oracle_reading(str(tmp_path))[-1]
    assert line == (
        "- toy, 250 labelled rows, each at its own λ chosen on validation (oracle 0.25, lelp 1): oracle − KD +3.00 "
        "(±0.00, ahead), LELP − KD +1.50 (±0.00, ahead); the oracle has headroom here and LELP takes 50 % of it; LELP "
        "gains ≥ 1 point beyond noise."
    )


class RecordingRuns:
    """Runs' interface: every job recorded, each row's validation accuracy from `accuracy(method, hparams)`."""

    def __init__(self, accuracy):
        self.accuracy, self.jobs = accuracy, []

    def run(self, jobs):
        self.jobs += jobs
        return [
            {"method": m, "hparams": h, "seed": s, "split": split, "accuracy": self.accuracy(m, h), "macro_f1": 0.0}
            for _, m, h, s, split in jobs
        ]


def test_the_fine_tuned_ceiling_searches_lambda_and_runs_every_subclass_source_at_lelps_setting():
    from benchmarks.harness import lelp_terms

    lelp = {"learning_rate": 3e-4, "temperature": 4.0, "num_subclasses": 4, "subclass_temperature": 2.0}
    best = {"lelp": 0.25, "oracle": 0.0625}
    runs = RecordingRuns(lambda m, h: 0.9 if h.get("within_class_weight", 1.0) == best.get(m) else 0.8)
    result = lelp_terms.ceiling_rows(runs, "target", lelp, [0, 1, 2])
    validation = [(m, h) for _, m, h, _, split in runs.jobs if split == "validation"]
    assert ("lelp", lelp) in validation  # λ = 1 is the sweep's own LELP trial, not a second run of it
    assert {h.get("within_class_weight", 1.0) for m, h in validation if m == "oracle"} == set(ceiling.WEIGHTS)
    assert all("num_subclasses" not in h for m, h in validation if m == "oracle")  # its S: the fine labels
    assert result["chosen"]["lelp"] == {**lelp, "within_class_weight": 0.25}
    assert result["chosen"]["oracle"]["within_class_weight"] == 0.0625
    assert all(result["chosen"][m] == lelp for m in ("kmeans", "random", "pca"))
    tests = [(m, s) for _, m, _, s, split in runs.jobs if split == "test"]
    assert sorted(tests) == sorted((m, s) for m in ("lelp", "oracle", "kmeans", "random", "pca") for s in (0, 1, 2))


def test_the_fine_tuned_track_gives_the_oracle_its_fine_labels(tmp_path, monkeypatch):
    from benchmarks.harness import lelp_terms

    (tmp_path / "ceiling.json").write_text(json.dumps({"label_names": ["a", "b"], "max_length": 32}))
    seen = {}

    def fake_distill(data_args, model_args, method, seed, hparams, **settings):
        seen[method] = data_args
        return {"test_accuracy": 0.5, "test_macro_f1": 0.5, "train_seconds": 1.0}

    monkeypatch.setattr("benchmarks.harness.student_job.distill_student", fake_distill)
    for method in ("kd", "oracle"):
        lelp_terms.sweep_job(str(tmp_path / "fine_tuned_n10"), method, {}, 0, "test")
    assert seen["oracle"].fine_label_column == "fine_label" and seen["kd"].fine_label_column is None


def test_the_fine_tuned_ceiling_table_reads_the_oracles_gap_over_kd():
    def runs(method, hparams, values):
        return [{"method": method, "hparams": hparams, "seed": s, "accuracy": a} for s, a in enumerate(values)]

    kd, lelp = {"temperature": 1.0}, {"num_subclasses": 4}
    oracle = {"within_class_weight": 0.0625}
    sweep = {
        "chosen": {"kd": {"method": "kd", "hparams": kd}, "lelp": {"method": "lelp", "hparams": lelp}},
        "runs": runs("kd", kd, (0.80, 0.80, 0.80)) + runs("lelp", lelp, (0.79, 0.79, 0.79)),
        "ceiling": {
            "weights": [1.0, 0.0625],
            "trials": [{"method": "oracle", "hparams": oracle, "accuracy": 0.9}],
            "chosen": {"lelp": lelp, "oracle": oracle, "kmeans": lelp},
            "runs": runs("lelp", lelp, (0.79, 0.79, 0.79))
            + runs("oracle", oracle, (0.83, 0.83, 0.83))
            + runs("kmeans", lelp, (0.80, 0.80, 0.80)),
        },
    }
    text = "\n".join(ceiling_report.fine_tuned_ceiling(sweep))
    assert "| oracle | λ = 0.0625 | 0.0625: 90.0 | 83.00 ± 0.00 | +3.00 (±0.00, ahead) |" in text
    assert "| lelp, λ on validation | S = 4 | – | 79.00 ± 0.00 | -1.00 (±0.00, behind) |" in text
    assert "the oracle has headroom here and LELP takes -33 % of it" in text


def test_a_resumed_sweep_keeps_the_time_of_every_invocation(tmp_path, monkeypatch):
    import benchmarks.ceiling as stage
    from benchmarks.harness import lelp_terms
    from hf_lelp.base.io_utils import read_json

    monkeypatch.setattr(lelp_terms, "sweep", lambda args: {})
    argv = ["sweep", "--folder", str(tmp_path / "toy" / "labelled250"), "--results_dir", str(tmp_path / "results")]
    ticks = iter(range(10**6))  # every clock reading one second later: both invocations take as long
    monkeypatch.setattr(stage.time, "time", lambda: float(next(ticks)))
    path = str(tmp_path / "results" / "lelp_vs_kd_toy_labelled250_sweep.json")
    stage.main(argv)
    first = read_json(path)["wall_seconds"]
    stage.main(argv)
    assert first > 0 and read_json(path)["wall_seconds"] == 2 * first


def test_sweeps_of_two_folders_never_share_runs(tmp_path, monkeypatch):
    """A run's key names no folder, so each teacher folder's sweep needs its own progress file (a 4-class sweep once
    would have reused the binary one's runs)."""
    from types import SimpleNamespace

    from benchmarks.harness import lelp_terms

    paths = []

    class Stop(Exception):
        pass

    class PathOnlyRuns:
        def __init__(self, path, workers, job):
            paths.append(path)

        def run(self, jobs):
            raise Stop

        def close(self):
            pass

    monkeypatch.setattr(lelp_terms, "Runs", PathOnlyRuns)
    for dataset in ("binary", "four"):
        folder = tmp_path / "ceiling" / dataset / "labelled250"
        (folder / "data").mkdir(parents=True)
        for split in ("train", "validation", "test"):
            (folder / "data" / f"{split}.jsonl").write_text('{"text": "a", "label": 0}\n' * 3)
        args = SimpleNamespace(folder=str(folder), rows=2, workers=1, seeds=[0], results_dir=str(tmp_path / "r"))
        with pytest.raises(Stop):
            lelp_terms.sweep(args)
    assert paths == [
        str(tmp_path / "r" / "lelp_vs_kd_binary_labelled250_n2_sweep.progress.json"),
        str(tmp_path / "r" / "lelp_vs_kd_four_labelled250_n2_sweep.progress.json"),
    ]


def test_every_committed_ceiling_result_is_a_line_of_its_make_target():
    """The acceptance: one make target reproduces every row (a result that no line makes is unreproducible)."""
    import glob
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "Makefile"), encoding="utf-8") as handle:
        makefile = handle.read()
    variables = dict(re.findall(r"^(\w+) := (.+)$", makefile.replace("$(BIN)/python", "python"), flags=re.M))
    target = re.search(r"^benchmark-ceiling:.*\n((?:\t.+\n)+)", makefile, flags=re.M).group(1)
    lines = [
        re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), line.strip())
        for line in target.replace("$(BIN)/python", "python").splitlines()
    ]
    results = [
        p
        for p in glob.glob(os.path.join(root, "benchmarks", "results", "ceiling", "*.json"))
        if not p.endswith((".progress.json", "stages.json"))
    ]
    assert results
    for path in results:
        with open(path, encoding="utf-8") as handle:
            assert json.load(handle)["command"] in lines, path
    assert lines[-1] == "python benchmarks/ceiling.py report"


def test_the_oracle_chosen_settings_show_no_s_it_ignores():
    text = ceiling_report._chosen("oracle", {"learning_rate": 0.001, "num_subclasses": 4})
    assert text == '{"learning_rate": 0.001} (S: its fine labels)'
    assert ceiling_report._chosen("lelp", {"num_subclasses": 4}) == '{"num_subclasses": 4}'


def test_a_point_on_every_row_records_the_rows_its_teacher_learnt_from():
    choice = {"test_accuracy": 0.97, "test_macro_f1": 0.96, "train_examples": 10**9}
    facts = ceiling.teacher_facts(choice, 10208)
    assert facts["choice"]["train_examples"] == 10208 and facts["accuracy"] == 0.97
