"""A student trained from scratch: a small BERT-style encoder built from a config, randomly initialised, reading
the teacher's tokenizer and vocabulary. This is the student deployed where latency matters, and the regime of the
paper's ceiling study (its CIFAR-100 students were trained from scratch).

`--student_config` takes a preset name, `key=value` pairs, or a JSON file:
    tiny                                  2 layers, hidden 128, 2 heads (the BERT miniatures of Turc et al., 2019)
    layers=4,hidden=256,heads=4           any of layers, hidden, heads, intermediate (default 4·hidden), dropout
    student.json                          a transformers config (model_type defaults to "bert"; vocab_size and the
                                          label names are set from the tokenizer and the data)
"""

from __future__ import annotations

import json
import os

from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from hf_lelp.methods.modeling import split_auxiliary

# The BERT miniatures (Turc et al., "Well-Read Students Learn Better", 2019): our presets, named as theirs.
PRESETS = {
    "tiny": {"layers": 2, "hidden": 128, "heads": 2},
    "mini": {"layers": 4, "hidden": 256, "heads": 4},
    "small": {"layers": 4, "hidden": 512, "heads": 8},
    "medium": {"layers": 8, "hidden": 512, "heads": 8},
}
SHORT_KEYS = {
    "layers": "num_hidden_layers",
    "hidden": "hidden_size",
    "heads": "num_attention_heads",
    "intermediate": "intermediate_size",
    "dropout": "hidden_dropout_prob",
}
FLOAT_KEYS = {"hidden_dropout_prob", "attention_probs_dropout_prob"}


def _problem(spec: str, what: str) -> ValueError:
    return ValueError(
        f"--student_config {spec!r}: {what}. Give a preset ({', '.join(PRESETS)}), key=value pairs such as "
        f"'layers=2,hidden=128,heads=2' (keys: {', '.join(SHORT_KEYS)}), or the path of a JSON config file."
    )


def parse_student_config(spec: str) -> dict:
    """The transformers config keys a `--student_config` value asks for (model_type included)."""
    spec = spec.strip()
    if spec.endswith(".json") or os.path.isfile(spec):
        if not os.path.isfile(spec):
            raise _problem(spec, "no such file")
        try:
            with open(spec, encoding="utf-8") as handle:
                values = json.load(handle)
        except (OSError, ValueError) as error:
            raise _problem(spec, f"not a readable JSON object ({error})") from None
        if not isinstance(values, dict):
            raise _problem(spec, "the file holds no JSON object")
        values = {"model_type": "bert", **values}
        _check_heads(values, spec)
        return values
    if spec in PRESETS:
        pairs = PRESETS[spec]
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key.strip() not in SHORT_KEYS:
                raise _problem(spec, f"{part!r} is neither a preset nor a known key=value pair")
            pairs[key.strip()] = value.strip()
        if not pairs:
            raise _problem(spec, "it is empty")
    values = {"model_type": "bert"}
    for key, value in pairs.items():
        name = SHORT_KEYS[key]
        try:
            values[name] = float(value) if name in FLOAT_KEYS else int(value)
        except ValueError:
            raise _problem(spec, f"{key}={value} is not a number") from None
    if "hidden_size" in values and "intermediate_size" not in values:
        values["intermediate_size"] = 4 * values["hidden_size"]  # BERT's ratio
    if "hidden_dropout_prob" in values:
        values["attention_probs_dropout_prob"] = values["hidden_dropout_prob"]
    _check_heads(values, spec)
    return values


def _check_heads(values: dict, shown: str) -> None:
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
    if hidden and heads and hidden % heads:
        raise _problem(shown, f"hidden size {hidden} is not a multiple of the {heads} attention heads")


def student_from_config(spec: str | dict, tokenizer, label_names: list[str], max_length: int = 512) -> PreTrainedModel:
    """A randomly initialised C-class classifier of the architecture `spec` asks for, sized to `tokenizer`'s
    vocabulary and able to read `max_length` tokens, answering with `label_names`."""
    values = dict(spec) if isinstance(spec, dict) else parse_student_config(spec)
    shown = spec if isinstance(spec, str) else json.dumps(spec)
    model_type = values.pop("model_type", "bert")
    vocabulary = len(tokenizer)
    if int(values.get("vocab_size", vocabulary)) < vocabulary:
        raise _problem(shown, f"vocab_size {values['vocab_size']} is smaller than the tokenizer's {vocabulary} tokens")
    values.setdefault("vocab_size", vocabulary)
    values["max_position_embeddings"] = max(int(values.get("max_position_embeddings", 512)), max_length)
    if tokenizer.pad_token_id is not None:
        values.setdefault("pad_token_id", tokenizer.pad_token_id)
    _check_heads(values, shown)
    try:
        config = AutoConfig.for_model(
            model_type,
            id2label=dict(enumerate(label_names)),
            label2id={name: i for i, name in enumerate(label_names)},
            **values,
        )
    except ValueError as error:
        raise _problem(shown, str(error)) from None
    return AutoModelForSequenceClassification.from_config(config)


def architecture_facts(model: PreTrainedModel) -> dict:
    """What the card says of a student trained from scratch: its size, as exported (no training-only modules)."""
    config = model.config
    exported, _ = split_auxiliary(dict(model.named_parameters()))
    return {
        "model_type": config.model_type,
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "heads": getattr(config, "num_attention_heads", None),
        "parameters": sum(p.numel() for p in exported.values()),
    }
