"""Multi-process launches: the process count asked for versus the one that runs.

`accelerate launch --num_processes 2` on a machine without GPUs starts *one* process (accelerate's simple launcher;
`--cpu` needs MPI), and the run would go on as a single process without a word. The shipped config
that works on CPUs is CPU_CONFIG (`hf-lelp accelerate-config`, hf_lelp/example_configs.py).
"""

from __future__ import annotations

import logging
import os

import yaml

logger = logging.getLogger(__name__)

CPU_CONFIG = "cpu_2proc"
# Set by every `accelerate launch` in the processes it starts (also by its single-process launcher).
LAUNCHED_BY_ACCELERATE = "ACCELERATE_MIXED_PRECISION"


def requested_processes(environ=os.environ, launcher_argv: list[str] | None = None) -> int | None:
    """The process count `accelerate launch` was asked for (its --num_processes, or its config file's), or None
    when this process was not started by `accelerate launch` or the count cannot be told."""
    if LAUNCHED_BY_ACCELERATE not in environ:
        return None
    argv = _parent_argv() if launcher_argv is None else launcher_argv
    # `accelerate launch ...` or `python -m accelerate.commands.launch ...`: its options follow that argument
    start = next((i + 1 for i, arg in enumerate(argv[:3]) if "accelerate" in os.path.basename(arg)), None)
    if start is None:
        return None
    argv = argv[start + (argv[start : start + 1] == ["launch"]) :]
    count = _option(argv, "num_processes")
    if count is None and (config := _option(argv, "config_file")) and os.path.isfile(config):
        with open(config, encoding="utf-8") as handle:
            count = (yaml.safe_load(handle) or {}).get("num_processes")
    try:
        return int(count) if count is not None else None
    except ValueError:
        return None


def _parent_argv() -> list[str]:
    """The command line of the process that started this one (Linux: /proc), or [] when it cannot be read."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as handle:
            return [arg.decode(errors="replace") for arg in handle.read().split(b"\0") if arg]
    except OSError:
        return []


def _option(argv: list[str], name: str) -> str | None:
    """The value of `--name V`, `--name=V` (or the dashed spelling) before the launched script's own arguments."""
    spellings = {f"--{name}", f"--{name.replace('_', '-')}"}
    for i, arg in enumerate(argv):
        if arg in ("-m", "--module") or arg.endswith(".py"):
            break
        if arg in spellings and i + 1 < len(argv):
            return argv[i + 1]
        flag, _, value = arg.partition("=")
        if flag in spellings and value:
            return value
    return None


_WARNED: set[tuple[int, int]] = set()


def warn_if_fewer_processes(world_size: int, environ=os.environ, launcher_argv: list[str] | None = None) -> bool:
    """Log a warning when `accelerate launch` was asked for more processes than run together; True if it did."""
    asked = requested_processes(environ, launcher_argv)
    if asked is None or asked == world_size or (asked, world_size) in _WARNED:
        return False
    _WARNED.add((asked, world_size))  # once per run, however many steps check the process group
    logger.warning(
        "accelerate launch was asked for %d processes, but this run has %d (world size %d): on a machine without "
        "GPUs `--num_processes` alone starts a single process. For %d CPU processes: `hf-lelp accelerate-config "
        "--write %s.yaml`, then `accelerate launch --config_file %s.yaml -m hf_lelp.commands distill ... "
        "--use_cpu true`.",
        asked,
        world_size,
        world_size,
        asked,
        CPU_CONFIG,
        CPU_CONFIG,
    )
    return True
