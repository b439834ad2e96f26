"""The configs shipped with the package: the examples (`hf-lelp train-teacher teacher_rotten_tomatoes` works
anywhere, `hf-lelp example-config`) and the accelerate configs (`hf-lelp accelerate-config`).

The files live once, in the repository's recipes/configs/ and recipes/accelerate_configs/, which the wheel installs as
the package-data folders hf_lelp/configs/ and hf_lelp/accelerate_configs/ (pyproject.toml); a checkout (plain or
`pip install -e .`) reads them from recipes/.
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shlex
import shutil
from pathlib import Path

from hf_lelp.base.errors import UserError
from hf_lelp.training.launch import CPU_CONFIG

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def shipped_folder(name: str) -> Path:
    """hf_lelp/<name>/ of the wheel (package data, pyproject.toml), else the checkout's recipes/<name>/."""
    packaged = Path(str(importlib.resources.files("hf_lelp") / name))
    checkout = Path(__file__).resolve().parents[1] / "recipes" / name
    return packaged if packaged.is_dir() else checkout


def config_folder() -> Path:
    return shipped_folder("configs")


def accelerate_config_folder() -> Path:
    return shipped_folder("accelerate_configs")


def show_or_write(path: Path | None, write: str | None, missing: str) -> str | None:
    """Print a shipped file (returns its text), or copy it to `write`, never over an existing file (returns None);
    `missing`: the user error when there is no such file."""
    if path is None or not path.is_file():
        raise UserError(missing)
    if not write:
        text = path.read_text(encoding="utf-8")
        print(text, end="")
        return text
    if os.path.exists(write):
        raise UserError(f"--write {write} exists already: pass another path, or remove it first.")
    shutil.copyfile(path, write)
    return None


def example_names() -> list[str]:
    return sorted(path.stem for path in config_folder().iterdir() if path.suffix in CONFIG_SUFFIXES)


def example_path(name: str) -> Path | None:
    """The shipped file called `name` (with or without its suffix), or None."""
    stem = name[: -len(Path(name).suffix)] if name.endswith(CONFIG_SUFFIXES) else name
    for suffix in CONFIG_SUFFIXES:
        path = config_folder() / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def command_for(name: str) -> str:
    """The subcommand an example config is for (by the naming of the shipped files)."""
    return "train-teacher" if name.startswith("teacher") else "distill"


def _shipped_hint(command: str, name: str) -> str:
    return (
        f"hf-lelp ships the example config '{name}': run `hf-lelp {command} {name}`, or `hf-lelp example-config "
        f"{name} --write {name}.yaml` for a copy to edit"
    )


def resolve_config_argument(command: str, argv: list[str]) -> list[str]:
    """argv with a shipped config's name (first argument, or the value of --config) replaced by its path.

    An existing file always wins; a missing path whose file name is a shipped example says how to get it."""
    argv = list(argv)
    index = argv.index("--config") + 1 if "--config" in argv else 0
    if index >= len(argv) or argv[index].startswith("-") or os.path.exists(argv[index]):
        return argv
    given = argv[index]
    if os.sep not in given and "/" not in given and example_path(given) is not None:
        argv[index] = str(example_path(given))
        return argv
    shipped = example_path(os.path.basename(given))
    if given.endswith(CONFIG_SUFFIXES):
        if shipped is None:
            return argv  # the config reader says it is not found
        raise UserError(
            f"Config file {given} not found (working directory: {os.getcwd()}). "
            f"{_shipped_hint(command, shipped.stem)}."
        )
    raise UserError(
        f"'{given}' is neither a config file (.yaml/.yml/.json) nor the name of a shipped example config "
        f"({', '.join(example_names())}). Pass the path of your config file, or flags only (--flag value ...)."
    )


def example_config(argv: list[str] | None = None) -> str:
    """Print a shipped example config (or list them), or write a copy to edit with --write PATH."""
    parser = argparse.ArgumentParser(prog="hf-lelp example-config", description=example_config.__doc__)
    parser.add_argument("name", nargs="?", help=f"One of: {', '.join(example_names())}. Omit to list them.")
    parser.add_argument("--write", metavar="PATH", help="Write the config to PATH (never over an existing file).")
    options = parser.parse_args(argv)
    if not options.name:
        print("\n".join(example_names()))
        return ""
    path = example_path(options.name)
    missing = f"No example config named '{options.name}'. hf-lelp ships: {', '.join(example_names())} "
    shown = show_or_write(path, options.write, missing + "(`hf-lelp example-config` lists them).")
    if shown is not None:
        return shown
    print(
        f"wrote {options.write} (the example '{path.stem}'); run it: hf-lelp {command_for(path.stem)} {options.write}"
    )
    return options.write


def accelerate_config_names() -> list[str]:
    return sorted(path.stem for path in accelerate_config_folder().glob("*.yaml"))


def accelerate_config(argv: list[str] | None = None) -> str:
    """Print a shipped accelerate config (default: cpu_2proc, two CPU processes), or --write it to a file."""
    parser = argparse.ArgumentParser(prog="hf-lelp accelerate-config", description=accelerate_config.__doc__)
    parser.add_argument("name", nargs="?", default=CPU_CONFIG, help=f"One of: {', '.join(accelerate_config_names())}.")
    parser.add_argument("--write", metavar="PATH", help="Write the config to PATH (never over an existing file).")
    parser.add_argument("--list", action="store_true", help="List the shipped configs.")
    options = parser.parse_args(argv)
    if options.list:
        print("\n".join(accelerate_config_names()))
        return ""
    path = accelerate_config_folder() / f"{options.name.removesuffix('.yaml')}.yaml"
    missing = f"No accelerate config named '{options.name}'. hf-lelp ships: {', '.join(accelerate_config_names())} "
    shown = show_or_write(path, options.write, missing + "(`hf-lelp accelerate-config --list`).")
    if shown is not None:
        return shown
    cpu = " --use_cpu true" if path.stem.startswith("cpu") else ""
    print(
        f"wrote {options.write}; run: accelerate launch --config_file {shlex.quote(options.write)} "
        f"-m hf_lelp.commands distill CONFIG.yaml{cpu}"
    )
    return options.write
