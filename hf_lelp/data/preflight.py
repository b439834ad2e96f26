"""Checks made before any work, so that a mistake ends as one paragraph instead of a traceback deep in a library:
a dataset name that is nothing this machine can load, a --max_length beyond a model's position embeddings, a
student whose classifier has another number of classes than the data."""

from __future__ import annotations

import difflib
import os

from transformers import AutoConfig, PretrainedConfig

from hf_lelp.base.errors import UserError
from hf_lelp.base.io_utils import is_no_space
from hf_lelp.data.assets import OFFLINE_MODELS, resolve_model
from hf_lelp.data.offline_datasets import OFFLINE_DATASETS
from hf_lelp.data.split_assets import SPLIT_MODELS

# Models that number their positions after the padding index (RoBERTa's scheme): the first pad_token_id + 1
# rows of the position embeddings are never used by a token.
POSITIONS_AFTER_PADDING = (
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "mpnet",
    "longformer",
    "data2vec-text",
    "roberta-prelayernorm",
    "xmod",
    "ibert",
)


def unreachable_dataset(name: str, error: BaseException) -> UserError:
    """The error for a dataset name that datasets could only have fetched from the Hub, which it could not reach."""
    offline = sorted(OFFLINE_DATASETS)
    close = difflib.get_close_matches(name, offline, n=1)
    guess = f" Did you mean '{close[0]}'?" if close else ""
    return UserError(
        f"Dataset '{name}' is not an offline name ({', '.join(offline)}), not a path (no file or folder "
        f"{os.path.abspath(name)}), and the Hub is not reachable ({error}).{guess} Pass an offline name, a local "
        "file (--train_file FILE), or a Hub dataset id with the Hub reachable."
    )


def position_limit(config: PretrainedConfig) -> int | None:
    """The longest input (in tokens) the model's position embeddings hold, or None when it has no fixed limit."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(positions, int):
        return None
    if getattr(config, "model_type", None) in POSITIONS_AFTER_PADDING:
        positions -= (getattr(config, "pad_token_id", None) or 1) + 1
    return positions


def check_max_length(max_length: int, models: dict[str, PretrainedConfig]) -> None:
    """Refuse a --max_length longer than any of `models` ({"--student runs/s": config, ...}) can take."""
    limits = {flag: position_limit(config) for flag, config in models.items()}
    short = {flag: limit for flag, limit in limits.items() if limit is not None and limit < max_length}
    if short:
        named = ", ".join(f"{flag} takes at most {limit} tokens" for flag, limit in short.items())
        raise UserError(
            f"--max_length {max_length} is longer than a model's position embeddings ({named}): a text that long "
            f"would fail inside the model. Pass --max_length {min(short.values())} or less."
        )


def check_classifier(config: PretrainedConfig, flag: str, label_names: list[str]) -> None:
    """Refuse a checkpoint whose trained classifier has another number of outputs than the data has classes (its
    weights cannot be loaded into a classifier of the data's size)."""
    has_classifier = any(name.endswith("Classification") for name in config.architectures or [])
    if has_classifier and config.num_labels != len(label_names):
        raise UserError(
            f"{flag} is a classifier with {config.num_labels} outputs ({list(config.id2label.values())}), but the "
            f"data has {len(label_names)} classes {list(label_names)}: its classifier cannot be reused. Pass a "
            f"checkpoint with a {len(label_names)}-class classifier, or the base model it was fine-tuned from (a "
            "new classifier is then initialised)."
        )


def model_config(flag: str, name_or_path: str) -> PretrainedConfig:
    """The model's config; a name that is no folder here and that the Hub cannot serve is the user's to fix."""
    path = resolve_model(name_or_path)
    try:
        return AutoConfig.from_pretrained(path)
    except OSError as error:
        if is_no_space(error) or os.path.isdir(path):  # a full disk, or a folder that is not a model: as it is
            raise
        offline = sorted([*OFFLINE_MODELS, *SPLIT_MODELS])
        reason = " ".join(str(error).split()).rstrip(".")
        raise UserError(
            f"{flag} {name_or_path} is not a model folder here, not an offline name ({', '.join(offline)}), and "
            f"the Hub could not serve it ({reason}). Check the name, or pass the folder of a saved model."
        ) from error


def check_models(
    max_length: int, label_names: list[str], trained: dict[str, str], fixed: dict[str, str | None] | None = None
) -> None:
    """The up-front checks of a run: `trained` ({"--student": name}) get a classifier for the data's classes,
    `fixed` ({"--teacher": name}) are used as they are (their outputs are checked when they are loaded)."""
    configs = {}
    for flag, name in trained.items():
        configs[f"{flag} {name}"] = config = model_config(flag, name)
        check_classifier(config, f"{flag} {name}", label_names)
    for flag, name in (fixed or {}).items():
        if name:
            configs[f"{flag} {name}"] = model_config(flag, name)
    check_max_length(max_length, configs)
