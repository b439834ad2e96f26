"""Measure the export, not the trainer: reload the saved student the way its users will and score that.

A plain student is reloaded with `pipeline("text-classification")`; a LoRA adapter through PEFT's own loader
(`AutoPeftModelForSequenceClassification`) onto its base, with the base overrides the card prints (truncation,
label names). The reported metrics are the reloaded model's; the trainer's own (e.g. under bf16 autocast) are kept
beside them with the agreement between the two.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoTokenizer, EvalPrediction, pipeline


def base_overrides(model_config, num_layers: int | None) -> dict:
    """What the base checkpoint needs to become the trained student's base: its label names and truncation."""
    overrides = {
        "num_labels": model_config.num_labels,
        "id2label": {int(k): v for k, v in model_config.id2label.items()},
        "label2id": dict(model_config.label2id),
    }
    if num_layers:
        overrides["num_hidden_layers"] = num_layers
    return overrides


def read_as_trained(tokenizer, max_length: int):
    """Make the saved tokenizer truncate where training did: its `model_max_length` (in tokenizer_config.json) is
    the limit `truncation=True` applies, so `pipeline(...)(texts, truncation=True)` reads what the student learned
    from instead of up to the checkpoint's own limit (512 for BERT-like models)."""
    tokenizer.model_max_length = max_length
    return tokenizer


def _plain_predictions(folder: str, texts: list[str], batch_size: int) -> np.ndarray:
    classifier = pipeline("text-classification", model=folder, device=-1)
    label2id = classifier.model.config.label2id
    return np.array([label2id[a["label"]] for a in classifier(texts, batch_size=batch_size, truncation=True)])


@torch.no_grad()
def _adapter_predictions(folder: str, texts: list[str], batch_size: int, overrides: dict, max_length: int):
    from peft import AutoPeftModelForSequenceClassification

    model = AutoPeftModelForSequenceClassification.from_pretrained(folder, **overrides).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    predictions = []
    for start in range(0, len(texts), batch_size):
        texts_batch = texts[start : start + batch_size]
        batch = tokenizer(texts_batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        predictions.append(model(**batch).logits.argmax(-1).numpy())
    return np.concatenate(predictions) if predictions else np.zeros(0, dtype=np.int64)


def measure_export(
    folder: str,
    texts: list[str],
    labels: np.ndarray,
    trainer_predictions: np.ndarray,
    compute_metrics,
    split: str,
    *,
    num_labels: int,
    batch_size: int,
    adapter_overrides: dict | None = None,
    max_length: int = 512,
) -> dict:
    """{split}_<metric> of the reloaded export, export_agreement with the trainer, and how it was reloaded."""
    if adapter_overrides is None:
        exported, how = _plain_predictions(folder, texts, batch_size), "pipeline('text-classification')"
    else:
        exported = _adapter_predictions(folder, texts, batch_size, adapter_overrides, max_length)
        how = "peft.AutoPeftModelForSequenceClassification"
    one_hot = np.eye(num_labels)[exported]  # compute_metrics takes logits; their argmax gives `exported` back
    metrics = compute_metrics(EvalPrediction(predictions=one_hot, label_ids=np.asarray(labels)))
    results = {f"{split}_{name}": value for name, value in metrics.items()}
    results.update(
        {
            "export_agreement": float((exported == trainer_predictions).mean()) if len(texts) else float("nan"),
            "export_examples": len(texts),
            "export_reloaded_with": how,
        }
    )
    return results
