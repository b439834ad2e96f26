"""Data-parallel runs on two CPU processes (gloo): the teacher pass, a killed-and-resumed pass, and training."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, run
from hf_lelp.cache.store import TeacherCache

pytestmark = pytest.mark.slow
TWO_CPUS = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--config_file",
    "recipes/accelerate_configs/cpu_2proc.yaml",
]


def cache_command(project, cache_dir, shard_size):
    return [
        "recipes/cache_teacher.py",
        str(project / "distill.yaml"),
        "--cache_dir",
        str(cache_dir),
        "--cache_shard_size",
        str(shard_size),
        "--output_dir",
        str(cache_dir) + "_out",
    ]


def assert_same_cache(a: TeacherCache, b: TeacherCache):
    assert np.array_equal(a.example_ids, b.example_ids)
    assert np.array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.hidden, b.hidden, atol=1e-5)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-5)


def test_two_process_teacher_pass_equals_one_process(project):
    one, two = project / "cache_1proc", project / "cache_2proc"
    run([sys.executable, *cache_command(project, one, 16)])
    run([*TWO_CPUS, *cache_command(project, two, 16)])
    a, b = TeacherCache.open(str(one)), TeacherCache.open(str(two))
    assert np.array_equal(b.example_ids, np.arange(120))  # every id exactly once: no sampler padding
    assert_same_cache(a, b)


@pytest.mark.fault
def test_killed_teacher_pass_resumes_to_the_same_cache(project):
    reference = project / "cache_reference"
    run([sys.executable, *cache_command(project, reference, 8)])
    target = project / "cache_killed"
    shard_dir = target / "shards"
    # Kill at three random points (seeded), each run resuming the previous one's shards.
    for kill_after in sorted(random.Random(0).sample(range(1, 11), 3)):
        process = subprocess.Popen(
            [sys.executable, *cache_command(project, target, 8)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:
            done = len(list(shard_dir.glob("shard-*.json"))) if shard_dir.is_dir() else 0
            if done >= kill_after:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.01)
        process.wait()
        if process.returncode != -signal.SIGKILL:
            pytest.fail("the teacher pass finished before it could be killed; make the pass longer")
        assert not (target / "meta.json").exists()
    result = run([sys.executable, *cache_command(project, target, 8)])
    assert "already finished" in result.stderr
    finished = int(result.stderr.split(" of them already finished")[0].rsplit(", ", 1)[-1])
    assert finished >= kill_after  # the shards finished before the last kill were kept
    assert_same_cache(TeacherCache.open(str(reference)), TeacherCache.open(str(target)))


def test_two_process_training_evaluates_each_example_once_and_resumes(project):
    out = project / "ddp"
    common = [
        str(project / "distill.yaml"),
        "--output_dir",
        str(out),
        "--num_train_epochs",
        "2",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "2",
        "--validation_from_train",  # evaluation during training happens on validation, never on test
        "20",
        "--per_device_train_batch_size",
        "8",
        "--cache_dir",
        str(project / "cache_ddp"),
    ]
    run([*TWO_CPUS, "recipes/distill.py", *common])
    results = json.loads((out / "results.json").read_text())
    assert results["test_examples"] == 40  # 40 test rows, gathered from 2 processes without duplicates
    assert results["export_agreement"] == 1.0
    # 120 - 20 validation rows = 100 / (2 processes × 8 per device) = 7 steps per epoch (6.25 rounded up), 2 epochs.
    state = json.loads((out / "checkpoint-14" / "trainer_state.json").read_text())
    assert state["global_step"] == 14
    assert (out / "checkpoint-4" / "lelp_subclass_head.safetensors").is_file()
    run([*TWO_CPUS, "recipes/distill.py", *common, "--resume_from_checkpoint", str(out / "checkpoint-4")])
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-9)


@pytest.mark.fault
def test_processes_that_do_not_join_one_group_are_refused(project):
    result = subprocess.run(
        [*TWO_CPUS, *cache_command(project, project / "cache_unjoined", 16), "--use_cpu", "false"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode != 0
    assert "pass --use_cpu true" in result.stderr
    assert not (project / "cache_unjoined").exists()


@pytest.mark.parametrize("name", ["single_gpu", "multi_gpu", "deepspeed_zero2", "fsdp", "cpu_2proc"])
def test_accelerate_configs_load(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(os.path.join(ROOT, "recipes", "accelerate_configs", f"{name}.yaml"))
    assert config.num_processes >= 1 and config.distributed_type is not None
