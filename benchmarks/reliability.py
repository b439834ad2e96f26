"""Run the fault and bad-input suites and write docs/reliability.md with the figures from this very run.

.venv/bin/python benchmarks/reliability.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COMMAND = "python benchmarks/reliability.py"

GUARANTEES = [
    (
        "Nothing private is published: every Hub commit (final, every_save, checkpoint, all_checkpoints) is a staging "
        "folder of allowlisted files, scanned before upload for the Hub token's bytes, pickles (allowed only as the "
        "Trainer's optimizer/scheduler/RNG state of `hub_strategy=checkpoint|all_checkpoints`), teacher-cache files "
        "and this machine's paths; a finding refuses the push, naming the file. The arguments go as JSON, tokens "
        "masked, paths cut to basenames; the default teacher cache lives outside `output_dir`.",
        [
            "test_no_push_holds_the_token_a_pickle_a_cache_file_or_a_local_path",
            "test_the_default_cache_is_outside_output_dir",
            "test_scan_refuses_a_token_a_pickle_a_cache_file_and_a_local_path",
        ],
    ),
    (
        "One run per folder: `output_dir` and a teacher cache being built are locked (flock, released by the kernel "
        "even on SIGKILL); a second run is refused naming the holder's pid, host and command. A folder holding "
        "another method's student is refused; a side file that is not this model's is removed at save.",
        [
            "test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder",
            "test_another_methods_folder_is_refused_and_stale_side_files_are_removed",
        ],
    ),
    (
        "Resume only this run: each checkpoint records the run's configuration (optimisation and LELP options, the "
        "student's architecture, the teacher cache's fingerprint, the training-set size); a checkpoint of another "
        "configuration is refused, naming each difference.",
        ["test_resume_refuses_a_checkpoint_of_another_configuration"],
    ),
    (
        "Atomic writes: every file is written to a temporary name and renamed; a cache is complete only when its "
        "meta.json exists, projections only when their .json exists.",
        [
            "test_disk_full_while_saving_projections_keeps_the_previous_file",
            "test_duplicate_ids_and_nan_teacher_outputs_are_refused",
        ],
    ),
    (
        "Resumable teacher pass: fixed shards of rows, each written atomically with a sha256; a rerun keeps finished "
        "shards, recomputes missing, truncated or corrupt ones, and ends with the same cache as an uninterrupted run.",
        [
            "test_interrupted_pass_resumes_without_redoing_finished_shards",
            "test_killed_teacher_pass_resumes_to_the_same_cache",
            "test_corrupt_shard_is_recomputed_and_corrupt_cache_is_refused",
            "test_disk_full_during_the_teacher_pass_then_resume",
        ],
    ),
    (
        "Checksums: every cache file and the projections are verified (sha256) when opened; a flipped byte "
        "is refused.",
        [
            "test_corrupt_shard_is_recomputed_and_corrupt_cache_is_refused",
            "test_save_load_roundtrip_reuse_and_refusals",
        ],
    ),
    (
        "Fingerprints: a cache or projections made for another teacher (a sha256 of all its weights, not only the "
        "head), dataset, max length, label set or dtype is refused, naming both values of each differing field.",
        [
            "test_existing_cache_is_reused_and_a_mismatch_is_refused_naming_both_sides",
            "test_a_teacher_with_other_encoder_weights_but_the_same_head_is_refused",
            "test_save_load_roundtrip_reuse_and_refusals",
            "test_cache_refuses_teacher_with_other_classes",
        ],
    ),
    (
        "Training resume: checkpoints get a completion marker written last; a kill between checkpoints resumes to the "
        "same metrics and to weights within 1e-5 (CPU float32 kernels round differently on reloaded buffers; the "
        "test states why); an incomplete checkpoint is skipped (`--resume_from_checkpoint true`) or refused.",
        [
            "test_training_killed_between_checkpoints_resumes_to_the_same_result",
            "test_incomplete_checkpoints_are_skipped_or_refused",
        ],
    ),
    (
        "Processes: processes launched together that fail to join one group are refused before writing anything.",
        ["test_processes_that_do_not_join_one_group_are_refused"],
    ),
    (
        "Disk full, on a real small filesystem (tmpfs): a clear error naming the file, never a SIGBUS (the merged "
        "cache's files are reserved before they are written through a memory map); no temporary file is left; "
        "finished shards and the previous complete file stay intact, so a rerun resumes.",
        [
            "test_full_disk_while_merging_the_cache_is_a_clear_error_and_a_rerun_resumes",
            "test_full_disk_under_safetensors_is_the_clear_error_and_keeps_the_previous_file",
            "test_disk_full_while_saving_projections_keeps_the_previous_file",
            "test_disk_full_during_the_teacher_pass_then_resume",
        ],
    ),
]

BAD_INPUTS = [
    (
        "empty or whitespace texts",
        "kept (the model sees its special tokens), counted and logged",
        "test_odd_texts_are_handled_and_reported",
    ),
    ("texts beyond max length", "truncated, counted and logged", "test_odd_texts_are_handled_and_reported"),
    (
        "non-UTF-8 bytes",
        "error naming the byte and `--encoding`; works with the right encoding",
        "test_non_utf8_file_gets_a_clear_error_and_works_with_its_encoding",
    ),
    (
        "labels as strings vs ints",
        "both mapped onto the class names",
        "test_given_class_names_fix_the_label_order_and_integer_labels_work",
    ),
    (
        "labels outside the label set",
        "error listing them and `--class_names`",
        "test_labels_outside_the_label_set_are_a_clear_error",
    ),
    (
        "missing text / label column",
        "error listing the columns and the flag to pass",
        "test_missing_columns_are_clear_errors",
    ),
    (
        "a label in eval absent from train",
        "warning at load; with label grouping the fit refuses the empty class",
        "test_class_present_in_eval_but_absent_from_train_is_reported_and_refused_by_the_fit",
    ),
    (
        "a class with fewer than S + 1 examples",
        "error naming the classes and counts",
        "test_class_with_too_few_examples_is_a_clear_error",
    ),
    ("D < C + S", "error giving the largest S that fits", "test_d_smaller_than_c_plus_s_is_a_clear_error"),
    (
        "NaN/Inf in teacher outputs",
        "error at cache time with the offending example ids",
        "test_duplicate_ids_and_nan_teacher_outputs_are_refused",
    ),
    ("duplicate example ids", "error listing them", "test_duplicate_ids_and_nan_teacher_outputs_are_refused"),
    ("ids not in the cache", "error listing them", "test_lookup_of_unknown_ids_is_a_clear_error"),
    (
        "unlabelled transfer set with α > 0, CE, or label grouping",
        "error before any work",
        "test_unlabelled_transfer_set_refuses_label_dependent_options",
    ),
    (
        "unlabelled transfer set, LELP",
        "works with `--grouping prediction`",
        "test_unlabelled_transfer_set_needs_grouping_by_prediction",
    ),
    (
        "student tokenizer differs from the teacher's",
        "works: targets are per example id",
        "test_student_with_a_different_tokenizer_trains_from_the_teacher_cache",
    ),
    (
        "teacher whose classes differ from the data's",
        "error naming both",
        "test_cache_refuses_teacher_with_other_classes",
    ),
    ("unknown key in a YAML config", "error naming the key", "test_unknown_yaml_key_is_a_clear_error"),
    (
        "garbled or missing YAML/JSON config",
        "one paragraph naming the file (line, column), exit 2, no traceback (`--debug` shows it)",
        "test_bad_config_files",
    ),
    (
        "empty CSV, header-only CSV, garbled JSON data",
        "one paragraph naming the file (`has no rows`, not `unlabelled`)",
        "test_bad_data_files",
    ),
    (
        "non-UTF-8 bytes in a large file",
        "the file's byte offset and line, not a chunk's",
        "test_non_utf8_offset_is_the_files_not_a_chunks",
    ),
    ("missing teacher folder", "`Model folder ... not found`, not a Hub-id message", "test_missing_teacher_folder"),
    (
        "integer labels with a gap (`5` in a binary file)",
        "refused unless --class_names is given, naming the rows",
        "test_integer_labels_must_be_contiguous_unless_class_names_are_given",
    ),
    (
        "--max_length 0 / -5, --teacher_batch_size 0, --cache_shard_size 0",
        "refused naming the flag and value",
        "test_flags_out_of_range",
    ),
    (
        "mistyped --eval_split, zero batch size, S <= 0 (kmeans, lelp, random)",
        "refused before any work, listing the splits / naming the flag",
        "test_silent_configurations_are_refused",
    ),
    (
        "NaN in the teacher's weights",
        "the documented NaN/Inf error, not `atol must be >= 0`",
        "test_nan_teacher_weights_are_a_clear_error",
    ),
    (
        "garbled projections JSON",
        "error naming the file and how to refit",
        "test_garbled_projections_json_says_how_to_refit",
    ),
]


def run_suite() -> dict:
    report = os.path.join(tempfile.mkdtemp(), "report.xml")
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "fault or bad_input or publish", f"--junitxml={report}", "tests"],
        cwd=ROOT,
        check=False,
    )
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        cases.append(
            {
                "name": case.get("name"),
                "file": case.get("classname"),
                "failed": failed,
                "skipped": case.find("skipped") is not None,
            }
        )
    return {"command": COMMAND, "cases": cases}


def marked(kind: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", kind, "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout
    return {line.split("::")[-1].split("[")[0] for line in out.splitlines() if "::" in line}


def main() -> None:
    results = run_suite()
    faults, bad, publish = marked("fault"), marked("bad_input"), marked("publish")
    cases = results["cases"]
    figures = {
        "fault_tests": sum(c["name"].split("[")[0] in faults for c in cases),
        "bad_input_tests": sum(c["name"].split("[")[0] in bad for c in cases),
        "publish_tests": sum(c["name"].split("[")[0] in publish for c in cases),
        "runs_that_lost_or_used_bad_data": sum(c["failed"] for c in cases),
        "skipped": sum(c["skipped"] for c in cases),
    }
    results["figures"] = figures
    with open(os.path.join(HERE, "results", "reliability.json"), "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    lines = [
        "# Reliability",
        "",
        "What hf-lelp guarantees, and the test that checks each guarantee. This page is "
        f"written by `{COMMAND}`, which runs the `fault`, `bad_input` and `publish` test suites; the figures are "
        "from that run.",
        "",
        "## Figures",
        "",
        "| what | count |",
        "|---|---|",
        f"| fault-injection tests run (kills, truncation, flipped bytes, disk full, mismatches) | "
        f"{figures['fault_tests']} |",
        f"| bad-input tests run | {figures['bad_input_tests']} |",
        f"| publishing tests run (every hub_strategy through the real push path) | {figures['publish_tests']} |",
        f"| runs that lost finished work or used bad data (failed tests) | "
        f"{figures['runs_that_lost_or_used_bad_data']} |",
        f"| skipped | {figures['skipped']} |",
        "",
        "## Guarantees",
        "",
    ]
    for text, tests in GUARANTEES:
        lines.append(f"- {text} Tests: " + ", ".join(f"`{t}`" for t in tests) + ".")
    lines += ["", "## Bad input", "", "| input | handling | test |", "|---|---|---|"]
    for what, handling, test in BAD_INPUTS:
        lines.append(f"| {what} | {handling} | `{test}` |")
    names = {c["name"].split("[")[0] for c in cases}
    missing = sorted({t for _, tests in GUARANTEES for t in tests} | {t for *_, t in BAD_INPUTS})
    missing = [t for t in missing if t not in names]
    if missing:
        raise SystemExit(f"reliability.md names tests that did not run in the suite: {missing}")
    with open(os.path.join(ROOT, "docs", "reliability.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
