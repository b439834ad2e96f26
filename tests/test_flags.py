"""TrainingArguments flags that reach our loss: honoured, or refused with a clear error."""

import pytest
import torch
import torch.nn.functional as F
from transformers import DataCollatorWithPadding

from conftest import cpu_config, make_split, make_tokenizer, tiny_bert
from hf_lelp import LELPConfig, LELPTrainer, tokenize_split
from hf_lelp.methods.losses import ce_loss


def test_ce_loss_applies_label_smoothing_and_ignores_unlabelled_rows():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [1.0, 3.0]])
    labels = torch.tensor([0, -1, 1])
    # Smoothing ε over C = 2 classes: target (1 - ε) on the label plus ε / C everywhere.
    epsilon = 0.3
    targets = torch.tensor([[1 - epsilon / 2, epsilon / 2], [epsilon / 2, 1 - epsilon / 2]])
    expected = -(targets * F.log_softmax(logits[[0, 2]], dim=-1)).sum(-1).mean()
    torch.testing.assert_close(ce_loss(logits, labels, label_smoothing=epsilon), expected)
    assert ce_loss(logits, labels, 0.3) > ce_loss(logits, labels)


def first_loss(tmp_path, **overrides) -> float:
    tokenizer = make_tokenizer()
    # One class only: over a balanced binary batch, smoothing's gain on right answers equals its loss on wrong ones.
    split = make_split(32).map(lambda row: {"label": 0})
    args = cpu_config(
        tmp_path / "out", method="ce", max_steps=1, per_device_train_batch_size=32, logging_steps=1, **overrides
    )
    model = tiny_bert(2, seed=4)
    with torch.no_grad():  # confident logits: at p = 0.5 smoothing would change nothing, hiding an ignored flag
        model.classifier.bias.copy_(torch.tensor([4.0, -4.0]))
    trainer = LELPTrainer(
        model=model,
        args=args,
        train_dataset=tokenize_split(split, tokenizer, 24),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return next(log["loss"] for log in trainer.state.log_history if "loss" in log)


def test_label_smoothing_factor_reaches_the_trainers_loss(tmp_path):
    assert first_loss(tmp_path, label_smoothing_factor=0.3) > first_loss(tmp_path) + 1e-3


@pytest.mark.bad_input
def test_label_smoothing_without_a_label_loss_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--label_smoothing_factor 0.2 smooths hard labels, but --method lelp"):
        LELPConfig(output_dir=str(tmp_path), method="lelp", label_smoothing_factor=0.2, use_cpu=True)
    LELPConfig(output_dir=str(tmp_path), method="kd", hard_label_weight=0.5, label_smoothing_factor=0.2, use_cpu=True)


def test_no_pin_memory_without_an_accelerator(tmp_path, recwarn):
    # torch warns at every dataloader when pinning is asked without an accelerator; on CPU it is a no-op anyway.
    args = LELPConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.dataloader_pin_memory is False
