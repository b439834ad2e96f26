"""Issue #11 (items 7 and 9): user errors end as one `hf-lelp: error:` paragraph and exit code 2, no traceback."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from conftest import ROOT, synthetic_cache
from hf_lelp.base.errors import UserError, _debug_requested, run_cli, user_error_message
from hf_lelp.base.io_utils import read_json
from hf_lelp.cache.store import CorruptCacheError
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.local_files import read_local
from hf_lelp.methods.projections import FitOptions, load_or_fit_projections
from hf_lelp.training.arguments import DataArguments, ModelArguments, read_config

pytestmark = pytest.mark.bad_input
HINT = "(run with --debug or HF_LELP_DEBUG=1 for the traceback)"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and bad data/config files; no model is needed, every run fails before loading one."""
    folder = tmp_path_factory.mktemp("user_errors")
    good = pd.DataFrame({"text": [f"text {i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    good.to_csv(folder / "good.csv", index=False)
    pd.concat([good, pd.DataFrame({"text": ["typo"], "label": [5]})]).to_csv(folder / "outlier.csv", index=False)
    (folder / "empty.csv").write_bytes(b"")
    (folder / "header.csv").write_text("text,label\n")
    (folder / "latin.csv").write_bytes("text,label\ngood,1\nbad,0\ncaf\xe9 cr\xe8me,1\n".encode("latin-1"))
    (folder / "garbled.json").write_text('{"dataset": "local",\n "max_length": 24,}\n')
    (folder / "garbled.yaml").write_text("dataset: local\n  max_length: [24\n")
    return folder


def recipe(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "recipes/distill.py", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )


def assert_user_error(result: subprocess.CompletedProcess, *names: str) -> str:
    """Exit code 2, no traceback, and a short `hf-lelp: error:` paragraph naming each of `names`."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("hf-lelp: error: "))
    assert lines[start + 1 :] == [HINT] and start <= 4, result.stderr  # at most a few library warnings above it
    for name in names:
        assert name in lines[start], lines[start]
    return lines[start]


def data_flags(folder, train: str = "good.csv", test: str = "good.csv") -> list:
    return ["--train_file", folder / train, "--test_file", folder / test]


def common(folder) -> list:
    return ["--teacher", folder / "no_teacher", "--output_dir", folder / "out", "--use_cpu", "true"]


# --- the recipes, as a user runs them ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config,expected",
    [
        ("garbled.json", ["garbled.json", "not valid JSON", "line 2, column"]),
        ("garbled.yaml", ["garbled.yaml", "not valid YAML", "line 2, column"]),
        ("missing.yaml", ["Config file", "missing.yaml", "not found"]),
    ],
)
def test_bad_config_files(files, config, expected):
    assert_user_error(recipe(files / config), *expected)


def test_missing_config_after_the_config_flag(files):
    assert_user_error(recipe("--config", files / "missing.yml", *common(files)), "missing.yml", "not found")


@pytest.mark.parametrize(
    "train,expected",
    [
        ("empty.csv", ["empty.csv", "--train_file", "is empty"]),
        ("header.csv", ["header.csv", "--train_file", "has no rows"]),
        # the offset and line in the file, not in one of pandas' chunks
        ("latin.csv", ["latin.csv", "not valid utf-8", "byte 27, line 4", "--encoding"]),
        ("outlier.csv", ["outlier.csv", "0..K-1", "6-class", "5: 1", "--class_names"]),
    ],
)
def test_bad_data_files(files, train, expected):
    assert_user_error(recipe(*data_flags(files, train), *common(files)), *expected)


def test_missing_teacher_folder(files):
    assert_user_error(recipe(*data_flags(files), *common(files)), "Model folder", str(files / "no_teacher"))


@pytest.mark.parametrize("flag", ["--max_length", "--teacher_batch_size"])
def test_flags_out_of_range(files, flag):
    assert_user_error(recipe(*data_flags(files), *common(files), flag, 0), flag, "got 0")


def test_debug_shows_the_traceback(files):
    argv = [*data_flags(files, "header.csv"), *common(files)]
    for result in (recipe(*argv, "--debug"), recipe(*argv, HF_LELP_DEBUG="1")):
        assert result.returncode != 0 and "Traceback" in result.stderr and "has no rows" in result.stderr
        assert HINT not in result.stderr


# --- run_cli itself ----------------------------------------------------------------------------------------------


def fail_with(error: BaseException):
    def main(argv):
        raise error

    return main


def test_run_cli_prints_one_paragraph_and_exits_2(capsys, monkeypatch):
    monkeypatch.delenv("HF_LELP_DEBUG", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(fail_with(KeyError("Split 'train' has no text column 'text'.")), [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"hf-lelp: error: Split 'train' has no text column 'text'.\n{HINT}\n"
    monkeypatch.setenv("RANK", "1")  # other processes of a launch: the error line only
    with pytest.raises(SystemExit):
        run_cli(fail_with(UserError("bad flag")), [])
    assert capsys.readouterr().err == "hf-lelp: error: bad flag\n"


def test_run_cli_keeps_bugs_and_debug_tracebacks(monkeypatch):
    monkeypatch.delenv("HF_LELP_DEBUG", raising=False)
    with pytest.raises(RuntimeError):
        run_cli(fail_with(RuntimeError("a bug")), [])
    with pytest.raises(TypeError):
        run_cli(fail_with(TypeError("a bug")), [])
    with pytest.raises(ValueError):
        run_cli(fail_with(ValueError("bad")), ["--debug"])
    monkeypatch.setenv("HF_LELP_DEBUG", "1")
    with pytest.raises(ValueError):
        run_cli(fail_with(ValueError("bad")), [])


def test_debug_flag_is_removed_but_the_trainers_debug_option_is_kept(monkeypatch):
    monkeypatch.delenv("HF_LELP_DEBUG", raising=False)
    assert _debug_requested(["--debug", "c.yaml", "--seed", "1"]) == (True, ["c.yaml", "--seed", "1"])
    assert _debug_requested(["c.yaml", "--debug"]) == (True, ["c.yaml"])
    kept = ["c.yaml", "--debug", "underflow_overflow"]
    assert _debug_requested(kept) == (False, kept)
    assert run_cli(lambda argv: argv, ["--debug", "x"]) == ["x"]


def test_messages_of_library_errors(tmp_path):
    (tmp_path / "meta.json").write_text('{"a": 1,,}')
    with pytest.raises(ValueError) as error:
        read_json(str(tmp_path / "meta.json"))  # read_json names its file itself
    assert user_error_message(error.value).startswith(f"{tmp_path / 'meta.json'} is not valid JSON")
    with pytest.raises(json.JSONDecodeError) as error, open(tmp_path / "meta.json") as handle:
        json.load(handle)  # json.load names no file: the message finds the open one
    assert user_error_message(error.value).startswith(f"{tmp_path / 'meta.json'} is not valid JSON")
    with pytest.raises(FileNotFoundError) as error:
        open(tmp_path / "nothing.txt")
    assert user_error_message(error.value) == f"No such file or directory: {tmp_path / 'nothing.txt'}"
    disk_full = OSError(28, "No space left on device while writing x (nothing was written).")
    assert user_error_message(disk_full) == "No space left on device while writing x (nothing was written)."
    assert user_error_message(OSError(5, "I/O error")) is None
    assert user_error_message(yaml.YAMLError("bad yaml")) == "bad yaml"


# --- the checks, called directly ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,kwargs,flag",
    [
        (DataArguments, {"max_length": 0}, "--max_length"),
        (DataArguments, {"max_length": -5}, "--max_length"),
        (DataArguments, {"max_train_examples": 0}, "--max_train_examples"),
        (DataArguments, {"max_eval_examples": -1}, "--max_eval_examples"),
        (DataArguments, {"max_transfer_examples": 0}, "--max_transfer_examples"),
        (DataArguments, {"validation_from_train": -1}, "--validation_from_train"),
        (ModelArguments, {"teacher_batch_size": 0}, "--teacher_batch_size"),
        (ModelArguments, {"cache_shard_size": 0}, "--cache_shard_size"),
        (ModelArguments, {"lora_r": 0}, "--lora_r"),
    ],
)
def test_flag_ranges(cls, kwargs, flag):
    with pytest.raises(ValueError, match=f"{flag} must be at least .*got {next(iter(kwargs.values()))}"):
        cls(**kwargs)


def test_flag_ranges_accept_the_limits():
    DataArguments(max_length=2, max_train_examples=1, validation_from_train=0)
    ModelArguments(teacher_batch_size=1, cache_shard_size=1, lora_r=1)


def test_config_files(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="list.yaml must hold a mapping"):
        read_config(str(tmp_path / "list.yaml"))
    (tmp_path / "empty.yaml").write_text("")
    assert read_config(str(tmp_path / "empty.yaml")) == {}
    with pytest.raises(UserError, match="is a folder"):
        read_config(str(tmp_path))


def test_non_utf8_offset_is_the_files_not_a_chunks(tmp_path):
    path = tmp_path / "big.csv"
    rows = b"".join(b"some plain ascii text number %d,%d\n" % (i, i % 2) for i in range(40_000))
    path.write_bytes(b"text,label\n" + rows + b"caf\xe9,1\n")
    offset = path.read_bytes().index(b"\xe9")
    with pytest.raises(ValueError, match=rf"byte {offset}, line 40002: b'\\xe9"):
        load_text_classification(str(path))


def test_table_errors_name_the_file(tmp_path):
    (tmp_path / "ragged.csv").write_text("text,label\na,1\nb,0,extra,more\n")
    with pytest.raises(UserError, match="ragged.csv .*--train_file.* not a valid CSV.*line 3"):
        read_local(str(tmp_path / "ragged.csv"), flag="--train_file")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": 1}\n{"text": \n')
    with pytest.raises(UserError, match="bad.jsonl is not valid JSON lines"):
        read_local(str(tmp_path / "bad.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UserError, match="empty.jsonl is empty"):
        read_local(str(tmp_path / "empty.jsonl"))
    with pytest.raises(FileNotFoundError, match="nothing.csv .*--test_file.* not found"):
        read_local(str(tmp_path / "nothing.csv"), flag="--test_file")


def test_integer_labels_must_be_contiguous_unless_class_names_are_given(tmp_path):
    path = tmp_path / "one_based.csv"
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 2, 2]}).to_csv(path, index=False)
    with pytest.raises(
        UserError, match=r"one_based.csv.*ids \[0\] never occur, so a 3-class.*1: 1, 2: 2.*--class_names"
    ):
        load_text_classification(str(path))
    data = load_text_classification(str(path), label_names=["zero", "one", "two"])
    assert list(data.splits["train"]["label"]) == [1, 2, 2]
    pd.DataFrame({"text": ["a", "b", "c"], "label": [1, 0, 1]}).to_csv(path, index=False)
    assert load_text_classification(str(path)).label_names == ["0", "1"]


def test_model_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "weights.bin").write_text("")
    for missing in ("runs/nothing/teacher", "runs/teacher", "./teacher", "../teacher", "~/no_such_teacher", "t/"):
        with pytest.raises(FileNotFoundError, match=f"Model folder {missing} not found"):
            resolve_model(missing)
    with pytest.raises(NotADirectoryError, match="is a file"):
        resolve_model("./weights.bin")
    assert resolve_model("org/name") == "org/name"  # no local folder "org": a Hub id
    assert resolve_model("runs") == "runs" and resolve_model(str(tmp_path)) == str(tmp_path)


def test_garbled_projections_json_says_how_to_refit(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=120, d=8, c=2)
    options = FitOptions(num_subclasses=2)
    load_or_fit_projections(cache, options)
    meta = next(p for p in (tmp_path / "cache").iterdir() if p.name.startswith("projections-") and p.suffix == ".json")
    meta.write_text(meta.read_text()[:-20])
    with pytest.raises(CorruptCacheError, match=f"{meta}.*not valid JSON.*line .*delete it and .*to refit"):
        load_or_fit_projections(cache, options)


def test_unknown_encoding_is_named(files):
    with pytest.raises(UserError, match="Unknown --encoding 'klingon' for .*good.csv"):
        read_local(str(files / "good.csv"), encoding="klingon")


@pytest.mark.bad_input
def test_garbled_json_written_by_the_project_names_its_file(tmp_path):
    from hf_lelp.base.io_utils import read_json

    (tmp_path / "meta.json").write_text('{"format": ')
    with pytest.raises(ValueError, match=r"meta.json is not valid JSON at line 1, column 12 .*Delete it"):
        read_json(str(tmp_path / "meta.json"))
