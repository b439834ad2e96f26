"""The memory rows of benchmarks/perf.py: a synthetic cache and token dataset of N rows, a training run in a child
process per variant (sampler x token-file layout), its resident memory split into heap and file-backed pages; and
the block-shuffling sampler.

The token dataset is Arrow, memory-mapped by `datasets`; resident memory counts the file pages a process maps,
and a page fault maps a whole fault-around window (or large folio) around the page it needs. Two things make the
file-backed part grow with N for a fixed number of steps:
- reading: Trainer's RandomSampler reads single rows at random offsets, a fault per row and column buffer; it also
  materialises the epoch's permutation as a Python list (about 36 bytes a row of heap, freed after the epoch).
  `BlockShuffleSampler` reads blocks of consecutive rows instead: the pages mapped grow with the rows read.
- opening: `save_to_disk` writes record batches of at most 1,000 rows, and opening the file reads every batch's
  header, mapping a window around each: about 60 bytes a row before any training. A file written with large
  record batches (`LARGE_BATCH_ROWS`; `Dataset.map(..., batched=True, batch_size=B, writer_batch_size=B)` writes
  B-row batches to its cache file) is opened at almost no cost.
Over a whole epoch any sampler ends up mapping the whole file (page cache, which the kernel reclaims).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import datasets
import numpy as np
import torch

from hf_lelp import LELPTrainer
from hf_lelp.cache.store import TeacherCache
from hf_lelp.cache.writer import write_cache_chunks
from hf_lelp.methods.projections import FitOptions, SubclassProjections, fit_projections

BLOCK_SIZE, BLOCKS_PER_WINDOW = 256, 8
LARGE_BATCH_ROWS = 65_536
# variant: (sampler, token file). "saved": as save_to_disk writes it (<= 1,000-row record batches, what a user who
# saved a tokenised dataset has); "large_batches": the same rows in LARGE_BATCH_ROWS-row record batches.
VARIANTS = {
    "random": ("random", "saved"),
    "block": ("block", "saved"),
    "block_large_batches": ("block", "large_batches"),
}


class BlockShuffleSampler(torch.utils.data.Sampler[int]):
    """Every row index exactly once per epoch, read in blocks of `block_size` consecutive rows.

    Each epoch the blocks (the last one may be short) are put in a random order seeded by (seed, epoch); they are
    taken `blocks_per_window` at a time and the rows of those blocks are shuffled together, so a batch mixes rows
    of several distant blocks while every block is read as one contiguous range.
    """

    def __init__(
        self, num_rows: int, block_size: int = BLOCK_SIZE, blocks_per_window: int = BLOCKS_PER_WINDOW, seed=0
    ):
        for name, value, least in (
            ("num_rows", num_rows, 0),
            ("block_size", block_size, 1),
            ("blocks_per_window", blocks_per_window, 1),
            ("seed", seed, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, not {value!r}")
        self.num_rows, self.block_size, self.blocks_per_window = int(num_rows), int(block_size), int(blocks_per_window)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Trainer (through accelerate) at the start of each epoch: a new block order per epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_rows

    def windows(self):
        """This epoch's row indices, window by window (each window: its blocks' rows, shuffled together)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        num_blocks = -(-self.num_rows // self.block_size)
        order = rng.permutation(num_blocks)
        for first in range(0, num_blocks, self.blocks_per_window):
            rows = np.concatenate(
                [
                    np.arange(block * self.block_size, min((block + 1) * self.block_size, self.num_rows))
                    for block in order[first : first + self.blocks_per_window]
                ]
            )
            rng.shuffle(rows)
            yield rows

    def __iter__(self):
        for rows in self.windows():
            yield from rows.tolist()


class BlockSampledLELPTrainer(LELPTrainer):
    """LELPTrainer reading its training set through a BlockShuffleSampler instead of Trainer's RandomSampler."""

    def __init__(self, *args, block_size: int = BLOCK_SIZE, blocks_per_window: int = BLOCKS_PER_WINDOW, **kwargs):
        self.block_size, self.blocks_per_window = block_size, blocks_per_window
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return BlockShuffleSampler(len(dataset), self.block_size, self.blocks_per_window, seed=self.args.seed)


def synthetic_cache(folder: str, n: int, d: int, c: int = 2, chunk: int = 100_000) -> TeacherCache:
    generator = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(c, d, generator=generator), torch.randn(c, generator=generator)
    centres = torch.randn(c, d, generator=generator)

    def chunks():
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            labels = torch.randint(0, c, (size,), generator=generator)
            hidden = centres[labels] + torch.randn(size, d, generator=generator)
            yield torch.arange(start, start + size), hidden, hidden @ weight.T + bias, labels

    fingerprint = {
        "teacher": "synthetic",
        "teacher_head_sha256": "0" * 64,
        "dataset": f"synthetic-{n}",
        "dataset_sha256": "0" * 64,
        "max_length": 16,
        "label_names": ["a", "b"],
        "dtype": "float32",
    }
    return write_cache_chunks(folder, chunks(), weight, bias, fingerprint)


def write_token_rows(cache_dir: str, n: int, labels: np.ndarray | None = None) -> None:
    """A memory-mapped Arrow dataset of n fixed-length token rows keyed by example id (what a user at scale has).
    `labels`: the cache's, which the trainer checks the rows against; by default one drawn from the tokens."""
    rng = np.random.default_rng(0)

    def rows():
        for start in range(0, n, 100_000):
            size = min(100_000, n - start)
            ids = rng.integers(5, 1000, size=(size, 16))
            for i in range(size):
                yield {
                    "example_id": start + i,
                    "input_ids": ids[i].tolist(),
                    "attention_mask": [1] * 16,
                    "labels": int(ids[i, 0] % 2 if labels is None else labels[start + i]),
                }

    datasets.Dataset.from_generator(rows).save_to_disk(os.path.join(cache_dir, "tokens"))


def write_large_batch_tokens(cache_dir: str, rows_per_batch: int = LARGE_BATCH_ROWS) -> str:
    """The saved token rows rewritten as one Arrow stream file of `rows_per_batch`-row record batches (the schema,
    and with it the datasets features, unchanged); returns its path, for `datasets.Dataset.from_file`."""
    import pyarrow as pa

    table = datasets.load_from_disk(os.path.join(cache_dir, "tokens")).data.table
    path = os.path.join(cache_dir, "tokens_large_batches.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        for start in range(0, table.num_rows, rows_per_batch):
            writer.write_table(table.slice(start, rows_per_batch).combine_chunks())
    return path


def open_tokens(cache_dir: str, layout: str) -> datasets.Dataset:
    """The token dataset of `cache_dir`, memory-mapped, in the given layout (see VARIANTS)."""
    if layout == "saved":
        return datasets.load_from_disk(os.path.join(cache_dir, "tokens"))
    return datasets.Dataset.from_file(os.path.join(cache_dir, "tokens_large_batches.arrow"))


def fit_projections_cached(cache: TeacherCache):
    path = os.path.join(cache.path, "projections.safetensors")
    if os.path.isfile(os.path.splitext(path)[0] + ".json"):
        return SubclassProjections.load(path)
    projections = fit_projections(cache, FitOptions(num_subclasses=4))
    projections.save(path)
    return projections


def memory_split_mib() -> dict[str, float]:
    """Resident memory now, split into anonymous (heap: what the process really needs) and file-backed pages
    (memory-mapped files such as Arrow datasets: page cache the kernel can reclaim)."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("RssAnon:", "RssFile:")):
                values[line.split(":")[0].lower().replace("rss", "rss_") + "_mib"] = int(line.split()[1]) / 1024
    return values


def peak_rss_mib() -> float:
    """This process's own resident high-water mark. (Not ru_maxrss: Linux carries the parent's peak over
    fork+exec into the child's ru_maxrss, which would count the parent that generated the synthetic data.)"""
    import resource

    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(cache_dir: str, args, variant: str) -> dict:
    """Train a small student with `args` on the cache's token rows as `variant` reads them; its memory in MiB,
    with the file-backed MiB that opening the token dataset mapped (`token_open_file_mib`)."""
    from transformers import BertConfig, BertForSequenceClassification, default_data_collator

    from hf_lelp import attach_subclass_head

    cache = TeacherCache.open(cache_dir, verify=False)
    projections = fit_projections_cached(cache)
    sampler, layout = VARIANTS[variant]
    before = memory_split_mib()["rss_file_mib"]
    train = open_tokens(cache_dir, layout)
    opened = memory_split_mib()["rss_file_mib"] - before
    config = BertConfig(
        vocab_size=1000,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    attach_subclass_head(model, 2, 4)
    trainer_class = {"random": LELPTrainer, "block": BlockSampledLELPTrainer}[sampler]
    trainer_class(
        model=model,
        args=args,
        teacher_cache=cache,
        projections=projections,
        train_dataset=train,
        data_collator=default_data_collator,
    ).train()
    return {"peak_rss_mib": peak_rss_mib(), **memory_split_mib(), "token_open_file_mib": opened}


def measure_rss(folder: str, n: int, d: int, child_command: list[str], variants=tuple(VARIANTS)) -> tuple[dict, float]:
    """({variant: memory figures of a training run in MiB}, fit seconds) for a synthetic cache of n x d.

    The cache and token files are written once; each variant trains in its own fresh child process
    (`child_command` + [folder, "--variant", name] must print the figures as the last JSON line)."""
    cache = synthetic_cache(folder, n, d)
    start = time.perf_counter()
    fit_projections_cached(cache)
    fit_seconds = time.perf_counter() - start
    write_token_rows(folder, n, cache.labels)
    write_large_batch_tokens(folder)
    figures = {}
    for variant in variants:
        result = subprocess.run(
            [*child_command, folder, "--variant", variant], capture_output=True, text=True, check=True
        )
        figures[variant] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures, fit_seconds
