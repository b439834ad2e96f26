"""benchmarks/perf.py's options and row bookkeeping, and the block-shuffling sampler of benchmarks/perf_memory.py.
No measurement runs here: the measuring functions are replaced by fakes where main() is exercised."""

import argparse
import json
from types import SimpleNamespace

import datasets
import pytest
import torch
from transformers import DataCollatorWithPadding

from benchmarks import perf
from benchmarks.perf_memory import (
    VARIANTS,
    BlockSampledLELPTrainer,
    BlockShuffleSampler,
    open_tokens,
    write_large_batch_tokens,
    write_token_rows,
)
from conftest import make_split, make_tokenizer, tiny_bert
from hf_lelp import LELPConfig, tokenize_split


def row(name, value=1.0):
    return {"name": name, "value": value, "unit": "ratio", "device": "cpu", "command": "old"}


# --- options and row selection -------------------------------------------------------------------------------


def test_only_defaults_to_every_group_and_takes_a_comma_separated_selection():
    parser = perf.build_parser()
    assert parser.parse_args([]).only == perf.GROUPS == ("speed", "cached_vs_online_kd_mpnet", "memory")
    assert parser.parse_args(["--only", "memory"]).only == ("memory",)
    assert parser.parse_args(["--only", "cached_vs_online_kd_mpnet"]).only == ("cached_vs_online_kd_mpnet",)
    # canonical order, duplicates and blanks ignored
    assert parser.parse_args(["--only", "memory, speed,memory,"]).only == ("speed", "memory")


@pytest.mark.parametrize("text", ["bogus", "memory,rss", "", ","])
def test_an_unknown_group_is_refused_naming_the_known_ones(text, capsys):
    with pytest.raises(argparse.ArgumentTypeError, match="speed, cached_vs_online_kd_mpnet, memory"):
        perf.parse_groups(text)
    with pytest.raises(SystemExit):
        perf.build_parser().parse_args(["--only", text])
    assert "unknown row group" in capsys.readouterr().err


def test_big_teacher_options():
    options = perf.build_parser().parse_args(["--teacher", "all-MiniLM-L6-v2", "--student_layers", "3"])
    assert (options.teacher, options.student_layers) == ("all-MiniLM-L6-v2", 3)
    defaults = perf.build_parser().parse_args([])
    assert (defaults.teacher, defaults.student_layers) == ("all-mpnet-base-v2", 2)


def test_rows_belong_to_the_group_that_measures_them():
    assert perf.row_group("cached_vs_online_kd") == "speed"
    assert perf.row_group("cached_vs_online_kd_mpnet") == "cached_vs_online_kd_mpnet"
    assert perf.row_group("lelp_train_samples_per_s") == "speed"
    assert perf.row_group("lelp_train_samples_per_s_mpnet") == "cached_vs_online_kd_mpnet"
    for name in ("rss_growth", "rss_growth_block_large_batches", "file_rss_open_large_block_mib", "fit_seconds"):
        assert perf.row_group(name) == "memory"
    assert perf.row_group("something_else") is None
    assert all(perf.row_group(name) is not None for name in perf.TARGETS)


def test_merge_replaces_only_the_rerun_groups_and_keeps_the_canonical_order():
    old = [row("trainer_overhead"), row("rss_growth", 1.4), row("file_rss_small_mib"), row("custom_row")]
    new = [row("rss_growth", 1.1), row("rss_growth_block", 1.0)]
    merged = perf.merge_rows(old, new, ("memory",))
    assert [r["name"] for r in merged] == ["trainer_overhead", "rss_growth", "rss_growth_block", "custom_row"]
    assert merged[1]["value"] == 1.1  # replaced; file_rss_small_mib, not produced by the rerun, is gone
    mpnet = [row("cached_vs_online_kd_mpnet", 5.0)]
    merged = perf.merge_rows(old, mpnet, ("cached_vs_online_kd_mpnet",))
    assert [r["name"] for r in merged] == [
        "trainer_overhead",
        "cached_vs_online_kd_mpnet",
        "rss_growth",
        "file_rss_small_mib",
        "custom_row",
    ]
    assert perf.merge_rows(old, new, perf.GROUPS) == new + [row("custom_row")]


def test_the_command_recorded_reproduces_the_selection():
    parser = perf.build_parser()
    assert perf.command_line(parser.parse_args([]), parser) == "python benchmarks/perf.py"
    options = parser.parse_args(["--only", "memory", "--steps", "50", "--output", "/tmp/x.json"])
    assert perf.command_line(options, parser) == "python benchmarks/perf.py --only memory --steps 50"
    options = parser.parse_args(["--only", "cached_vs_online_kd_mpnet", "--student_layers", "4"])
    assert perf.command_line(options, parser) == (
        "python benchmarks/perf.py --only cached_vs_online_kd_mpnet --student_layers 4"
    )


def fake_memory_figures(peak):
    return {
        variant: {"peak_rss_mib": peak, "rss_anon_mib": 300.0, "rss_file_mib": peak - 300, "token_open_file_mib": 2.0}
        for variant in VARIANTS
    }


def test_memory_rows_cover_every_variant(monkeypatch):
    sizes = []

    def fake_measure_rss(folder, n, d, child_command):
        sizes.append(n)
        assert child_command[-1] == "--rss-child" and "--steps" in child_command
        return fake_memory_figures(400.0 if len(sizes) == 1 else 460.0), 3.0

    monkeypatch.setattr(perf, "measure_rss", fake_measure_rss)
    monkeypatch.setattr(perf.shutil, "rmtree", lambda *a, **k: None)
    record = perf.Recorder("cmd")
    options = perf.build_parser().parse_args(["--small_n", "10", "--large_n", "20"])
    perf.measure_memory(record, options, "/nonexistent")
    values = {r["name"]: r["value"] for r in record.rows}
    assert sizes == [10, 20]
    for suffix in ("", "_block", "_block_large_batches"):
        assert values[f"rss_growth{suffix}"] == pytest.approx(460 / 400, abs=1e-4)
        assert f"file_rss_open_large{suffix}_mib" in values
    assert "block sampler" in next(r["unit"] for r in record.rows if r["name"] == "rss_growth_block")
    assert all(perf.row_group(r["name"]) == "memory" for r in record.rows)
    assert all(r["command"] == "cmd" for r in record.rows)


def test_main_with_only_memory_keeps_the_other_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    output, markdown = tmp_path / "perf.json", tmp_path / "PERF.md"
    output.write_text(json.dumps([row("trainer_overhead", 1.01), row("cached_vs_online_kd", 1.9), row("rss_growth")]))
    called = []

    def fake(group, names):
        def measure(record, *args):
            called.append(group)
            for name in names:
                record(name, 1.05, "ratio", "cpu")

        return measure

    monkeypatch.setattr(perf, "measure_speed", fake("speed", ["trainer_overhead"]))
    monkeypatch.setattr(perf, "measure_big_teacher", fake("mpnet", ["cached_vs_online_kd_mpnet"]))
    monkeypatch.setattr(perf, "measure_memory", fake("memory", ["rss_growth", "rss_growth_block"]))
    perf.main(["--only", "memory", "--output", str(output), "--markdown", str(markdown)])
    assert called == ["memory"]
    rows = json.loads(output.read_text())
    assert [r["name"] for r in rows] == ["trainer_overhead", "cached_vs_online_kd", "rss_growth", "rss_growth_block"]
    assert rows[0]["command"] == "old" and rows[2]["command"] == "python benchmarks/perf.py --only memory"
    text = markdown.read_text()
    assert "| rss_growth_block | 1.05 | ratio | <= 1.2 | cpu |" in text
    assert "`cached_vs_online_kd_mpnet` is the same ratio with the big teacher" in text

    perf.main(["--only", "cached_vs_online_kd_mpnet", "--output", str(output), "--markdown", str(markdown)])
    assert called == ["memory", "mpnet"]
    names = [r["name"] for r in json.loads(output.read_text())]
    assert names == [
        "trainer_overhead",
        "cached_vs_online_kd",
        "cached_vs_online_kd_mpnet",
        "rss_growth",
        "rss_growth_block",
    ]


# --- online KD with a teacher that has its own tokenizer ---------------------------------------------------------


def test_pair_collator_pads_student_and_teacher_tokens_separately():
    tokenizer = make_tokenizer()
    features = [
        {"input_ids": [2, 5, 3], "attention_mask": [1, 1, 1], "labels": 0, "teacher_input_ids": [2, 6, 7, 8, 3],
         "teacher_attention_mask": [1] * 5},
        {"input_ids": [2, 3], "attention_mask": [1, 1], "labels": 1, "teacher_input_ids": [2, 3],
         "teacher_attention_mask": [1, 1]},
    ]  # fmt: skip
    batch = perf.PairCollator(tokenizer, tokenizer)(features)
    assert batch["input_ids"].shape == (2, 3) and batch["teacher_input_ids"].shape == (2, 5)
    assert batch["teacher_attention_mask"].tolist() == [[1] * 5, [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [0, 1]


def test_online_kd_feeds_the_teacher_its_own_tokens():
    seen = {}

    class Teacher(torch.nn.Module):
        def forward(self, **inputs):
            seen.update(inputs)
            return SimpleNamespace(logits=torch.zeros(2, 2))

    trainer = SimpleNamespace(teacher=Teacher(), temperature=1.0)
    student = tiny_bert()
    inputs = {
        "input_ids": torch.tensor([[2, 5, 3], [2, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
        "labels": torch.tensor([0, 1]),
        "teacher_input_ids": torch.tensor([[9, 9], [9, 9]]),
        "teacher_attention_mask": torch.tensor([[1, 1], [1, 0]]),
    }
    loss = perf.OnlineKDTrainer.compute_loss(trainer, student, inputs)
    assert set(seen) == {"input_ids", "attention_mask"} and seen["input_ids"].tolist() == [[9, 9], [9, 9]]
    assert loss.ndim == 0
    seen.clear()
    perf.OnlineKDTrainer.compute_loss(trainer, student, {k: v for k, v in inputs.items() if "teacher" not in k})
    assert seen["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]  # same tokenizer: the student's inputs


# --- the block-shuffling sampler ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n, block, window", [(1000, 64, 4), (1000, 64, 1), (997, 100, 3), (5, 16, 8), (0, 4, 2)])
def test_each_index_exactly_once_per_epoch(n, block, window):
    sampler = BlockShuffleSampler(n, block, window, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == n
        assert sorted(order) == list(range(n))


@pytest.mark.parametrize("n, block, window", [(1000, 64, 4), (997, 100, 3), (512, 32, 1)])
def test_blocks_are_contiguous_and_read_a_window_at_a_time(n, block, window):
    sampler = BlockShuffleSampler(n, block, window, seed=7)
    order = list(sampler)
    windows = list(sampler.windows())
    assert [i for rows in windows for i in rows.tolist()] == order
    for rows in windows:
        blocks = {i // block for i in rows.tolist()}
        assert len(blocks) <= window
        # every block of the window whole: its rows are exactly one contiguous, aligned range
        assert sorted(rows.tolist()) == sorted(i for b in blocks for i in range(b * block, min((b + 1) * block, n)))
    # consecutive positions of a window-of-one sampler are runs of consecutive rows
    if window == 1:
        for start in range(0, n, block):
            chunk = order[start : start + block]
            assert max(chunk) - min(chunk) == len(chunk) - 1 and min(chunk) % block == 0
    # blocks are visited out of order (not the first ones first), and rows within a window shuffled (not sorted)
    assert {i // block for i in windows[0].tolist()} != set(range(window))
    assert any(rows.tolist() != sorted(rows.tolist()) for rows in windows)


def test_the_order_is_seeded_by_seed_and_epoch():
    def order(seed, epoch):
        sampler = BlockShuffleSampler(2000, 50, 4, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(3, 0) == order(3, 0)
    assert order(3, 1) == order(3, 1)
    assert order(3, 0) != order(3, 1)
    assert order(3, 0) != order(4, 0)
    assert list(BlockShuffleSampler(2000, 50, 4, seed=3)) == order(3, 0)  # epoch 0 by default


@pytest.mark.parametrize(
    "kwargs", [dict(block_size=0), dict(blocks_per_window=0), dict(num_rows=-1), dict(seed=0.5), dict(seed=-1)]
)
def test_bad_sampler_settings_are_refused(kwargs):
    settings = dict(num_rows=10, block_size=4, blocks_per_window=2, seed=0) | kwargs
    with pytest.raises((ValueError, TypeError)):
        BlockShuffleSampler(**settings)


def test_the_trainer_reads_its_training_set_through_the_block_sampler(tmp_path):
    tokenizer = make_tokenizer()
    train = tokenize_split(make_split(40), tokenizer, 24)
    args = LELPConfig(
        output_dir=str(tmp_path),
        method="ce",
        per_device_train_batch_size=4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=5,
    )
    trainer = BlockSampledLELPTrainer(
        model=tiny_bert(),
        args=args,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        block_size=8,
        blocks_per_window=2,
    )
    loader = trainer.get_train_dataloader()
    for epoch in (0, 1):
        loader.set_epoch(epoch)  # what Trainer's loop does at each epoch
        seen = [i for batch in loader for i in batch["example_id"].tolist()]
        expected = BlockShuffleSampler(40, 8, 2, seed=5)
        expected.set_epoch(epoch)
        assert seen == list(expected)


def test_large_batch_token_file_holds_the_same_rows(tmp_path):
    import pyarrow as pa

    write_token_rows(str(tmp_path), 2500)
    path = write_large_batch_tokens(str(tmp_path), rows_per_batch=1024)
    saved, rewritten = open_tokens(str(tmp_path), "saved"), open_tokens(str(tmp_path), "large_batches")
    assert isinstance(rewritten, datasets.Dataset) and rewritten.features == saved.features
    assert rewritten[:] == saved[:]
    with pa.memory_map(path) as source:
        assert [batch.num_rows for batch in pa.ipc.open_stream(source)] == [1024, 1024, 452]
    with pa.memory_map(str(tmp_path / "tokens" / "data-00000-of-00001.arrow")) as source:
        assert max(batch.num_rows for batch in pa.ipc.open_stream(source)) <= 1000  # what save_to_disk writes
