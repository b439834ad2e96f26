"""The cheap student track: a 2-layer MLP over frozen sentence embeddings, computed once.

The paper's second NLP setting distils into "a 2-layer MLP over frozen Sentence-T5 embeddings"; our offline twin
uses mean-pooled all-MiniLM-L6-v2 embeddings (the sentence-transformers pooling of that model). A student run
takes seconds on a CPU, so every method gets several seeds. It is a `PreTrainedModel`, so the same LELPTrainer
trains it, and it registers with the Auto classes so a saved student reloads with `AutoModel...from_pretrained`.
The registration is the benchmark's own model type, so it happens on importing this module (the harness), never
on importing `hf_lelp`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput

FEATURES = "features"


class EmbeddingMLPConfig(PretrainedConfig):
    model_type = "lelp_embedding_mlp"

    def __init__(self, input_size: int = 384, hidden_size: int = 256, dropout: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.dropout = dropout


class EmbeddingMLPForSequenceClassification(PreTrainedModel):
    """features [B, input_size] -> Linear -> GELU -> Dropout -> classifier [B, C]."""

    config_class = EmbeddingMLPConfig
    base_model_prefix = "mlp"

    def __init__(self, config: EmbeddingMLPConfig):
        super().__init__(config)
        self.hidden = nn.Linear(config.input_size, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None, **_) -> SequenceClassifierOutput:
        pooled = self.dropout(nn.functional.gelu(self.hidden(features)))
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits, labels, ignore_index=-1) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


AutoConfig.register(EmbeddingMLPConfig.model_type, EmbeddingMLPConfig, exist_ok=True)
AutoModelForSequenceClassification.register(EmbeddingMLPConfig, EmbeddingMLPForSequenceClassification, exist_ok=True)


def embedding_student(
    input_size: int, label_names: list[str], hidden_size: int = 256, dropout: float = 0.1, seed: int = 0
) -> EmbeddingMLPForSequenceClassification:
    torch.manual_seed(seed)
    config = EmbeddingMLPConfig(
        input_size=input_size,
        hidden_size=hidden_size,
        dropout=dropout,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
    )
    return EmbeddingMLPForSequenceClassification(config)


@torch.no_grad()
def sentence_embeddings(
    model_path: str, texts: list[str], max_length: int = 128, batch_size: int = 64, num_layers: int | None = None
) -> np.ndarray:
    """Mean-pooled (attention-masked) last hidden states of a frozen encoder (its first `num_layers` layers when
    given), float32 [N, hidden]."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    config = AutoConfig.from_pretrained(model_path, **({"num_hidden_layers": num_layers} if num_layers else {}))
    model = AutoModel.from_pretrained(model_path, config=config).eval()
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        encoded = tokenizer(batch, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        hidden = model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        chunks.append(((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)).float().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size), dtype=np.float32)
