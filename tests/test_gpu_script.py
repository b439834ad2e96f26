"""The prepared GPU run (benchmarks/gpu, issue #14 part 5), checked without a GPU: the scripts parse, every path
they name exists, every flag they give a recipe is one of its flags, and they write only under their output and
scratch folders. Nothing here trains: the GPU run itself is `bash benchmarks/gpu/run.sh` on the device."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT

GPU = os.path.join(ROOT, "benchmarks", "gpu")
RUN_SH = os.path.join(GPU, "run.sh")
FETCH_SH = os.path.join(GPU, "fetch_wheels.sh")
STEPS_PY = os.path.join(GPU, "steps.py")
OUT, WORK = "/OUT_DIR", "/WORK_DIR"  # stand-ins for the folders the argv builders are given


@pytest.fixture(scope="module")
def steps():
    spec = importlib.util.spec_from_file_location("gpu_steps", STEPS_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def code_lines(path: str) -> list[str]:
    """The script's lines without comments (a `#` that starts a word) and without arithmetic `(( ... ))`."""
    lines = []
    for line in read(path).splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        lines.append(re.sub(r"\(\(.*?\)\)", "", line))
    return lines


def distill_parser():
    from transformers import HfArgumentParser

    from hf_lelp.training.arguments import DataArguments, ModelArguments
    from hf_lelp.training.config import LELPConfig

    return HfArgumentParser((DataArguments, ModelArguments, LELPConfig))


def option_strings(parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def flags(argv: list[str]) -> list[str]:
    return [token for token in argv if token.startswith("--")]


def parse_distill(argv: list[str]):
    """recipes/distill.py's own parsing (config file first, then flags), on the CPU: bf16 needs --use_cpu here."""
    from hf_lelp.training.arguments import DataArguments, ModelArguments, parse_with_config
    from hf_lelp.training.config import LELPConfig

    return parse_with_config((DataArguments, ModelArguments, LELPConfig), [*argv, "--use_cpu", "true"])


def test_scripts_pass_bash_syntax_check():
    for script in (RUN_SH, FETCH_SH):
        result = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"


def test_every_path_the_scripts_name_exists(steps):
    pattern = re.compile(r"\b((?:recipes|benchmarks|tests|hf_lelp)/[\w./-]+\.(?:py|yaml|yml|json|sh))\b")
    named = set()
    steps_modules = sorted(os.path.join(GPU, name) for name in os.listdir(GPU) if name.endswith(".py"))
    for path in (RUN_SH, FETCH_SH, *steps_modules):  # steps.py and its steps_*.py modules
        named |= set(pattern.findall(read(path)))
    named |= {steps.DISTILL, steps.TRAIN_TEACHER, steps.CACHE_TEACHER, steps.PERF, steps.MLP_RESULTS, steps.STEPS}
    named |= set(steps.ACCELERATE_CONFIGS.values())
    assert steps.DISTILL in named and "recipes/accelerate_configs/fsdp.yaml" in named
    missing = sorted(p for p in named if not os.path.isfile(os.path.join(ROOT, p)))
    assert not missing, f"paths named by benchmarks/gpu that do not exist: {missing}"
    kinds = {"fsdp": "FSDP", "deepspeed": "DEEPSPEED"}
    for backend, path in steps.ACCELERATE_CONFIGS.items():
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            assert yaml.safe_load(handle)["distributed_type"] == kinds[backend], path


def test_the_carried_folder_is_git_ignored(steps):
    # `carry` takes git-ignored paths only; an unignored carry folder would also travel (and count) twice.
    result = subprocess.run(
        ["git", "check-ignore", "-q", "benchmarks/gpu/carry/wheels/x.whl"], cwd=ROOT, capture_output=True
    )
    assert result.returncode == 0, "add benchmarks/gpu/carry/ to .gitignore"
    assert "benchmarks/gpu/carry" in read(RUN_SH) and "benchmarks/gpu/carry" in read(FETCH_SH)


def test_distributed_commands_use_real_accelerate_and_distill_flags(steps, tmp_path):
    from accelerate.commands.launch import launch_command_parser

    project = steps.tiny_project(str(tmp_path / "dist"), "tiny", 1)
    known = option_strings(distill_parser())
    launch_known = option_strings(launch_command_parser())
    for backend in steps.ACCELERATE_CONFIGS:
        for resume in (False, True):
            command = steps.dist_argv(backend, str(tmp_path / "dist"), resume)
            assert command[1:3] == list(steps.ACCELERATE_LAUNCH)
            split = command.index(steps.DISTILL)
            assert set(flags(command[3:split])) <= launch_known, command[3:split]
            distill_argv = command[split + 1 :]
            assert distill_argv[0] == project["distill_config"]
            unknown = set(flags(distill_argv)) - known
            assert not unknown, f"not recipes/distill.py flags: {sorted(unknown)}"
            _, model_args, args = parse_distill(distill_argv)  # the YAML's keys too: unknown keys are an error
            assert args.save_steps == steps.DIST_SAVE_STEPS and args.bf16
            assert model_args.teacher.endswith("teacher")
            if resume:
                assert args.resume_from_checkpoint.endswith(steps.DIST_RESUME_FROM)
    # checkpoint-4 exists mid-run and resuming from it reaches the final step the check expects
    steps_per_epoch = -(-120 // steps.DIST_BATCH)
    assert steps.DIST_SAVE_STEPS < steps_per_epoch
    assert steps.DIST_FINAL_STEP == steps.DIST_EPOCHS * steps_per_epoch
    assert steps.DIST_FINAL_STEP % steps.DIST_SAVE_STEPS == 0
    from transformers import HfArgumentParser, TrainingArguments

    from hf_lelp.teacher import TeacherArguments
    from hf_lelp.training.arguments import DataArguments

    teacher_parser = HfArgumentParser((DataArguments, TeacherArguments, TrainingArguments))
    teacher_parser.parse_yaml_file(project["teacher_config"], allow_extra_keys=False)


def test_track_commands_use_real_recipe_flags(steps):
    from transformers import HfArgumentParser, TrainingArguments

    from hf_lelp.teacher import TeacherArguments
    from hf_lelp.training.arguments import DataArguments

    teacher_parser = HfArgumentParser((DataArguments, TeacherArguments, TrainingArguments))
    argv = steps.teacher_argv("all-MiniLM-L6-v2", 5e-5, f"{WORK}/track/teacher")
    assert set(flags(argv)) <= option_strings(teacher_parser)
    data_args, teacher_args, args = teacher_parser.parse_args_into_dataclasses([*argv, "--use_cpu", "true"])
    assert data_args.validation_from_train == 1000 and data_args.eval_split == "validation" and args.bf16

    known = option_strings(distill_parser())
    cache = steps.cache_argv(f"{WORK}/track/teacher", f"{WORK}/track/teacher_cache", f"{WORK}/track/cache_out")
    assert set(flags(cache)) <= known
    parse_distill(cache)
    hparams, source = steps.student_hparams(list(steps.DEFAULT_METHODS), None)
    assert source
    for method in steps.DEFAULT_METHODS:
        argv = steps.student_argv(method, 1, f"{WORK}/t", f"{WORK}/c", f"{WORK}/s/{method}", hparams[method])
        assert set(flags(argv)) <= known, sorted(set(flags(argv)) - known)
        data_args, model_args, args = parse_distill(argv)
        assert args.method == method and args.seed == 1 and args.bf16 and data_args.eval_split == "test"
        assert model_args.student_num_layers == 2 and data_args.max_train_examples is None  # the full train split


def test_perf_and_step_commands_are_real(steps):
    sys.path.insert(0, ROOT)
    from benchmarks import perf as bench

    assert hasattr(bench, "build_parser"), "benchmarks/perf.py needs its --only/--output/--markdown CLI"
    perf_parser = bench.build_parser()
    for group, teacher in (("speed", None), (steps.PERF_MPNET_GROUP, f"{WORK}/track/teacher")):
        options = perf_parser.parse_args(steps.perf_argv(OUT, group, teacher)[2:])
        assert options.output.startswith(OUT) and options.markdown.startswith(OUT)
        assert tuple(options.only) == (group,)
    # Every `steps.py SUBCOMMAND ...` line of run.sh parses with steps.py's own parser.
    parser = steps.build_parser()
    calls = 0
    for line in code_lines(RUN_SH):
        if '"$STEPS" ' not in line:
            continue
        words = shlex.split(line.split('"$STEPS" ', 1)[1].rstrip("\\ "))
        words = [re.sub(r"\$\{?\w+\}?", "1", word) for word in words]  # each variable: a path or a number
        words = words[: next((i for i, w in enumerate(words) if w.startswith((">", "2>", "|"))), len(words))]
        parser.parse_args(words)
        calls += 1
    assert calls >= 7


def test_argv_builders_write_under_out_and_work_only(steps, tmp_path):
    """Every absolute path a built command gives is under the output or the scratch folder."""
    commands = [
        steps.dist_argv("fsdp", f"{WORK}/dist", True),
        steps.export_check_argv(f"{WORK}/dist/fsdp", f"{WORK}/dist"),
        steps.teacher_argv("all-MiniLM-L6-v2", 1e-4, f"{WORK}/track/t"),
        steps.cache_argv(f"{WORK}/track/t", f"{WORK}/track/c", f"{WORK}/track/o"),
        steps.student_argv("lelp", 0, f"{WORK}/track/t", f"{WORK}/track/c", f"{WORK}/track/s", {}),
        steps.perf_argv(OUT, "speed"),
    ]
    for command in commands:
        paths = [token for token in command[1:] if token.startswith("/")]
        assert all(p.startswith((OUT + "/", WORK + "/")) for p in paths), (command, paths)
        assert not any(token.startswith(("benchmarks/results", "runs/")) for token in command)


def test_run_sh_writes_only_under_its_folders():
    """Static: each redirection, mkdir, tar and pip --target of run.sh names one of its own folders."""
    text = "\n".join(code_lines(RUN_SH))
    allowed = ("$OUT_DIR", "$WORK_DIR", "$LOG_DIR", "$STEPS_FILE", "$GPU_STEP_STATUS_FILE")
    allowed += ("$GPU_OUT_DIR", "$GPU_WORK_DIR")  # the two exported for the bash functions
    assert 'GPU_OUT_DIR="$OUT_DIR"' in text and 'GPU_WORK_DIR="$WORK_DIR"' in text
    assert re.search(r'^OUT_DIR="\$\{OUT:-benchmarks/results/gpu\}"$', text, re.M)
    assert re.search(r'^WORK_DIR="\$\{GPU_WORK_DIR:-\$\(mktemp -d ', text, re.M)
    for name in ("LOG_DIR", "STEPS_FILE"):
        assert re.search(rf'^{name}="\$WORK_DIR/', text, re.M), f"{name} must lie under $WORK_DIR"
    assert 'GPU_STEP_STATUS_FILE="$WORK_DIR/' in text
    for variable in ("HOME", "TMPDIR", "HF_HOME", "HF_LELP_CACHE", "XDG_CACHE_HOME", "PYTHONPYCACHEPREFIX"):
        assert re.search(rf'\b{variable}="\$WORK_DIR/', text), f"{variable} must point under $WORK_DIR"
    for command in ("tee", "cp", "mv", "ln", "touch", "dd"):
        assert not re.search(rf"(^|[\s;|&(]){command}\s", text, re.M), f"run.sh uses {command}: check its target"
    targets = re.findall(r"(?<![<>&0-9])\d?>>?\s*(?!&)(\"[^\"]*\"|[^\s;|&)]+)", text)
    targets += [t for args in re.findall(r"mkdir -p ([^|;&\n]+)", text) for t in shlex.split(args.split("||")[0])]
    targets += re.findall(r"(?:--target|-czf|--out|--work|--site)\s+(\"[^\"]*\"|[^\s;|&)]+)", text)
    assert len(targets) > 10
    for target in targets:
        target = target.strip('"')
        assert target == "/dev/null" or target.startswith(allowed), f"run.sh writes to {target}"


def test_dry_run_writes_only_summary_and_logs_and_lists_every_step(tmp_path):
    """run.sh from a copy of benchmarks/gpu with GPU_DRY_RUN=1: the copy's tree is left as it was, the output folder
    holds summary.json and logs.tar.gz, and every step is in the summary."""
    repo = tmp_path / "repo"
    shutil.copytree(GPU, repo / "benchmarks" / "gpu", ignore=shutil.ignore_patterns("carry", "__pycache__"))
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "GPU_WORK_DIR": str(tmp_path / "work"),
        "GPU_DRY_RUN": "1",
        "PYTHON": sys.executable,
    }
    result = subprocess.run(
        ["bash", str(repo / "benchmarks" / "gpu" / "run.sh")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before
    assert sorted(os.listdir(tmp_path)) == ["out", "repo", "work"]
    assert sorted(os.listdir(tmp_path / "out")) == ["logs.tar.gz", "summary.json"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    names = [step["step"] for step in summary["steps"]]
    assert names == [
        "setup_wheels",
        "setup_assets",
        "env",
        "transformer_track",
        "perf",
        "dist_prepare",
        "dist_fsdp",
        "deepspeed_install",
        "dist_deepspeed",
    ]
    assert all(step["status"] == "dry run: not run" and "wall_seconds" in step for step in summary["steps"])


def test_aggregate_uses_sample_std_and_calls_gaps_only_beyond_noise(steps):
    runs = [{"method": "kd", "seed": s, "accuracy": a, "macro_f1": a} for s, a in enumerate((0.70, 0.72, 0.74))]
    runs += [{"method": "lelp", "seed": s, "accuracy": a, "macro_f1": a} for s, a in enumerate((0.75, 0.76, 0.77))]
    runs.append({"method": "lelp", "seed": 3, "error": "ValueError: out of memory"})
    table, gaps = steps.aggregate(runs)
    assert table["kd"]["accuracy_std"] == pytest.approx(0.02)
    assert table["lelp"]["seeds"] == [0, 1, 2]
    assert gaps["lelp-kd"]["accuracy_points"] == pytest.approx(4.0)
    assert gaps["lelp-kd"]["combined_std_points"] == pytest.approx(100 * (0.02**2 + 0.01**2) ** 0.5, abs=0.01)
    assert gaps["lelp-kd"]["beyond_noise"]
    runs[-2]["accuracy"] = 0.715  # lelp mean 0.745: 2.17 points up, inside the combined std
    table, gaps = steps.aggregate(runs)
    assert not gaps["lelp-kd"]["beyond_noise"]
