"""benchmarks/strong_teacher.py end to end on a tiny slice of the offline Rotten Tomatoes: the teacher chosen on
validation, nested transfer sets cut from one cache, the MLP curve, the transformer track with the paper's head,
the report section, and resuming."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from benchmarks import strong_teacher
from hf_lelp import TeacherCache

pytestmark = pytest.mark.slow
TEACHER = "all-MiniLM-L6-v2"
COMMON = [
    "--dataset",
    "rotten_tomatoes",
    "--teacher",
    TEACHER,
    "--teacher_learning_rates",
    "1e-4",
    "3e-4",
    "--teacher_max_epochs",
    "2",
    "--teacher_rows",
    "60",
    "--validation",
    "40",
    "--test",
    "40",
    "--max_train",
    "120",
    "--max_length",
    "32",
    "--workers",
    "1",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("strong")
    paths = ["--work_dir", str(root / "work"), "--results_dir", str(root / "results" / "strong")]
    run = lambda *args: strong_teacher.main([*args, *COMMON, *paths])  # noqa: E731
    run("mlp_curve", "--sizes", "40", "120", "--search", "smoke", "--seeds", "0", "1", "--methods", "ce", "kd", "lelp")
    run("transformer", "--sizes", "40", "--search", "smoke", "--seeds", "0", "--methods", "kd", "lelp")
    report = root / "RESULTS.md"
    run("report", "--report", str(report), "--plots_dir", str(root / "plots"))
    return root, run, report


def _json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def test_the_teacher_is_chosen_on_validation_and_measured_on_test(study):
    root, _, _ = study
    choice = _json(root / "work" / "rotten_tomatoes" / TEACHER / "teacher" / "teacher_choice.json")
    assert [s["learning_rate"] for s in choice["searched"]] == [1e-4, 3e-4]
    best = max(choice["searched"], key=lambda s: (s["validation_accuracy"], s["validation_macro_f1"]))
    assert choice["chosen"] == best and len(best["epochs"]) == 2
    assert best["validation_accuracy"] == max(e["validation_accuracy"] for e in best["epochs"])  # best epoch kept
    assert 0 <= choice["test_accuracy"] <= 1


def test_transfer_sets_are_nested_prefixes_with_the_matching_cache_rows(study):
    root, _, _ = study
    folder = root / "work" / "rotten_tomatoes" / TEACHER
    small, large = (folder / f"n{n}" for n in (40, 120))
    lines = [(f / "data" / "train.jsonl").read_text().splitlines() for f in (small, large)]
    assert len(lines[0]) == 40 and lines[0] == lines[1][:40]
    full = TeacherCache.open(str(folder / "full" / "teacher_cache"))
    cut = TeacherCache.open(str(small / "teacher_cache"))  # verified: checksums of the written cut
    np.testing.assert_array_equal(np.asarray(cut.hidden), np.asarray(full.hidden[:40]))
    np.testing.assert_array_equal(np.asarray(cut.logits), np.asarray(full.logits[:40]))
    assert cut.fingerprint["dataset_sha256"] != full.fingerprint["dataset_sha256"]
    assert np.load(small / "features_train.npy").shape[0] == 40


def test_mlp_curve_selects_on_validation_and_compares_the_heads(study):
    root, _, _ = study
    for size in (40, 120):
        result = _json(root / "results" / "strong" / f"rotten_tomatoes_{TEACHER}_mlp_n{size}.json")
        assert result["transfer_size"] == size and result["split_sizes"]["train"] == size
        assert {(r["method"], r["seed"]) for r in result["runs"]} == {
            (m, s) for m in ("ce", "kd", "lelp") for s in (0, 1)
        }
        assert all(t["split"] == "validation" for t in result["paper_head"]["selection"])
        assert all(r["hparams"]["subclass_head"] == "flat" for r in result["paper_head"]["runs"])
        assert len(result["paper_head"]["runs"]) == 2


def test_transformer_track_runs_the_recipe_job_and_measures_the_paper_heads_export(study):
    root, _, _ = study
    result = _json(root / "results" / "strong" / f"rotten_tomatoes_{TEACHER}_transformer_n40.json")
    assert {r["method"] for r in result["runs"]} == {"kd", "lelp"}
    assert all(t["split"] == "validation" for t in result["selection"]["trials"])
    assert all(r["split"] == "test" for r in result["runs"] + result["paper_head_runs"])
    (flat,) = result["paper_head_runs"]
    assert flat["hparams"]["subclass_head"] == "flat" and 0 <= flat["export_agreement"] <= 1
    assert all(r["export_agreement"] == 1.0 for r in result["runs"])  # the factorised head exports exactly


def test_report_section_and_plot(study):
    root, _, report = study
    text = report.read_text()
    assert "## When does LELP help?" in text and "### The paper's C·S head against ours" in text
    assert f"| rotten_tomatoes | mlp | {TEACHER} | 120 |" in text
    assert f"| rotten_tomatoes | transformer | {TEACHER} | 40 |" in text
    search = text.split("### The transformer track's validation search")[1].split("\n\n")[1].splitlines()[2:]
    assert [row.split(" | ")[3] for row in search] == ["kd", "lelp"]  # one smoke trial each, on validation
    assert (root / "plots" / "strong_learning_curve.png").stat().st_size > 0
    stages = _json(root / "results" / "strong" / "stages.json")
    assert {k.split(":")[0] for k in stages} == {"mlp_curve", "transformer"}


def test_a_rerun_resumes_without_redoing_finished_work(study):
    root, run, _ = study
    results = root / "results" / "strong"
    before = {p: os.stat(results / p).st_mtime_ns for p in os.listdir(results) if p.endswith("_n40.json")}
    run("mlp_curve", "--sizes", "40", "--search", "smoke", "--seeds", "0", "1", "--methods", "ce", "kd", "lelp")
    run("transformer", "--sizes", "40", "--search", "smoke", "--seeds", "0", "--methods", "kd", "lelp")
    assert before == {p: os.stat(results / p).st_mtime_ns for p in before}
    other = [*COMMON, "--teacher_rows", "61"]  # the last value wins
    paths = ["--work_dir", str(root / "work"), "--results_dir", str(results)]
    with pytest.raises(ValueError, match="prepared with other options"):
        strong_teacher.main(["prepare", *other, *paths])


def test_asking_a_finished_size_for_more_methods_runs_only_the_missing_ones(study):
    root, run, _ = study
    stem = root / "results" / "strong" / f"rotten_tomatoes_{TEACHER}_transformer_n40"
    before, progress = _json(f"{stem}.json"), _json(f"{stem}.progress.json")
    run("transformer", "--sizes", "40", "--search", "smoke", "--seeds", "0", "--methods", "kd", "lelp", "random")
    after = _json(f"{stem}.json")
    assert [r["method"] for r in after["runs"]] == ["kd", "lelp", "random"]
    assert after["runs"][:2] == before["runs"]  # the finished runs are kept, not rerun
    assert _json(f"{stem}.progress.json")[: len(progress)] == progress
    assert len(_json(f"{stem}.progress.json")) == len(progress) + 1
    assert after["chosen"] == {**before["chosen"], "random": before["chosen"]["lelp"]}  # LELP's (S, β)
    assert after["wall_seconds"] > before["wall_seconds"]
    # CE's learning rate was never searched: asking for it now is refused, not skipped
    with pytest.raises(ValueError, match="without ce: its learning rate was never searched"):
        run("transformer", "--sizes", "40", "--search", "smoke", "--seeds", "0", "--methods", "ce", "kd", "lelp")
