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
import logging
import os
import re
from contextlib import contextmanager

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from hf_lelp.base.io_utils import write_atomic
from hf_lelp.cache.heads import find_output_layer

logger = logging.getLogger(__name__)

SUBCLASS_HEAD = "lelp_subclass_head"
SUBCLASS_HEAD_FILE = "lelp_subclass_head.safetensors"


def load_student(
    name_or_path: str, label_names: list[str], num_layers: int | None = None, **config_overrides
) -> PreTrainedModel:
    """A C-class classifier from any checkpoint; `num_layers` keeps only its first k transformer layers.

    transformers' multi-line load report is replaced by one line each: INFO for the layers dropped on purpose,
    WARNING for any other unexpected or missing (newly initialised) weights, e.g. the new classifier."""
    config = AutoConfig.from_pretrained(
        name_or_path,
        # no num_labels: id2label sets it, and num_labels next to a checkpoint's id2label makes transformers warn
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        **config_overrides,
    )
    total = getattr(config, "num_hidden_layers", None)
    if num_layers:
        if total is None:
            raise ValueError(f"{type(config).__name__} has no num_hidden_layers: drop --student_num_layers.")
        if num_layers > total:
            raise ValueError(f"--student_num_layers {num_layers} exceeds the {total} layers of {name_or_path}.")
        config.num_hidden_layers = num_layers
    with _held_load_report():
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, config=config, output_loading_info=True
        )
    unexpected = set(info["unexpected_keys"])
    if num_layers and num_layers < total:
        dropped = _dropped_layer_keys(model, unexpected, num_layers)
        unexpected -= dropped
        kept = "layer 0" if num_layers == 1 else f"layers 0-{num_layers - 1}"
        gone = "1 layer" if total - num_layers == 1 else f"{total - num_layers} layers"
        logger.info(f"Loaded {name_or_path}: kept {kept} of {total}; dropped {gone} ({len(dropped)} tensors).")
    others = [(unexpected, "unexpected, not loaded"), (set(info["missing_keys"]), "missing, newly initialised")]
    if any(keys for keys, _ in others):
        listed = "; ".join(f"{what}: {_key_list(keys)}" for keys, what in others if keys)
        logger.warning("Loaded %s with weights %s.", name_or_path, listed)
    return model


class _HeldRecords(logging.Filter):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker, self.records = marker, []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.marker in record.getMessage():
            self.records.append(record)
            return False
        return True


@contextmanager
def _held_load_report():
    """Hold back transformers' LOAD REPORT (5.17+: one warning of `transformers.modeling_utils`); let it out when
    loading fails, since transformers' error then points at it ("look at the above report")."""
    report_logger = logging.getLogger("transformers.modeling_utils")
    held = _HeldRecords("LOAD REPORT")
    report_logger.addFilter(held)
    try:
        yield
    except BaseException:
        report_logger.removeFilter(held)
        for record in held.records:
            report_logger.handle(record)
        raise
    finally:
        report_logger.removeFilter(held)


def _dropped_layer_keys(model: nn.Module, unexpected: set[str], kept: int) -> set[str]:
    """The unexpected keys of layers >= `kept` in the model's (truncated) stack of `kept` layers, named with or
    without the base model prefix (bert.encoder.layer.4... or encoder.layer.4...)."""
    prefix = f"{model.base_model_prefix}." if model.base_model_prefix else ""
    stacks = {
        name.removeprefix(prefix)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) == kept
    }
    if not stacks:
        return set()
    layer = re.compile(rf"^(?:{re.escape(prefix)})?(?:{'|'.join(map(re.escape, stacks))})\.(\d+)\.")
    return {key for key in unexpected if (match := layer.match(key)) and int(match.group(1)) >= kept}


def _key_list(keys: set[str], shown: int = 6) -> str:
    names = sorted(keys)
    return ", ".join(names[:shown]) + (f" ... ({len(names)} in all)" if len(names) > shown else "")


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


def start_classifier_at_flat_head(model: nn.Module, num_labels: int, head: nn.Linear) -> None:
    """For the paper's flat head: start the exported C-class layer at the mean of each class's subclass rows, the
    first-order approximation of p_c = Σ_s q_{c,s} (log Σ_s e^{z_s} ≈ log S + mean_s z_s when the z_s are close), so
    that the export follows the head from the first step; training then fits it (`export_fit_loss`)."""
    _, classifier = find_output_layer(model, num_labels)
    with torch.no_grad():
        classifier.weight.copy_(head.weight.view(num_labels, -1, head.in_features).mean(1))
        if classifier.bias is not None:
            classifier.bias.copy_(head.bias.view(num_labels, -1).mean(1))


FEATURE_REGRESSOR = "lelp_feature_regressor"
# Training-only modules: stripped from every export, kept as side files so that checkpoints resume exactly.
AUXILIARY_FILES = {SUBCLASS_HEAD: SUBCLASS_HEAD_FILE, FEATURE_REGRESSOR: "lelp_feature_regressor.safetensors"}


def attach_feature_regressor(model: nn.Module, num_labels: int, teacher_size: int, seed: int = 0) -> nn.Linear:
    """FitNet's learned regressor (student features -> teacher embedding size), trained with the student."""
    _, classifier = find_output_layer(model, num_labels)
    regressor = nn.Linear(classifier.in_features, teacher_size)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        regressor.weight.normal_(0.0, classifier.in_features**-0.5, generator=generator)
        regressor.bias.zero_()
    regressor.to(device=classifier.weight.device, dtype=classifier.weight.dtype)
    model.add_module(FEATURE_REGRESSOR, regressor)
    return regressor


def auxiliary_module(model: nn.Module, name: str) -> nn.Module | None:
    """The training-only module `name` (also inside DDP or PEFT wrappers), or None."""
    for module in model.modules():
        if isinstance(getattr(module, name, None), nn.Module):  # nn.Linear, or PEFT's wrapper of it
            return getattr(module, name)
    return None


def _head_owner(model: nn.Module) -> nn.Module | None:
    """The module the auxiliary layers were attached to (the transformers model, also inside DDP, PEFT or
    torch.compile)."""
    for module in uncompiled(model).modules():
        if any(isinstance(getattr(module, name, None), nn.Module) for name in AUXILIARY_FILES):
            return module
    return None


SUBCLASS_LOGITS = "lelp_subclass_logits"
STUDENT_FEATURES = "lelp_features"
EXPORT_LOGITS = "lelp_export_logits"  # the C-class layer on detached features (trained to follow the flat head)


@functools.cache
def _with_auxiliary_fields(output_type: type) -> type:
    """`output_type` plus `lelp_subclass_logits` and `lelp_features` fields. Real dataclass fields (not added
    keys) because DDP rebuilds outputs as `type(output)(**fields)`."""
    return dataclasses.make_dataclass(
        f"{output_type.__name__}WithSubclasses",
        [
            (name, torch.Tensor | None, dataclasses.field(default=None))
            for name in (SUBCLASS_LOGITS, STUDENT_FEATURES, EXPORT_LOGITS)
        ],
        bases=(output_type,),
    )


@contextmanager
def subclass_logits_of(model: nn.Module, num_labels: int, with_features: bool = False, with_export: bool = False):
    """While active, the model's output also holds `lelp_subclass_logits` [B, C·S] (when it has the head),
    with `with_features` `lelp_features`: the classifier's input (what FitNet, RKD and PKT compare), and with
    `with_export` `lelp_export_logits`: the classifier applied to that input detached from the encoder (the flat
    head's exported layer learns from these without moving the student's body).

    The head runs on the classifier's input inside the model's forward, and its logits are put into the model's
    output: DDP then sees them as part of the forward graph (no "unused parameter" confusion).
    """
    owner = _head_owner(model)
    if owner is None and (with_features or with_export):
        owner = _unwrapped(model)
    if owner is None:
        yield
        return
    head = getattr(owner, SUBCLASS_HEAD, None)
    _, classifier = find_output_layer(owner, num_labels)
    store: dict[str, torch.Tensor | None] = {}

    def on_classifier(module, args, _output):
        store[SUBCLASS_LOGITS] = head(args[0]) if head is not None else None
        store[STUDENT_FEATURES] = args[0] if with_features else None
        # functional, not module(...): calling the module inside its own forward hook would run the hook again
        detached = args[0].detach()
        store[EXPORT_LOGITS] = nn.functional.linear(detached, module.weight, module.bias) if with_export else None

    @torch.compiler.disable  # under --torch_compile: a cached, created class is no graph; rebuild the output eagerly
    def on_model(_module, _args, output):
        return _with_auxiliary_fields(type(output))(**dict(output), **store)

    handles = [classifier.register_forward_hook(on_classifier), owner.register_forward_hook(on_model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _unwrapped(model: nn.Module) -> nn.Module:
    """The transformers model inside torch.compile (`._orig_mod`), DDP (`.module`) or PEFT (`.base_model.model`)
    wrappers."""
    model = uncompiled(model)
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = uncompiled(model.module)
    if is_peft_model(model):
        model = model.base_model.model
    return model


def uncompiled(model: nn.Module) -> nn.Module:
    """The module inside torch.compile's wrapper (whose attribute look-ups and len() forward to it)."""
    while isinstance(model, torch._dynamo.eval_frame.OptimizedModule):
        model = model._orig_mod
    return model


def split_auxiliary(state_dict: dict[str, torch.Tensor]) -> tuple[dict, dict[str, dict]]:
    """(weights of the plain C-class model, {auxiliary module name: its weights}) from a full state dict."""

    def owner(key: str) -> str | None:  # the auxiliary module a key belongs to, by whole dotted name segments
        return next((name for name in AUXILIARY_FILES if f".{name}." in f".{key}"), None)

    base = {k: v for k, v in state_dict.items() if owner(k) is None}
    auxiliary = {name: {} for name in AUXILIARY_FILES}
    for key, value in state_dict.items():
        if (name := owner(key)) is not None:
            auxiliary[name][key.split(f"{name}.", 1)[1]] = value
    return base, {name: weights for name, weights in auxiliary.items() if weights}


def save_auxiliary(auxiliary: dict[str, dict[str, torch.Tensor]], output_dir: str) -> None:
    for name, weights in auxiliary.items():
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        write_atomic(os.path.join(output_dir, AUXILIARY_FILES[name]), lambda p, t=tensors: save_file(t, p))


def load_auxiliary(model: nn.Module, checkpoint_dir: str) -> list[str]:
    """Restore the training-only modules saved beside a checkpoint; returns the names restored."""
    restored = []
    for name, file_name in AUXILIARY_FILES.items():
        module, path = auxiliary_module(model, name), os.path.join(checkpoint_dir, file_name)
        if module is not None and os.path.isfile(path):
            module.load_state_dict({k: v.to(module.weight.device) for k, v in load_file(path).items()})
            restored.append(name)
    return restored


def apply_lora(
    model: nn.Module, num_labels: int, r: int, alpha: int, dropout: float, target_modules: list[str] | None = None
):
    """Wrap the student with LoRA. The classifier, a new layer, is trained in full and saved with the adapter
    (`modules_to_save`). The training-only modules (subclass head, FitNet regressor) are trained in full too but
    stay out of the adapter, so that the adapter loads onto the plain base model; they are side files, as for a
    full model."""
    from peft import LoraConfig, TaskType, get_peft_model

    classifier_name, _ = find_output_layer(model, num_labels)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=[classifier_name.split(".")[0]],
    )
    peft_model = get_peft_model(model, config)
    for name in AUXILIARY_FILES:
        module = auxiliary_module(peft_model, name)
        if module is not None:
            module.requires_grad_(True)
    return peft_model


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
