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
        "and this machine's paths (its home, working and temporary folders, whatever their depth, and every path "
        "the run was given); a finding refuses the push, naming the file, after `results.json` is written. The "
        "arguments go as JSON, tokens masked, paths cut to basenames; the default teacher cache lives outside "
        "`output_dir`. A checkpoint push with `--load_best_model_at_end` publishes the best checkpoint's path "
        "relative, and the scan stays strict. Label names reach the card body escaped; its front matter stays YAML.",
        [
            "test_no_push_holds_the_token_a_pickle_a_cache_file_or_a_local_path",
            "test_the_default_cache_is_outside_output_dir",
            "test_scan_refuses_a_token_a_pickle_a_cache_file_and_a_local_path",
            "test_a_path_under_a_one_level_home_is_refused_by_the_push",
            "test_checkpoint_pushes_with_load_best_model_at_end_publish_a_relative_best_checkpoint",
            "test_a_push_refused_at_the_end_leaves_results_json",
        ],
    ),
    (
        "One run per folder: `output_dir` and a teacher cache being built are locked (flock, released by the kernel "
        "even on SIGKILL); a second run is refused naming the holder's pid, host and command, secrets masked (lock "
        "files are owner-only and removed on a clean exit). A folder holding a model this run did not create "
        "(another method's student, a foreign model, the teacher's own folder, the cache folder) is refused; a save "
        "leaves exactly the saved model's files (a LoRA run's adapter never outlives a full fine-tune in the same "
        "folder).",
        [
            "test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder",
            "test_another_methods_folder_is_refused_and_stale_side_files_are_removed",
            "test_lock_files_hold_no_token_are_owner_only_and_removed_at_the_end",
            "test_the_teacher_a_foreign_model_and_the_cache_folder_are_refused_as_output_dir",
            "test_a_full_model_saved_over_a_lora_run_leaves_no_adapter_behind",
        ],
    ),
    (
        "Resume only this run: each checkpoint records every setting that changes the model or the data (all but a "
        "list of logging, saving and evaluation settings: LoRA rank, alpha and dropout, max length and the train "
        "data's content included, for every method), the student's architecture and the teacher cache's "
        "fingerprint; a checkpoint of another configuration is refused, naming each difference.",
        [
            "test_resume_refuses_a_checkpoint_of_another_configuration",
            "test_resume_is_refused_after_lora_data_or_max_length_changes",
        ],
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
        "Resumable teacher pass: fixed shards of rows, each written atomically with a sha256 and its row range; a "
        "rerun keeps finished shards of the same rows (another --cache_shard_size recomputes them), recomputes "
        "missing, truncated or corrupt ones, removes the temporaries of a killed merge, and ends with the same cache "
        "as an uninterrupted run; a merge refuses ids that are not each there exactly once.",
        [
            "test_interrupted_pass_resumes_without_redoing_finished_shards",
            "test_killed_teacher_pass_resumes_to_the_same_cache",
            "test_corrupt_shard_is_recomputed_and_corrupt_cache_is_refused",
            "test_disk_full_during_the_teacher_pass_then_resume",
            "test_resuming_with_another_shard_size_recomputes_shards_of_other_rows",
            "test_a_merge_refuses_ids_that_are_not_each_there_once",
            "test_a_merge_killed_by_sigkill_leaves_nothing_behind_after_the_rerun",
        ],
    ),
    (
        "Checksums: every cache file and the projections are verified (sha256) when opened; a flipped byte "
        "is refused. The set of cache files is fixed by the format: meta.json must list each of them, inside the "
        "cache folder.",
        [
            "test_corrupt_shard_is_recomputed_and_corrupt_cache_is_refused",
            "test_save_load_roundtrip_reuse_and_refusals",
            "test_a_meta_json_without_an_entry_does_not_leave_that_file_unverified",
            "test_a_meta_json_entry_outside_the_cache_folder_is_refused",
        ],
    ),
    (
        "Fingerprints: a cache or projections made for another teacher (a sha256 of all its weights, not only the "
        "head, and of its tokenizer's files), dataset, max length, label set or dtype is refused, naming both values "
        "of each differing field.",
        [
            "test_existing_cache_is_reused_and_a_mismatch_is_refused_naming_both_sides",
            "test_a_teacher_with_other_encoder_weights_but_the_same_head_is_refused",
            "test_save_load_roundtrip_reuse_and_refusals",
            "test_cache_refuses_teacher_with_other_classes",
            "test_a_teacher_with_another_vocabulary_does_not_reuse_the_cache",
        ],
    ),
    (
        "Training resume: checkpoints get a completion marker written last, before older checkpoints are rotated "
        "away (a kill in between still leaves a complete one); a kill between checkpoints resumes to the same "
        "metrics and to weights within 1e-5 (CPU float32 kernels round differently on reloaded buffers; the test "
        "states why); an incomplete checkpoint is skipped (`--resume_from_checkpoint true`) or refused.",
        [
            "test_training_killed_between_checkpoints_resumes_to_the_same_result",
            "test_incomplete_checkpoints_are_skipped_or_refused",
            "test_a_kill_right_after_rotation_leaves_a_complete_checkpoint",
        ],
    ),
    (
        "Processes: processes launched together that fail to join one group are refused before writing anything.",
        ["test_processes_that_do_not_join_one_group_are_refused"],
    ),
    (
        "Disk full, on a real small filesystem (tmpfs): a clear error naming the file, never a SIGBUS (the merged "
        "cache's files are reserved before they are written through a memory map); no temporary file is left; "
        "finished shards and the previous complete file stay intact, so a rerun resumes. Through the command, a "
        "full disk at a checkpoint (PyTorch's writer) or at the final save (safetensors) is one paragraph naming "
        "the file, exit 2.",
        [
            "test_full_disk_while_merging_the_cache_is_a_clear_error_and_a_rerun_resumes",
            "test_full_disk_under_safetensors_is_the_clear_error_and_keeps_the_previous_file",
            "test_disk_full_while_saving_projections_keeps_the_previous_file",
            "test_disk_full_during_the_teacher_pass_then_resume",
            "test_a_full_disk_during_a_checkpoint",
            "test_a_full_disk_during_the_final_save",
        ],
    ),
    (
        "One error contract: a user's mistake or the machine's state (a folder in use, a refused push, a full disk "
        "under any library, a dataset name nothing can load, a --max_length beyond a model's positions, a student "
        "classifier of another size, a resume with other settings) ends as one `hf-lelp: error:` paragraph and exit "
        "code 2, never a traceback; every exception class hf-lelp defines goes through that one handler (a test "
        "walks the package for them).",
        [
            "test_every_exception_class_of_the_package_goes_through_the_handler",
            "test_a_second_run_on_the_same_output_dir_or_cache",
            "test_a_push_refused_by_the_scan",
            "test_a_full_disk_during_a_checkpoint",
            "test_a_full_disk_during_the_final_save",
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
        "teacher whose classes differ from the data's (same names in another order: mapped by name)",
        "error naming both orders; a permutation is remapped to the teacher's order",
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
    (
        "a mistyped dataset name (`rotten_tomatos`)",
        "not an offline name (listed, the close one suggested), not a path, and the Hub is not reachable; exit 2",
        "test_a_mistyped_dataset_name",
    ),
    (
        "label names with HTML, Markdown or a newline and `---`",
        "escaped as text in the card body (plain names stay as typed); the front matter stays valid YAML",
        "test_a_full_fine_tune_card_says_the_steps_and_extra_metrics_and_its_snippet_runs",
    ),
    (
        "a mistyped model name (`--student org/no-such-model`)",
        "not a folder, not an offline name (listed), and the Hub could not serve it; refused before any work",
        "test_a_mistyped_student_name",
    ),
    (
        "--max_length beyond the student's or teacher's position embeddings",
        "refused before the teacher pass, naming each model's limit; exit 2",
        "test_max_length_beyond_the_models_positions",
    ),
    (
        "train-teacher with --max_length beyond the model's positions",
        "refused naming --teacher_model and its limit; exit 2",
        "test_max_length_beyond_the_teachers_positions_when_training_it",
    ),
    (
        "a student whose classifier has another number of labels",
        "refused before the teacher pass, naming both counts and the fix; exit 2",
        "test_a_student_whose_classifier_has_another_number_of_labels",
    ),
    (
        "resuming with another --lora_r",
        "refused naming the differing setting, not a size-mismatch traceback; exit 2",
        "test_resuming_with_another_lora_rank",
    ),
    (
        "`--teacher runs/t --output_dir runs/t`, a foreign model's folder, --cache_dir equal to --output_dir",
        "refused naming the folder (not overwritten, not 'in use by another run')",
        "test_the_teacher_a_foreign_model_and_the_cache_folder_are_refused_as_output_dir",
    ),
]

# The second round of faults (issue 20): what broke, and the tests of its fix; the page says how they did in this run.
ISSUE_20 = [
    (
        "1",
        "a LoRA run's adapter files took over a later full fine-tune in the same `output_dir`",
        ["test_a_full_model_saved_over_a_lora_run_leaves_no_adapter_behind"],
    ),
    (
        "2",
        "the Hub token was written in clear into the lock files (0644, never removed)",
        ["test_lock_files_hold_no_token_are_owner_only_and_removed_at_the_end"],
    ),
    (
        "3",
        "`--hub_strategy checkpoint` with `--load_best_model_at_end` stopped training; a refused final push left no "
        "results.json",
        [
            "test_checkpoint_pushes_with_load_best_model_at_end_publish_a_relative_best_checkpoint",
            "test_a_push_refused_at_the_end_leaves_results_json",
        ],
    ),
    (
        "4",
        "resuming a killed teacher pass with another `--cache_shard_size` reused shards of other rows",
        [
            "test_resuming_with_another_shard_size_recomputes_shards_of_other_rows",
            "test_a_merge_refuses_ids_that_are_not_each_there_once",
        ],
    ),
    (
        "5",
        "LoRA alpha/dropout, and for `--method ce` the train file and `--max_length`, resumed silently",
        ["test_resume_is_refused_after_lora_data_or_max_length_changes"],
    ),
    (
        "6",
        "a teacher with the same weights and another vocabulary reused the cache",
        ["test_a_teacher_with_another_vocabulary_does_not_reuse_the_cache"],
    ),
    (
        "7",
        "an `output_dir` holding a model hf-lelp did not write (the teacher's own folder) was overwritten",
        ["test_the_teacher_a_foreign_model_and_the_cache_folder_are_refused_as_output_dir"],
    ),
    (
        "8",
        "checkpoint rotation ran before the completion marker was written",
        ["test_a_kill_right_after_rotation_leaves_a_complete_checkpoint"],
    ),
    (
        "9",
        "a kill during the shard merge left its temporary files forever",
        ["test_a_merge_killed_by_sigkill_leaves_nothing_behind_after_the_rerun"],
    ),
    (
        "10",
        "meta.json's checksums covered only the entries it listed, which could point outside the cache",
        [
            "test_a_meta_json_without_an_entry_does_not_leave_that_file_unverified",
            "test_a_meta_json_entry_outside_the_cache_folder_is_refused",
        ],
    ),
    (
        "11",
        "a folder in use, a refused push, a full disk, a dataset typo, --max_length beyond the positions, a student "
        "classifier of another size, another --lora_r ended in a traceback and exit 1",
        [
            "test_every_exception_class_of_the_package_goes_through_the_handler",
            "test_a_second_run_on_the_same_output_dir_or_cache",
            "test_a_push_refused_by_the_scan",
            "test_a_full_disk_during_a_checkpoint",
            "test_a_full_disk_during_the_final_save",
            "test_a_mistyped_dataset_name",
            "test_max_length_beyond_the_models_positions",
            "test_a_student_whose_classifier_has_another_number_of_labels",
            "test_resuming_with_another_lora_rank",
        ],
    ),
    (
        "12",
        "label names reached the card body unescaped",
        [
            "test_a_full_fine_tune_card_says_the_steps_and_extra_metrics_and_its_snippet_runs",
            "test_label_names_in_the_body_are_text_and_plain_names_stay_as_typed",
        ],
    ),
    (
        "13",
        "the publish scan skipped absolute paths with fewer than two slashes",
        ["test_a_path_under_a_one_level_home_is_refused_by_the_push"],
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


def named_tests() -> set[str]:
    """Every test this page names; each issue-20 item names at least one."""
    empty = [item for item, _, tests in ISSUE_20 if not tests]
    if empty:
        raise SystemExit(f"issue 20 items without a test: {empty}")
    named = {t for _, tests in GUARANTEES for t in tests} | {t for *_, t in BAD_INPUTS}
    return named | {t for *_, tests in ISSUE_20 for t in tests}


def check_named(names: set[str], where: str) -> None:
    missing = sorted(t for t in named_tests() if t not in names)
    if missing:
        raise SystemExit(f"reliability.md names tests that {where}: {missing}")


def main() -> None:
    # Named tests outside the suite would only be found missing after the whole run: check them first.
    check_named(marked("fault or bad_input or publish"), "are not marked fault, bad_input or publish")
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
    failed = {c["name"].split("[")[0] for c in cases if c["failed"]}
    issue_20 = [(item, what, tests, [t for t in tests if t in failed]) for item, what, tests in ISSUE_20]
    figures["issue_20_items_fixed"] = sum(not broken for *_, broken in issue_20)
    figures["issue_20_items"] = len(issue_20)
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
        f"| second-round faults (issue 20) whose tests all passed | {figures['issue_20_items_fixed']} of "
        f"{figures['issue_20_items']} |",
        "",
        "## Guarantees",
        "",
    ]
    for text, tests in GUARANTEES:
        lines.append(f"- {text} Tests: " + ", ".join(f"`{t}`" for t in tests) + ".")
    lines += ["", "## Bad input", "", "| input | handling | test |", "|---|---|---|"]
    for what, handling, test in BAD_INPUTS:
        lines.append(f"| {what} | {handling} | `{test}` |")
    lines += [
        "",
        "## Second round (issue 20)",
        "",
        "What an adversarial second round broke, and the tests of each fix, as they ended in this run.",
        "",
        "| item | what broke | tests | this run |",
        "|---|---|---|---|",
    ]
    for item, what, tests, broken in issue_20:
        outcome = "failed: " + ", ".join(f"`{t}`" for t in broken) if broken else "passed"
        lines.append(f"| {item} | {what} | {', '.join(f'`{t}`' for t in tests)} | {outcome} |")
    check_named({c["name"].split("[")[0] for c in cases}, "did not run in the suite")
    with open(os.path.join(ROOT, "docs", "reliability.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
