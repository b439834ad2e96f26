"""Find a classifier's output layer and capture its input: the embedding h with logits = W h + b.

Works for any `*ForSequenceClassification` whose last operation is an `nn.Linear` with `num_labels` outputs
(BERT/DistilBERT `classifier`, RoBERTa/MPNet/DeBERTa `classifier.out_proj`, GPT-style `score`, ...).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn


def find_output_layer(model: nn.Module, num_labels: int, module_name: str | None = None) -> tuple[str, nn.Linear]:
    """Return (name, layer) of the last `nn.Linear` producing `num_labels` outputs, or the named module."""
    modules = dict(model.named_modules())
    if module_name:
        if module_name not in modules or not isinstance(modules[module_name], nn.Linear):
            raise ValueError(f"--teacher_head_module '{module_name}' is not an nn.Linear of the teacher.")
        return module_name, modules[module_name]
    candidates = [
        (name, module)
        for name, module in modules.items()
        if isinstance(module, nn.Linear) and module.out_features == num_labels and "lelp" not in name
    ]
    if not candidates:
        raise ValueError(
            f"No nn.Linear with {num_labels} outputs found in {type(model).__name__}: pass --teacher_head_module "
            "with the name of the output layer."
        )
    return candidates[-1]


@contextmanager
def capture_layer_input(layer: nn.Module):
    """Context manager yielding a dict whose 'input' is the latest input tensor of `layer`."""
    store: dict[str, torch.Tensor] = {}

    def hook(_module, args):
        store["input"] = args[0]

    handle = layer.register_forward_pre_hook(hook)
    try:
        yield store
    finally:
        handle.remove()
