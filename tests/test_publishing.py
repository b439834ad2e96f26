"""Publishing: model card, push_to_hub against a local stand-in for the Hub API, PEFT students, Trainer flags."""

import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub.hf_api
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from huggingface_hub import CommitInfo, HfApi, ModelCardData, RepoUrl
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from conftest import ROOT, cache_trainer, cpu_config, distil, make_split, make_tokenizer, tiny_bert, tiny_teacher_cache
from hf_lelp import attach_subclass_head
from hf_lelp.methods.modeling import (
    SUBCLASS_HEAD,
    SUBCLASS_HEAD_FILE,
    SUBCLASS_LOGITS,
    apply_lora,
    load_auxiliary,
    subclass_logits_of,
)

sys.path.insert(0, os.path.join(ROOT, "recipes"))
import distill  # noqa: E402

pytestmark = pytest.mark.slow


class StandInHub:
    """Records what the real push code path (Trainer → huggingface_hub.HfApi) uploads, into a local folder."""

    def __init__(self, root: Path):
        self.root, self.commits, self.repos, self.validated = root, [], [], []
        self.uploads: list[tuple[str, bytes]] = []  # every file of every commit, as uploaded

    def create_repo(self, api, repo_id, *args, **kwargs):
        self.repos.append({"repo_id": repo_id, "private": kwargs.get("private")})
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def validate_yaml(self, api, content, **kwargs):
        """The Hub checks a README's metadata before upload; here: it must parse as card metadata."""
        metadata = yaml.safe_load(content.split("---")[1])
        ModelCardData(**metadata)  # raises on malformed metadata
        self.validated.append(metadata)

    def create_commit(self, api, repo_id, operations, *, commit_message, **kwargs):
        paths = []
        for operation in operations:
            if type(operation).__name__ != "CommitOperationAdd":
                continue
            target = self.root / repo_id / operation.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            source = operation.path_or_fileobj
            content = Path(source).read_bytes() if isinstance(source, (str, Path)) else source.read()
            target.write_bytes(content)
            paths.append(operation.path_in_repo)
            self.uploads.append((operation.path_in_repo, content))
        self.commits.append({"repo_id": repo_id, "message": commit_message, "paths": sorted(paths)})
        oid = f"{len(self.commits):040x}"
        return CommitInfo(
            commit_url=f"https://huggingface.co/{repo_id}/commit/{oid}",
            commit_message=commit_message,
            commit_description="",
            oid=oid,
        )


@pytest.fixture
def hub(tmp_path, monkeypatch):
    stand_in = StandInHub(tmp_path / "hub")
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *a, **k: stand_in.create_repo(api, *a, **k))
    monkeypatch.setattr(HfApi, "create_commit", lambda api, *a, **k: stand_in.create_commit(api, *a, **k))
    # With hf_xet installed, upload_folder streams through its xet pipeline, which talks HTTP itself; the stand-in
    # sits at create_commit, so the test takes huggingface_hub's single-commit path.
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    monkeypatch.setattr(HfApi, "_validate_yaml", lambda api, *a, **k: stand_in.validate_yaml(api, *a, **k))
    return stand_in


@pytest.mark.publish
def test_push_to_hub_uploads_a_plain_student_with_card_and_side_files(project, hub, tmp_path):
    out = tmp_path / "pushed_run"
    results = distil(
        project,
        out,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/tiny-lelp",
        "--hub_strategy",
        "checkpoint",
        "--hub_token",
        "x",
        "--hub_private_repo",
        "true",
        "--save_strategy",
        "epoch",
        "--num_train_epochs",
        "2",
        "--baseline_results",
        str(project / "ce_results.json"),
    )
    assert hub.repos[0] == {"repo_id": "me/tiny-lelp", "private": True}
    assert hub.validated and all("lelp" in metadata["tags"] for metadata in hub.validated)
    pushed = tmp_path / "hub" / "me/tiny-lelp"
    # A checkpoint push carried the card and the LELP side files, not only the weights.
    checkpoint_commits = [c for c in hub.commits if c["message"].startswith("Training in progress")]
    assert checkpoint_commits and "README.md" in checkpoint_commits[0]["paths"]
    assert "lelp_subclass_head.safetensors" in checkpoint_commits[0]["paths"]
    final = hub.commits[-1]
    assert final["message"] == "hf-lelp: lelp student"
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "README.md",
        "lelp_config.json",
        "lelp_subclass_head.safetensors",
        "training_args.json",
    ):
        assert name in final["paths"], name
    assert not [p for p in final["paths"] if p.endswith((".bin", ".pt", ".pth", ".pkl"))], final["paths"]
    card = (pushed / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "student_init"  # a local folder is published by its basename, never its path
    assert {"lelp", "distillation", "text-classification"} <= set(front["tags"])
    assert "model-index" not in front  # local csv files: no Hub dataset id for a model-index (issue 19 item 10)
    assert f"| **this student (lelp)** | {results['test_accuracy']:.4f} |" in card
    assert "S = 2" in card and "arXiv 2409.20449" in card
    assert "| same student, ce | 0.5000 | 0.4000 |" in card  # the baseline passed with --baseline_results
    # A fresh process that cannot import hf_lelp loads what was uploaded and reproduces the reported accuracy.
    script = (
        "import sys, json; sys.modules['hf_lelp'] = None\n"
        "from transformers import pipeline\n"
        f"clf = pipeline('text-classification', model={str(pushed)!r}, device=-1)\n"
        f"import pandas as pd; test = pd.read_csv({str(project / 'test.csv')!r})\n"
        "print(json.dumps([a['label'] for a in clf(list(test['review']))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    labels = json.loads(done.stdout.strip().splitlines()[-1])
    truth = pd.read_csv(project / "test.csv")["stars"].tolist()
    assert np.mean([a == b for a, b in zip(labels, truth)]) == pytest.approx(results["test_accuracy"], abs=1e-9)


def test_card_rendered_at_every_checkpoint_save(project, tmp_path):
    out = tmp_path / "cards"
    distil(
        project,
        out,
        "--save_strategy",
        "epoch",
        "--eval_strategy",
        "epoch",
        "--validation_from_train",
        "20",
        "--cache_dir",  # carving validation changes the train split, so its cache
        str(tmp_path / "cache"),
        "--num_train_epochs",
        "2",
    )
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 2
    first = (checkpoints[0] / "README.md").read_text()
    assert "training in progress" in first and "lelp" in first
    assert (checkpoints[0] / "training_args.bin").is_file()  # checkpoints keep the Trainer's own files
    assert not (out / "training_args.bin").exists() and (out / "training_args.json").is_file()


def test_trainer_flags_best_model_accumulation_bf16_tensorboard(project, tmp_path):
    out = tmp_path / "flags"
    results = distil(
        project,
        out,
        "--num_train_epochs",
        "3",
        "--eval_strategy",
        "epoch",
        "--save_strategy",
        "epoch",
        "--load_best_model_at_end",
        "true",
        "--metric_for_best_model",
        "accuracy",
        "--validation_from_train",
        "30",
        "--cache_dir",
        str(tmp_path / "cache"),
        "--gradient_accumulation_steps",
        "2",
        "--bf16",
        "true",
        "--report_to",
        "tensorboard",
        "--logging_steps",
        "1",
        "--save_total_limit",
        "2",
    )
    state = json.loads(sorted(out.glob("checkpoint-*"))[-1].joinpath("trainer_state.json").read_text())
    assert state["best_metric"] is not None and state["best_model_checkpoint"]
    best_accuracy = max(log["eval_accuracy"] for log in state["log_history"] if "eval_accuracy" in log)
    assert state["best_metric"] == pytest.approx(best_accuracy)
    # The best checkpoint was chosen on validation (never on test), and it is the model exported and reported.
    assert results["selection_split"] == "validation" and results["validation_accuracy"] == pytest.approx(
        best_accuracy
    )
    card = (out / "README.md").read_text()
    assert (
        "`validation` (30 examples): model selection: evaluated every epoch; best checkpoint chosen by accuracy"
        in card
    )
    assert "`test` (40 examples): reported once, after training; never used for any choice" in card
    assert results["test_trainer_accuracy"] is not None and results["export_agreement"] is not None
    assert results["export_reloaded_with"] == "pipeline('text-classification')"
    assert list(out.rglob("events.out.tfevents.*")), "no tensorboard event file"
    assert json.loads((out / "training_args.json").read_text())["gradient_accumulation_steps"] == 2


def lora_student(seed=2):
    model = tiny_bert(2, hidden=32, seed=seed)
    attach_subclass_head(model, 2, 3, seed=seed)
    return apply_lora(model, 2, r=4, alpha=8, dropout=0.0, target_modules=["query", "value"])


def test_peft_adapter_keeps_the_heads_and_reloads_to_identical_logits(tmp_path):
    tokenizer, split = make_tokenizer(), make_split(64)
    cache = tiny_teacher_cache(tmp_path / "cache", tokenizer, split, ["a", "b"], max_length=24)
    model = lora_student()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable < 0.2 * sum(p.numel() for p in model.parameters())
    args = cpu_config(
        tmp_path / "out", num_train_epochs=2, learning_rate=5e-3, num_subclasses=3, per_device_train_batch_size=16
    )
    trainer = cache_trainer(model, args, cache, tokenizer, split, 24)
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    saved = os.listdir(tmp_path / "adapter")
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    assert SUBCLASS_HEAD_FILE in saved  # a training-only module: a side file, not part of the adapter
    # The same frozen base (in real use: the same pretrained checkpoint), then the adapter on top.
    base = tiny_bert(2, hidden=32, seed=2)
    attach_subclass_head(base, 2, 3, seed=2)
    batch = tokenizer(list(split["text"][:8]), padding=True, return_tensors="pt")
    model.eval(), base.eval()
    with torch.no_grad():
        untrained = base(**batch).logits
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    assert load_auxiliary(reloaded, str(tmp_path / "adapter")) == [SUBCLASS_HEAD]
    with torch.no_grad(), subclass_logits_of(model, 2):
        expected = model(**batch)
    with torch.no_grad(), subclass_logits_of(reloaded, 2):
        got = reloaded(**batch)
    assert not torch.allclose(untrained, expected.logits, atol=1e-4)  # training changed the adapter and heads
    torch.testing.assert_close(got.logits, expected.logits)
    torch.testing.assert_close(got[SUBCLASS_LOGITS], expected[SUBCLASS_LOGITS])


def test_peft_recipe_with_merge_exports_a_plain_model(project, tmp_path):
    out = tmp_path / "lora"
    results = distil(
        project,
        out,
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_target_modules",
        "query",
        "value",
        "--merge_lora",
        "true",
    )
    assert results["trainable_fraction"] < 0.5 and results["export_agreement"] == 1.0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert "LoRA" in (out / "README.md").read_text()


SECRET = "hf_leakcanary0123456789abcdef"


@pytest.mark.publish
@pytest.mark.parametrize("strategy", ["end", "every_save", "checkpoint", "all_checkpoints"])
def test_no_push_holds_the_token_a_pickle_a_cache_file_or_a_local_path(project, hub, tmp_path, strategy):
    """Through the real push path (Trainer -> HfApi.upload_folder -> create_commit) with every hub_strategy: a
    cache inside output_dir, and a cache at the default place, never travel; no byte of any commit is the token."""
    out = tmp_path / "run"
    inside = out / "teacher_cache"  # the worst case: a user puts the cache inside output_dir
    distil(
        project,
        out,
        "--cache_dir",
        str(inside),
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/leak-check",
        "--hub_strategy",
        strategy,
        "--hub_token",
        SECRET,
        "--save_strategy",
        "epoch",
        "--num_train_epochs",
        "2",
    )
    assert (inside / "hidden.npy").is_file() and hub.uploads
    resumable = strategy in ("checkpoint", "all_checkpoints")
    local = [str(tmp_path).encode(), str(project).encode(), ROOT.encode()]
    for path, content in hub.uploads:
        assert SECRET.encode() not in content, path
        name = os.path.basename(path)
        assert not name.endswith(".npy") and name not in ("head.safetensors", "meta.json", "training_args.bin"), path
        in_checkpoint = path.startswith(("last-checkpoint/", "checkpoint-"))
        if not (resumable and in_checkpoint):
            assert not name.endswith((".bin", ".pt", ".pth", ".pkl")) and not content.startswith(b"PK\x03\x04"), path
        if name.endswith((".json", ".md", ".txt")):
            assert not any(p in content for p in local), (path, content[:400])
    published = {path for path, _ in hub.uploads}
    if resumable:  # resuming elsewhere needs the Trainer's state, with the arguments as JSON only
        folder = "last-checkpoint" if strategy == "checkpoint" else "checkpoint-"
        assert any(p.startswith(folder) and p.endswith("optimizer.pt") for p in published)
        assert any(p.startswith(folder) and p.endswith("training_args.json") for p in published)
    if strategy != "end":
        assert [c for c in hub.commits if c["message"].startswith("Training in progress")]
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json"} <= published


@pytest.mark.publish
def test_the_default_cache_is_outside_output_dir(project, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_LELP_CACHE", str(tmp_path / "caches"))
    config = yaml.safe_load((project / "distill.yaml").read_text())
    config.pop("cache_dir")
    (tmp_path / "no_cache_dir.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    distill.main([str(tmp_path / "no_cache_dir.yaml"), "--output_dir", str(out)])
    assert not list(out.rglob("*.npy")) and not list(out.rglob("meta.json"))
    assert list((tmp_path / "caches" / "teacher_caches").glob("*/hidden.npy"))


@pytest.mark.publish
def test_scan_refuses_a_token_a_pickle_a_cache_file_and_a_local_path(tmp_path):
    from hf_lelp.hub.publish import UnsafePushError, scan

    cases = {
        "config.json": b'{"note": "hf_leakcanary0123456789abcdef"}',
        "rng_state.pth": b"\x80\x04K\x01.",
        "hidden.npy": b"\x93NUMPY",
        "README.md": f"base_model: {tmp_path}/student".encode(),
    }
    for name, content in cases.items():
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_bytes(content)
        with pytest.raises(UnsafePushError, match=name):
            scan(str(folder), [SECRET], [str(tmp_path)])
    scan(str(tmp_path / "rng_state_pth"), [SECRET], [str(tmp_path)], allow_pickles=True)  # checkpoint state
