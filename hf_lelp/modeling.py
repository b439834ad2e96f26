"""The student: any `AutoModelForSequenceClassification` plus a pseudo-subclass head, and its export.

Our student head is *factorised* (ours; the paper's student has one C·S linear layer whose class probability is
the sum of its subclass probabilities): the model keeps its own C-class classifier u, and a second linear layer v
on the same features gives S logits per class, so that q_{c,s} = softmax(u)_c · softmax(v_{c,·})_s. The loss sees
the same C·S distribution as in the paper, but dropping v leaves a *standard* C-class model: the export is exact
and loads with plain transformers (no custom code, no hf_lelp), and the pipeline answers with the C label names.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from contextlib import contextmanager

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from .heads import find_output_layer
from .io_utils import write_atomic

SUBCLASS_HEAD = "lelp_subclass_head"
SUBCLASS_HEAD_FILE = "lelp_subclass_head.safetensors"


def load_student(
    name_or_path: str, label_names: list[str], num_layers: int | None = None, **config_overrides
) -> PreTrainedModel:
    """A C-class classifier from any checkpoint; `num_layers` keeps only its first k transformer layers."""
    config = AutoConfig.from_pretrained(
        name_or_path,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        **config_overrides,
    )
    if num_layers:
        if not hasattr(config, "num_hidden_layers"):
            raise ValueError(f"{type(config).__name__} has no num_hidden_layers: drop --student_num_layers.")
        if num_layers > config.num_hidden_layers:
            raise ValueError(
                f"--student_num_layers {num_layers} exceeds the {config.num_hidden_layers} layers of {name_or_path}."
            )
        config.num_hidden_layers = num_layers
    return AutoModelForSequenceClassification.from_pretrained(name_or_path, config=config)


def attach_subclass_head(model: nn.Module, num_labels: int, num_subclasses: int, seed: int = 0) -> nn.Linear:
    """Add the pseudo-subclass layer (features -> C·S) as a submodule, so Trainer, DDP and checkpoints see it."""
    _, classifier = find_output_layer(model, num_labels)
    head = nn.Linear(classifier.in_features, num_labels * num_subclasses)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.02, generator=generator)
        head.bias.zero_()
    head.to(device=classifier.weight.device, dtype=classifier.weight.dtype)
    model.add_module(SUBCLASS_HEAD, head)
    return head


def subclass_head(model: nn.Module) -> nn.Module | None:
    owner = _head_owner(model)
    return getattr(owner, SUBCLASS_HEAD) if owner is not None else None


def _head_owner(model: nn.Module) -> nn.Module | None:
    """The module the subclass head was attached to (the transformers model, also inside DDP or PEFT wrappers)."""
    for module in model.modules():
        if isinstance(getattr(module, SUBCLASS_HEAD, None), nn.Module):  # nn.Linear, or PEFT's wrapper of it
            return module
    return None


SUBCLASS_LOGITS = "lelp_subclass_logits"


@functools.cache
def _with_subclass_field(output_type: type) -> type:
    """`output_type` plus a `lelp_subclass_logits` field. A real dataclass field (not an added key) because DDP
    rebuilds outputs as `type(output)(**fields)`."""
    return dataclasses.make_dataclass(
        f"{output_type.__name__}WithSubclasses",
        [(SUBCLASS_LOGITS, torch.Tensor | None, dataclasses.field(default=None))],
        bases=(output_type,),
    )


@contextmanager
def subclass_logits_of(model: nn.Module, num_labels: int):
    """While active, the model's output also holds `lelp_subclass_logits` [B, C·S] (when it has the head).

    The head runs on the classifier's input inside the model's forward, and its logits are put into the model's
    output: DDP then sees them as part of the forward graph (no "unused parameter" confusion).
    """
    owner = _head_owner(model)
    if owner is None:
        yield
        return
    head = getattr(owner, SUBCLASS_HEAD)
    _, classifier = find_output_layer(owner, num_labels)
    store: dict[str, torch.Tensor] = {}

    def on_classifier(_module, args, _output):
        store["logits"] = head(args[0])

    def on_model(_module, _args, output):
        return _with_subclass_field(type(output))(**dict(output), **{SUBCLASS_LOGITS: store.pop("logits")})

    handles = [classifier.register_forward_hook(on_classifier), owner.register_forward_hook(on_model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def split_subclass_head(state_dict: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """(weights of the plain C-class model, weights of the subclass head) from a full state dict."""
    base = {k: v for k, v in state_dict.items() if SUBCLASS_HEAD not in k}
    head = {k.split(SUBCLASS_HEAD + ".")[-1]: v for k, v in state_dict.items() if SUBCLASS_HEAD in k}
    return base, head


def save_subclass_head(head_state: dict[str, torch.Tensor], output_dir: str) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in head_state.items()}
    write_atomic(os.path.join(output_dir, SUBCLASS_HEAD_FILE), lambda p: save_file(tensors, p))


def load_subclass_head(model: nn.Module, checkpoint_dir: str) -> bool:
    """Restore the subclass head saved beside a checkpoint; False when the model or checkpoint has none."""
    head = subclass_head(model)
    path = os.path.join(checkpoint_dir, SUBCLASS_HEAD_FILE)
    if head is None or not os.path.isfile(path):
        return False
    head.load_state_dict({k: v.to(head.weight.device) for k, v in load_file(path).items()})
    return True


def apply_lora(
    model: nn.Module, num_labels: int, r: int, alpha: int, dropout: float, target_modules: list[str] | None = None
):
    """Wrap the student with LoRA; the classifier and the subclass head are trained in full and saved with the
    adapter (`modules_to_save`), since both are new layers."""
    from peft import LoraConfig, TaskType, get_peft_model

    classifier_name, _ = find_output_layer(model, num_labels)
    modules_to_save = [classifier_name.split(".")[0]]
    if subclass_head(model) is not None:
        modules_to_save.append(SUBCLASS_HEAD)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save,
    )
    return get_peft_model(model, config)


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def parameter_counts(model: nn.Module) -> dict[str, int | float]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable_parameters": trainable, "total_parameters": total, "trainable_fraction": trainable / total}
