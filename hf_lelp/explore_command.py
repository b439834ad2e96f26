"""`hf-lelp explore`: the pseudo-subclass report of a teacher cache over its training data."""

from __future__ import annotations

import argparse
import json
import os

from hf_lelp.base.extras import require
from hf_lelp.base.version import PROG
from hf_lelp.cache.store import TeacherCache
from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, TEXT
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import dataset_fingerprint
from hf_lelp.explore.report import write_report
from hf_lelp.methods.projections import GROUPINGS, FitOptions, SubclassProjections, load_or_fit_projections


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
        help=f"Column of fine labels to compare the pseudo-subclasses with; default: '{FINE_LABEL}' "
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
    column = FINE_LABEL if args.fine_label_column is None else args.fine_label_column
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
