"""Machine-independent speed and memory ratios of hf-lelp, plus absolute figures for the device it runs on.

    .venv/bin/python benchmarks/perf.py                 # writes benchmarks/results/perf.json and benchmarks/PERF.md
    .venv/bin/python benchmarks/perf.py --quick         # small sizes, for a smoke run (writes nothing)
    .venv/bin/python benchmarks/perf.py --only memory   # rerun one group of rows, keep the others in the JSON

Row groups (`--only`, comma-separated):
  speed                      MiniLM-L6 teacher, MiniLM-L6 2-layer student:
    trainer_overhead           LELPTrainer samples/s over plain Trainer (CE) samples/s, same student and batch
    cache_vs_inference         teacher-pass samples/s over bare teacher inference samples/s
    cached_vs_online_kd        LELP training samples/s over online KD (teacher run every step) samples/s
  cached_vs_online_kd_mpnet  the same ratio with the big teacher (all-mpnet-base-v2, --teacher) and the MiniLM-L6
                             student truncated to --student_layers layers (the paper's regime in miniature)
  memory                     a synthetic N x D=768 cache and token dataset, trained in a child process per variant:
    rss_growth                 peak RSS at N=1.6M over N=100k, Trainer's random sampler, the token file as saved
    rss_growth_block           the same with the block-shuffling sampler (benchmarks/perf_memory.py)
    rss_growth_block_large_batches  block sampler, token file rewritten in large record batches
    fit_seconds                fitting the projections on the 1.6M x 768 cache
Ratios are measured in one run, alternating the two sides to cancel drift.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: benchmarks.*

from benchmarks.perf_memory import (  # noqa: E402
    BLOCK_SIZE,
    BLOCKS_PER_WINDOW,
    LARGE_BATCH_ROWS,
    VARIANTS,
    measure_rss,
    rss_child,
)
from hf_lelp import (  # noqa: E402
    LELPConfig,
    LELPTrainer,
    attach_subclass_head,
    build_teacher_cache,
    load_student,
    tokenize_split,
)
from hf_lelp.cache.store import TeacherCache  # noqa: E402
from hf_lelp.data.assets import resolve_model  # noqa: E402
from hf_lelp.data.load import load_text_classification  # noqa: E402
from hf_lelp.methods.losses import kd_loss  # noqa: E402
from hf_lelp.methods.projections import FitOptions, fit_projections  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COMMAND = "python benchmarks/perf.py"
STUDENT = "all-MiniLM-L6-v2"
MPNET_GROUP = "cached_vs_online_kd_mpnet"
GROUPS = ("speed", MPNET_GROUP, "memory")
SPEED_ROWS = (
    "cache_vs_inference",
    "teacher_pass_samples_per_s",
    "small_cache_fit_seconds",
    "trainer_overhead",
    "cached_vs_online_kd",
    "lelp_train_samples_per_s",
)
MPNET_ROWS = (
    MPNET_GROUP,
    "lelp_train_samples_per_s_mpnet",
    "online_kd_samples_per_s_mpnet",
    "teacher_pass_samples_per_s_mpnet",
)
MEMORY_ROWS = ("rss_growth", "anon_rss", "peak_rss", "file_rss", "fit_seconds")  # name prefixes
TEACHER_INPUTS = ("teacher_input_ids", "teacher_attention_mask")


class StepTimer(TrainerCallback):
    """Samples/s between the end of warm-up step `skip` and the last step (excludes start-up costs)."""

    def __init__(self, skip: int, batch_size: int):
        self.skip, self.batch_size, self.start, self.steps = skip, batch_size, None, 0

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.skip:
            self.start = time.perf_counter()
        elif state.global_step > self.skip:
            self.steps += 1
            self.elapsed = time.perf_counter() - self.start

    @property
    def samples_per_second(self) -> float:
        return self.steps * self.batch_size / self.elapsed


class OnlineKDTrainer(Trainer):
    """The baseline a cache replaces: the teacher runs on every batch. A teacher with its own tokenizer reads
    `teacher_input_ids`/`teacher_attention_mask` (see PairCollator); otherwise it reads the student's inputs."""

    def __init__(self, teacher, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(teacher, str):
            teacher = AutoModelForSequenceClassification.from_pretrained(teacher)
        self.teacher, self.temperature = teacher.to(self.args.device).eval(), temperature

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = [*self._signature_columns, *TEACHER_INPUTS]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "example_id")}
        teacher_inputs = {name.removeprefix("teacher_"): inputs.pop(name) for name in TEACHER_INPUTS if name in inputs}
        with torch.no_grad():
            teacher_logits = self.teacher(**(teacher_inputs or inputs)).logits
        outputs = model(**inputs)
        loss = kd_loss(outputs.logits, teacher_logits, self.temperature)
        return (loss, outputs) if return_outputs else loss


class PairCollator:
    """Pads the student's tokens and the teacher's own tokens (`teacher_*` columns) separately."""

    def __init__(self, student_tokenizer, teacher_tokenizer):
        self.student, self.teacher = (
            DataCollatorWithPadding(student_tokenizer),
            DataCollatorWithPadding(teacher_tokenizer),
        )

    def __call__(self, features):
        batch = self.student([{k: v for k, v in f.items() if k not in TEACHER_INPUTS} for f in features])
        teacher = self.teacher(
            [{"input_ids": f["teacher_input_ids"], "attention_mask": f["teacher_attention_mask"]} for f in features]
        )
        batch["teacher_input_ids"], batch["teacher_attention_mask"] = teacher["input_ids"], teacher["attention_mask"]
        return batch


@dataclasses.dataclass
class Setup:
    """One student/teacher pair, ready to time: the student's tokenised train split, the cache and projections
    for LELP, and the teacher (a path or a model) for online KD, with its own inputs if its tokenizer differs."""

    label_names: list[str]
    student_path: str
    student_layers: int
    train: Any
    collator: Any
    teacher: Any
    cache: TeacherCache
    projections: Any
    online_train: Any = None
    online_collator: Any = None


def training_args(cls, output_dir, batch_size, steps, device, bf16, **extra):
    return cls(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        bf16=bf16,
        learning_rate=1e-4,
        seed=0,
        dataloader_num_workers=0,
        remove_unused_columns=True,
        **extra,
    )


def time_training(kind, setup: Setup, batch_size, steps, skip, device, bf16, tmp) -> float:
    student = load_student(setup.student_path, setup.label_names, setup.student_layers)
    timer = StepTimer(skip, batch_size)
    common = dict(train_dataset=setup.train, data_collator=setup.collator, callbacks=[timer])
    if kind == "plain_ce":
        trainer = Trainer(
            model=student, args=training_args(TrainingArguments, tmp, batch_size, steps, device, bf16), **common
        )
    elif kind == "online_kd":
        if setup.online_train is not None:
            common.update(train_dataset=setup.online_train, data_collator=setup.online_collator)
        trainer = OnlineKDTrainer(
            teacher=setup.teacher,
            model=student,
            args=training_args(TrainingArguments, tmp, batch_size, steps, device, bf16),
            **common,
        )
    else:
        attach_subclass_head(student, len(setup.label_names), 4)
        trainer = LELPTrainer(
            model=student,
            args=training_args(LELPConfig, tmp, batch_size, steps, device, bf16, method="lelp", num_subclasses=4),
            teacher_cache=setup.cache,
            projections=setup.projections,
            **common,
        )
    trainer.train()
    return timer.samples_per_second


def alternate(kinds, repeats, **kwargs) -> dict[str, float]:
    """Median samples/s per kind, the kinds interleaved A B A B ... so slow drifts hit both sides alike."""
    samples = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind in kinds:
            samples[kind].append(time_training(kind, **kwargs))
    return {kind: statistics.median(values) for kind, values in samples.items()}


def bare_inference(teacher, tokenizer, texts, batch_size, device, autocast) -> float:
    teacher = teacher.to(device).eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            encoded = tokenizer(
                texts[i : i + batch_size], truncation=True, max_length=64, padding=True, return_tensors="pt"
            ).to(device)
            with autocast():
                teacher(**encoded).logits.float().cpu()
    return len(texts) / (time.perf_counter() - start)


def cache_pass(teacher, tokenizer, data, folder, batch_size, mixed, max_length=64) -> float:
    from accelerate import Accelerator

    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    build_teacher_cache(
        teacher,
        tokenizer,
        data.splits["train"],
        folder,
        label_names=data.label_names,
        max_length=max_length,
        batch_size=batch_size,
        accelerator=Accelerator(mixed_precision=mixed),
    )
    return len(data.splits["train"]) / (time.perf_counter() - start)


class Recorder:
    """Collects result rows; every row names the command that reproduces it."""

    def __init__(self, command: str):
        self.command, self.rows = command, []

    def __call__(self, name, value, unit, device):
        self.rows.append(
            {"name": name, "value": round(float(value), 4), "unit": unit, "device": device, "command": self.command}
        )
        print(f"{name:<34} {value:>12.4f} {unit} ({device})", flush=True)


def measure_speed(record, options, work, precisions, cuda, device_name) -> None:
    # 5 interleaved repeats of 30 measured steps: on a shared 2-core CPU single runs vary by about ±5%.
    n_texts, steps, repeats, batch = (256, 8, 1, 16) if options.quick else (1024, 32, 5, 32)
    data = load_text_classification("rotten_tomatoes", max_examples={"train": n_texts, "test": 64})
    teacher_path = resolve_model(STUDENT)  # a MiniLM-L6 teacher (head untrained: speed only)
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    for precision, bf16 in precisions:
        device = ("cuda " if cuda else "") + device_name + f", {precision}"
        mixed = "bf16" if bf16 else "no"
        teacher = load_student(teacher_path, data.label_names)
        autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else torch.no_grad
        texts = list(data.splits["train"]["text"])
        inference, cached = [], []
        for _ in range(repeats):
            inference.append(bare_inference(teacher, tokenizer, texts, 64, "cuda" if cuda else "cpu", autocast))
            cached.append(cache_pass(teacher, tokenizer, data, os.path.join(work, "cache"), 64, mixed))
        record("cache_vs_inference", statistics.median(cached) / statistics.median(inference), "ratio", device)
        record("teacher_pass_samples_per_s", statistics.median(cached), "samples/s", device)
        teacher.save_pretrained(os.path.join(work, "teacher"))
        cache = TeacherCache.open(os.path.join(work, "cache"))
        start = time.perf_counter()
        projections = fit_projections(cache, FitOptions(num_subclasses=4))
        record("small_cache_fit_seconds", time.perf_counter() - start, "s", device)
        setup = Setup(
            label_names=data.label_names,
            student_path=resolve_model(STUDENT),
            student_layers=2,
            train=tokenize_split(data.splits["train"], tokenizer, 64),
            collator=DataCollatorWithPadding(tokenizer),
            teacher=os.path.join(work, "teacher"),
            cache=cache,
            projections=projections,
        )
        speeds = alternate(
            ["plain_ce", "lelp", "online_kd"],
            repeats,
            setup=setup,
            batch_size=batch,
            steps=steps,
            skip=2,
            device="cuda" if cuda else "cpu",
            bf16=bf16,
            tmp=os.path.join(work, "run"),
        )
        record("trainer_overhead", speeds["lelp"] / speeds["plain_ce"], "ratio", device)
        record("cached_vs_online_kd", speeds["lelp"] / speeds["online_kd"], "ratio", device)
        record("lelp_train_samples_per_s", speeds["lelp"], "samples/s", device)


def big_teacher_sizes(quick: bool, cuda: bool) -> tuple[int, int, int, int, int, int]:
    """(texts, steps, warm-up steps, repeats, batch, max_length) for the big-teacher row: on 2 CPU cores an
    online-KD step with mpnet takes seconds, so few steps (one epoch of the texts at most) and 3 repeats."""
    if quick:
        return 48, 4, 2, 1, 8, 32
    if cuda:
        return 2048, 40, 5, 5, 32, 128
    return 256, 15, 3, 3, 16, 64


def measure_big_teacher(record, options, work, precisions, cuda, device_name) -> None:
    """cached_vs_online_kd with a big teacher: LELP from the teacher's cache vs online KD running the teacher on
    every batch (each with its own tokenizer); the student and its inputs are the same on both sides."""
    n_texts, steps, skip, repeats, batch, max_length = big_teacher_sizes(options.quick, cuda)
    data = load_text_classification("rotten_tomatoes", max_examples={"train": n_texts, "test": 16})
    split = data.splits["train"]
    teacher_path, student_path = resolve_model(options.teacher), resolve_model(STUDENT)
    teacher_tokenizer, student_tokenizer = (AutoTokenizer.from_pretrained(p) for p in (teacher_path, student_path))
    train = tokenize_split(split, student_tokenizer, max_length)
    teacher_tokens = teacher_tokenizer(list(split["text"]), truncation=True, max_length=max_length)
    online_train = train.add_column(TEACHER_INPUTS[0], teacher_tokens["input_ids"]).add_column(
        TEACHER_INPUTS[1], teacher_tokens["attention_mask"]
    )
    pair = f"teacher {options.teacher}, student {STUDENT} {options.student_layers} layers"
    sizes = f"batch {batch}, max_length {max_length}"
    for precision, bf16 in precisions:
        device = ("cuda " if cuda else "") + device_name + f", {precision}"
        teacher = load_student(teacher_path, data.label_names)  # head untrained: speed only
        folder = os.path.join(work, f"cache_big_{precision}")
        passed = cache_pass(teacher, teacher_tokenizer, data, folder, 32, "bf16" if bf16 else "no", max_length)
        cache = TeacherCache.open(folder)
        setup = Setup(
            label_names=data.label_names,
            student_path=student_path,
            student_layers=options.student_layers,
            train=train,
            collator=DataCollatorWithPadding(student_tokenizer),
            teacher=teacher,
            cache=cache,
            projections=fit_projections(cache, FitOptions(num_subclasses=4)),
            online_train=online_train,
            online_collator=PairCollator(student_tokenizer, teacher_tokenizer),
        )
        speeds = alternate(
            ["lelp", "online_kd"],
            repeats,
            setup=setup,
            batch_size=batch,
            steps=steps,
            skip=skip,
            device="cuda" if cuda else "cpu",
            bf16=bf16,
            tmp=os.path.join(work, "run_big"),
        )
        record(MPNET_GROUP, speeds["lelp"] / speeds["online_kd"], f"ratio ({pair}; {sizes})", device)
        record("lelp_train_samples_per_s_mpnet", speeds["lelp"], f"samples/s ({sizes})", device)
        record("online_kd_samples_per_s_mpnet", speeds["online_kd"], f"samples/s ({sizes})", device)
        record("teacher_pass_samples_per_s_mpnet", passed, f"samples/s (one pass, {n_texts} texts)", device)
        del setup, teacher, cache


def variant_note(variant: str) -> str:
    """How a memory variant reads its token rows, for the rows' units ("" for the default of the first rows)."""
    sampler, layout = VARIANTS[variant]
    notes = [f"block sampler {BLOCK_SIZE}x{BLOCKS_PER_WINDOW}"] if sampler == "block" else []
    if layout == "large_batches":
        notes.append(f"{LARGE_BATCH_ROWS}-row record batches")
    return "; ".join(notes)


def measure_memory(record, options, work) -> None:
    cpu = f"cpu ({os.cpu_count()} cores)"
    small_n = options.small_n or (20_000 if options.quick else 100_000)
    large_n = options.large_n or (100_000 if options.quick else 1_600_000)
    child = [sys.executable, os.path.abspath(__file__), "--steps", str(options.steps), "--rss-child"]
    small, _ = measure_rss(os.path.join(work, "rss_small"), small_n, 768, child)
    shutil.rmtree(os.path.join(work, "rss_small"))
    large, fit_seconds = measure_rss(os.path.join(work, "rss_large"), large_n, 768, child)
    shutil.rmtree(os.path.join(work, "rss_large"))
    for variant in VARIANTS:
        suffix, note = ("", "") if variant == "random" else (f"_{variant}", variant_note(variant))
        ratio = f"ratio ({note})" if note else "ratio"
        record(f"rss_growth{suffix}", large[variant]["peak_rss_mib"] / small[variant]["peak_rss_mib"], ratio, cpu)
        anon_growth = large[variant]["rss_anon_mib"] / small[variant]["rss_anon_mib"]
        record(f"anon_rss_growth{suffix}", anon_growth, ratio, cpu)
        for name, size, value in (("small", small_n, small[variant]), ("large", large_n, large[variant])):
            unit = f"MiB (N={size}{'; ' + note if note else ''})"
            record(f"peak_rss_{name}{suffix}_mib", value["peak_rss_mib"], unit, cpu)
            if variant == "random":
                record(f"anon_rss_{name}{suffix}_mib", value["rss_anon_mib"], unit, cpu)
            record(f"file_rss_{name}{suffix}_mib", value["rss_file_mib"], unit, cpu)
        unit = f"MiB on opening the tokens (N={large_n}{'; ' + note if note else ''})"
        record(f"file_rss_open_large{suffix}_mib", large[variant]["token_open_file_mib"], unit, cpu)
    record("fit_seconds", fit_seconds, f"s (N={large_n}, D=768)", cpu)


def parse_groups(text: str) -> tuple[str, ...]:
    """`--only a,b`: the named row groups, in the canonical order; an unknown name is an error listing the known."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GROUPS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown row group(s) {unknown or [text]}: choose from {', '.join(GROUPS)}")
    return tuple(group for group in GROUPS if group in names)


def row_group(name: str) -> str | None:
    """The group whose run produces row `name` (None for a row no group produces)."""
    if name in MPNET_ROWS:
        return MPNET_GROUP
    if name in SPEED_ROWS:
        return "speed"
    if name.startswith(MEMORY_ROWS):
        return "memory"
    return None


def merge_rows(old: list[dict], new: list[dict], groups) -> list[dict]:
    """The rows of a run of `groups` replace those groups' rows in `old`; the other rows are kept. Rows come out
    group by group in the canonical order, then any rows no group produces."""
    merged = []
    for group in GROUPS:
        source = new if group in groups else old
        merged += [row for row in source if row_group(row["name"]) == group]
    return merged + [row for row in old if row_group(row["name"]) is None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run; writes nothing")
    parser.add_argument(
        "--only",
        type=parse_groups,
        default=GROUPS,
        metavar="GROUPS",
        help=f"comma-separated row groups to (re)measure, the others kept from --output: {', '.join(GROUPS)}",
    )
    parser.add_argument("--teacher", default="all-mpnet-base-v2", help=f"the big teacher of the {MPNET_GROUP} row")
    parser.add_argument("--student_layers", type=int, default=2, help=f"layers kept of the {MPNET_GROUP} student")
    parser.add_argument("--steps", type=int, default=100, help="training steps of each memory run")
    parser.add_argument("--small_n", type=int, help="rows of the small memory run (default 100k; --quick 20k)")
    parser.add_argument("--large_n", type=int, help="rows of the large memory run (default 1.6M; --quick 100k)")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "perf.json"))
    parser.add_argument("--markdown", default=os.path.join(HERE, "PERF.md"), help="the Markdown table written")
    parser.add_argument("--markdown_only", action="store_true", help="rewrite --markdown from the existing JSON")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="random", help=argparse.SUPPRESS)
    return parser


def command_line(options, parser) -> str:
    """The command that reproduces the rows of this run (options left at their defaults are omitted)."""
    parts = [COMMAND]
    if tuple(options.only) != GROUPS:
        parts.append(f"--only {','.join(options.only)}")
    for name in ("teacher", "student_layers", "steps", "small_n", "large_n"):
        if getattr(options, name) != parser.get_default(name):
            parts.append(f"--{name} {getattr(options, name)}")
    return " ".join(parts)


def main(argv=None) -> None:
    parser = build_parser()
    options = parser.parse_args(argv)
    if options.markdown_only:
        with open(options.output, encoding="utf-8") as handle:
            write_markdown(json.load(handle), options.markdown)
        return
    if options.rss_child:
        with tempfile.TemporaryDirectory() as output_dir:
            args = training_args(
                LELPConfig, output_dir, 32, options.steps, "cpu", False, method="lelp", num_subclasses=4
            )
            print(json.dumps(rss_child(options.rss_child, args, options.variant)))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores, {platform.machine()})"
    precisions = [("fp32", False)] + ([("bf16", True)] if cuda else [])
    work = tempfile.mkdtemp(prefix="hf_lelp_perf_")
    record = Recorder(command_line(options, parser))
    groups = options.only
    try:
        if "speed" in groups:
            measure_speed(record, options, work, precisions, cuda, device_name)
        if MPNET_GROUP in groups:
            measure_big_teacher(record, options, work, precisions, cuda, device_name)
        if "memory" in groups:
            measure_memory(record, options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if options.quick:
        return
    old = []
    if groups != GROUPS and os.path.isfile(options.output):
        with open(options.output, encoding="utf-8") as handle:
            old = json.load(handle)
    results = merge_rows(old, record.rows, groups)
    os.makedirs(os.path.dirname(os.path.abspath(options.output)), exist_ok=True)
    with open(options.output, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    write_markdown(results, options.markdown)


TARGETS = {
    "trainer_overhead": ">= 0.95",
    "cache_vs_inference": ">= 0.90",
    "rss_growth": "<= 1.2",
    "rss_growth_block": "<= 1.2",
    "fit_seconds": "<= 180 s",
    "anon_rss_growth": "(ours) heap only",
    "rss_growth_block_large_batches": "<= 1.2",
    "anon_rss_growth_block": "(ours) heap only",
    "anon_rss_growth_block_large_batches": "(ours) heap only",
    "cached_vs_online_kd": "report (H200 anchor 1.8-3.6)",
    MPNET_GROUP: "report",
}


def write_markdown(results: list[dict], path: str) -> None:
    lines = [
        "# Performance",
        "",
        f"Produced by `{COMMAND}` (the numbers below are its output; rerun to refresh). A row's command says how "
        "it was last measured: `--only GROUP` reruns one group of rows (`speed`, `cached_vs_online_kd_mpnet`, "
        "`memory`) and keeps the others.",
        "",
        "| name | value | unit | target | device |",
        "|---|---|---|---|---|",
    ]
    for row in results:
        lines.append(
            f"| {row['name']} | {row['value']} | {row['unit']} | {TARGETS.get(row['name'], '')} | {row['device']} |"
        )
    lines += [
        "",
        "Notes on reading the table:",
        "- `cached_vs_online_kd` is LELP training from the teacher cache over online KD (the teacher run on every "
        "batch), in samples/s, with a MiniLM-L6 teacher (6 layers, 384-d) and the same MiniLM-L6 truncated to 2 "
        "layers as student: a small teacher, so the cache saves little. `cached_vs_online_kd_mpnet` is the "
        "same ratio with the big teacher, all-mpnet-base-v2 (12 layers, 768-d, 109M parameters), and the 2-layer "
        "MiniLM student: the regime of the paper, where the teacher's forward pass dominates an online-KD step. "
        "Each side uses its own tokenizer (online KD tokenises the texts for both models beforehand, so tokenising "
        "is not timed); the student, its inputs and the batch are the same on both sides. It is measured on few "
        "steps (on 2 CPU cores 12 after 3 warm-up steps, see its unit), the two sides alternated and the median of "
        "the repeats (3 on CPU) taken. `teacher_pass_samples_per_s_mpnet` is the one-off cost the cache pays "
        "instead: online KD pays roughly that forward pass again in every epoch.",
        "- `rss_growth` is the ratio of peak resident memory (VmHWM) of the training run at N = 1.6M over N = 100k, "
        "for the same number of steps. It includes file-backed pages of memory-mapped files, and the run reads its "
        "*token dataset* (Arrow, memory-mapped by `datasets`) at random rows: kernel fault-around maps neighbouring "
        "pages too, so `file_rss_*` grows with the file size for a fixed number of steps (and so does the cost of "
        "opening the file, below). hf-lelp's own cache is read with `pread` and does not contribute. Anonymous "
        "memory (`anon_rss_growth`, the heap the run needs at its end) is flat. File-backed pages are page cache "
        "that the kernel reclaims under pressure.",
        f"- `rss_growth_block` (and the other `*_block` rows) is the same run reading the token dataset through the "
        f"block-shuffling sampler of `benchmarks/perf_memory.py` instead of Trainer's random sampler: blocks of "
        f"{BLOCK_SIZE} consecutive rows in a seeded random order per epoch, the rows of {BLOCKS_PER_WINDOW} blocks "
        f"shuffled together (each index exactly once per epoch). Each step then touches a few contiguous regions of "
        f"the file, so the pages it maps grow with the rows read, not with N; it also never holds the epoch's "
        f"permutation as a Python list (the random sampler does, about 36 bytes a row of heap at its peak). "
        f"Opening the token file is a second cost that grows with N and that no sampler avoids: `save_to_disk` "
        f"writes record batches of at most 1,000 rows and opening the file reads every batch's header "
        f"(`file_rss_open_large*`). `rss_growth_block_large_batches` reads the same rows rewritten in "
        f"{LARGE_BATCH_ROWS}-row record batches (`Dataset.map(..., batched=True, batch_size=B, "
        f"writer_batch_size=B)` writes B-row batches to its cache file; `save_to_disk` cuts them back to "
        f"1,000) with the block sampler. Limits: over a whole epoch any sampler maps "
        f"the whole file (page cache the kernel can reclaim), and a batch draws from {BLOCKS_PER_WINDOW} blocks "
        f"rather than the whole dataset, which matters only if the file is ordered (e.g. sorted by label): shuffle "
        f"such a file once on disk first. The sampler is a benchmark helper, not part of hf-lelp: "
        f"`Trainer._get_train_sampler` is the hook (see `BlockSampledLELPTrainer`).",
        "- `trainer_overhead` is a median over interleaved repeats; on a shared 2-core CPU single repeats vary by "
        "about ±5%, so values slightly above 1 are noise, not a speed-up.",
    ]
    if not any(row["device"].startswith("cuda") for row in results):
        lines += ["", "No GPU was available to this run: bf16 rows and GPU throughput appear only when one is."]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
