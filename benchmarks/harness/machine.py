"""The machine a result was measured on: recorded in every result file, so that the report describes it from the
data rather than from prose typed about one machine."""

from __future__ import annotations

import os
import platform


def machine_info() -> dict:
    """Platform, usable CPUs, torch and its thread count, and the accelerator this process would train on."""
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": cpus,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu",
    }


def describe(machine: dict) -> str:
    """One line for the report; fields a result file lacks are left out."""
    parts = [machine.get("platform", "unknown platform")]
    if "cpu_count" in machine:
        parts.append(f"{machine['cpu_count']} CPUs")
    if "torch" in machine:
        threads = f" ({machine['torch_threads']} threads)" if "torch_threads" in machine else ""
        parts.append(f"torch {machine['torch']}{threads}")
    if "device" in machine:
        parts.append(f"device {machine['device']}")
    if "student_processes" in machine:
        parts.append(f"students in {machine['student_processes']} processes × {machine['threads_per_student']} thread")
    return ", ".join(parts)
