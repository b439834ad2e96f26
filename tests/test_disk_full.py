"""A really full disk (a tiny tmpfs, not a faked OSError): clear errors, no temporary files, finished work kept.

Each test runs a child Python process whose output folder lies on a file system a few hundred KiB large, mounted in
a private mount namespace (`unshare -m`, or `unshare -rm` without root). Where no mount is possible, a per-file size
limit (RLIMIT_FSIZE, writes then fail with EFBIG) stands in, and the test warns that it did.
"""

import functools
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import hf_lelp.cache.writer as cache_module
from conftest import ROOT, make_split, make_tokenizer, tiny_bert
from hf_lelp.cache import teacher_pass
from hf_lelp.cache.teacher_pass import build_teacher_cache

PAGE = 4096  # tmpfs allocates whole pages
TMPFS = "tmpfs"
RLIMIT = "RLIMIT_FSIZE"
# The teacher pass in the child: N rows in shards of S, hidden size D (the tiny BERT's), 2 labels.
N, S, D = 2048, 512, 32
OPTIONS = dict(label_names=["a", "b"], max_length=16, batch_size=256, shard_size=S, teacher_name="tiny")

TEACHER_PASS = f"""
import os, sys
sys.path.insert(0, os.path.join({ROOT!r}, "tests"))
from conftest import make_split, make_tokenizer, tiny_bert
from hf_lelp.cache.teacher_pass import build_teacher_cache

build_teacher_cache(
    tiny_bert(2, hidden={D}), make_tokenizer(), make_split({N}), os.path.join(sys.argv[1], "cache"), **{OPTIONS!r}
)
"""

SAFETENSORS_WRITE = """
import os, sys
import torch
from safetensors.torch import save_file
from hf_lelp.base.io_utils import write_atomic

path = os.path.join(sys.argv[1], "projections", "shard-00000.safetensors")
write_atomic(path, lambda p: save_file({"x": torch.ones(1000)}, p))  # 4 KB: fits
write_atomic(path, lambda p: save_file({"x": torch.zeros(200_000)}, p))  # 800 KB: does not
"""


def pages(size: int) -> int:
    return -(-size // PAGE)


@functools.cache
def mount_command() -> list[str] | None:
    """`unshare` options under which this process may mount a tmpfs, or None."""
    with tempfile.TemporaryDirectory() as probe:  # the mount vanishes with the probe's namespace
        for options in (["-m"], ["-r", "-m"]):
            try:
                command = ["unshare", *options, "sh", "-c", f"mount -t tmpfs -o size=4k tmpfs {probe}"]
                result = subprocess.run(command, capture_output=True)
            except OSError:  # no unshare
                return None
            if result.returncode == 0:
                return ["unshare", *options]
    return None


def run_on_small_disk(tmp_path, script: str, size_bytes: int, file_limit_bytes: int):
    """Run `script` with a folder on a file system of `size_bytes` as argv[1].

    Returns (completed process, mechanism, a copy of that folder as the child left it). Without a mount, argv[1] is
    a plain folder whose files may not grow past `file_limit_bytes`.
    """
    script_path, folder, after = tmp_path / "child.py", tmp_path / "small_disk", tmp_path / "after"
    script_path.write_text(script)
    folder.mkdir()
    after.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    unshare = mount_command()
    if unshare:
        # The tmpfs lives only in the child's mount namespace: copy its contents out before the namespace ends.
        shell = (
            'mount -t tmpfs -o size="$1" tmpfs "$2" || exit 99; "$3" "$4" "$2"; rc=$?; cp -r "$2"/. "$5"/; exit $rc'
        )
        command = [*unshare, "sh", "-c", shell, "sh", str(size_bytes), folder, sys.executable, script_path, after]
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode != 99, result.stderr
        return result, f"{TMPFS} of {size_bytes // 1024} KiB via {' '.join(unshare)}", after

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit_bytes, file_limit_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death by signal

    mechanism = f"{RLIMIT} of {file_limit_bytes // 1024} KiB per file (no tmpfs mount possible here)"
    warnings.warn(f"Full disk simulated with {mechanism}.", stacklevel=2)
    command = [sys.executable, script_path, folder]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size
    )
    return result, mechanism, folder


def leftover_temporaries(folder) -> list[str]:
    return [
        os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if name.startswith(".tmp")
    ]


@pytest.mark.fault
def test_full_disk_while_merging_the_cache_is_a_clear_error_and_a_rerun_resumes(
    tmp_path, monkeypatch, record_property
):
    # The finished shards (each a safetensors file plus a json, and fingerprint.json) fit; the merged arrays do not:
    # example_ids.npy fits, hidden.npy (N x D float32) is too big for the rest.
    shard_file = S * (8 + 4 * D + 4 * 2 + 8) + 1024
    shards = (N // S) * (pages(shard_file) + 1) * PAGE + PAGE
    example_ids = pages(8 * N + 128) * PAGE
    hidden = pages(4 * N * D + 128) * PAGE
    size = shards + example_ids + hidden // 2
    result, mechanism, after = run_on_small_disk(tmp_path, TEACHER_PASS, size, file_limit_bytes=hidden // 2)
    record_property("full_disk", mechanism)
    context = f"[{mechanism}] rc={result.returncode}\n{result.stderr[-3000:]}"
    # A Python exception (exit 1), not SIGBUS from a write through the memory map (-7, or 135 from the shell).
    assert result.returncode == 1, context
    cache_dir = os.path.join(tmp_path / "small_disk", "cache")
    if mechanism.startswith(TMPFS):
        pattern = rf"OSError: \[Errno 28\] No space left on device while writing {re.escape(cache_dir)}/\S+\.npy"
        assert re.search(pattern, result.stderr), context
    else:
        assert re.search(r"OSError: \[Errno 27\] File too large", result.stderr), context
    copied_cache = after / "cache"
    assert leftover_temporaries(copied_cache) == [], context
    assert not (copied_cache / "meta.json").exists()
    assert sorted(os.listdir(copied_cache / "shards")) == sorted(
        ["fingerprint.json"] + [f"shard-{k:05d}.{ext}" for k in range(N // S) for ext in ("json", "safetensors")]
    ), context
    for k in range(N // S):
        assert cache_module.shard_is_valid(str(copied_cache / "shards"), k, S), f"{mechanism}: shard {k} is damaged"

    # With space (the copy lies on an ordinary disk), a rerun merges the kept shards without running the teacher.
    def no_teacher_forward(*args, **kwargs):
        raise AssertionError("a finished shard was recomputed")

    monkeypatch.setattr(teacher_pass, "_run_shard", no_teacher_forward)
    cache = build_teacher_cache(tiny_bert(2, hidden=D), make_tokenizer(), make_split(N), str(copied_cache), **OPTIONS)
    hidden_rows, logits = cache.lookup(np.arange(N))
    torch.testing.assert_close(hidden_rows @ cache.weight.T + cache.bias, logits, atol=1e-5, rtol=1e-5)
    assert leftover_temporaries(copied_cache) == []


@pytest.mark.fault
def test_full_disk_under_safetensors_is_the_clear_error_and_keeps_the_previous_file(tmp_path, record_property):
    result, mechanism, after = run_on_small_disk(tmp_path, SAFETENSORS_WRITE, 64 * 1024, file_limit_bytes=64 * 1024)
    record_property("full_disk", mechanism)
    context = f"[{mechanism}] rc={result.returncode}\n{result.stderr[-3000:]}"
    assert result.returncode == 1, context
    final = os.path.join(tmp_path / "small_disk", "projections", "shard-00000.safetensors")
    if mechanism.startswith(TMPFS):
        # safetensors raises SafetensorError, not OSError: atomic_path must still recognise the full disk.
        assert "SafetensorError" in result.stderr, context
        message = (
            rf"OSError: \[Errno 28\] No space left on device while writing {re.escape(final)} "
            r"\(the previous complete file is intact\)\. Free space and rerun"
        )
        assert re.search(message, result.stderr), context
    else:
        assert "File too large" in result.stderr, context
    assert leftover_temporaries(after) == [], context
    assert sorted(os.listdir(after / "projections")) == ["shard-00000.safetensors"], context
    torch.testing.assert_close(load_file(after / "projections" / "shard-00000.safetensors")["x"], torch.ones(1000))
