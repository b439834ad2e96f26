"""Model card of an exported student, rendered from the Jinja template beside this module (`lelp_student.md.j2`)."""

from __future__ import annotations

import html
import importlib.resources
import numbers
import os
import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_lelp.base.io_utils import write_atomic
from hf_lelp.data.assets import OFFLINE_MODELS, looks_like_local_path, resolve_model
from hf_lelp.data.offline_datasets import OFFLINE_DATASET_SOURCES
from hf_lelp.data.split_assets import SPLIT_MODELS
from hf_lelp.hub.publish import public_name
from hf_lelp.methods.registry import get_method
from hf_lelp.methods.scratch_student import architecture_facts

TEMPLATE_NAME = "lelp_student.md.j2"


# Package data of hf_lelp.hub (see pyproject.toml): found through importlib.resources in a checkout and a wheel alike.
TEMPLATE = Path(str(importlib.resources.files(__package__) / TEMPLATE_NAME))

# Keys of `{split}_*` results that are not metrics of the saved model (the Trainer's timings, counts, its own scores).
NOT_METRICS = {
    *("accuracy", "macro_f1", "examples", "loss", "epoch"),
    *("runtime", "samples_per_second", "steps_per_second"),
}


def markdown_text(value) -> str:
    """A user's string (a label name) as plain text in the card's Markdown body: HTML escaped (`<script>` stays
    text, as in the explorer), the punctuation that formats inline text backslash-escaped (`$`: no math either;
    `_` unless inside a word, where it formats nothing: `very_positive` stays as typed), a line break shown as
    `\\n` (a new line starting with `---` or `#` would become a heading or a rule)."""
    text = html.escape(str(value), quote=False)
    text = re.sub(r"([\\`*\[\]|~$])", r"\\\1", text)
    text = re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text)
    return re.sub(r"\r\n|\r|\n", r"\\\\n", text)


def python_literal(value) -> str:
    """`value` as Python source for a code block of the card: repr keeps int keys ints (JSON would turn
    id2label's keys into strings, and `pipeline` then looks up id 1 in vain); a backtick and `<` are written as
    escapes, so that no label can close the Markdown fence around it or open an HTML tag."""
    return repr(value).replace("`", "\\x60").replace("<", "\\x3c")


def base_model_id(name: str) -> str:
    """Hub id of the student's initial checkpoint (offline short names map to their Hub original); a local
    folder is written as its basename, never as a path of this machine."""
    return f"sentence-transformers/{name}" if name in OFFLINE_MODELS or name in SPLIT_MODELS else public_name(name)


def dataset_facts(data_args) -> dict:
    """The data as it truly was: a Hub id only when the data came from the Hub."""
    name = data_args.source() or ""  # None when files are the data
    if name in OFFLINE_DATASET_SOURCES and not data_args.data_files():
        return {"hub_id": None, "description": f"{OFFLINE_DATASET_SOURCES[name]} (an offline copy, not a Hub dataset)"}
    files = list((data_args.data_files() or {}).values())
    if files or os.path.exists(name) or looks_like_local_path(name):
        shown = ", ".join(public_name(f) for f in files) if files else public_name(name)
        return {"hub_id": None, "description": f"local data ({shown})"}
    return {"hub_id": name, "description": f"the Hub dataset [`{name}`](https://huggingface.co/datasets/{name})"}


def static_card_context(data, data_args, model_args, teacher_eval: dict, baselines: list[dict]) -> dict:
    """What the card says that does not change during training (set once on the trainer)."""
    eval_split = data_args.eval_split
    local = [model_args.student, model_args.teacher, model_args.cache_dir, data_args.dataset]
    local += [model_args.student_config]  # a JSON file's path
    local += [resolve_model(name) for name in (model_args.student, model_args.teacher) if name]
    local += list((data_args.data_files() or {}).values()) + [data_args.transfer_data]
    facts = dataset_facts(data_args)
    # The teacher's own evaluation (beside its weights) ran on its own split: shown apart from the student's table.
    teacher_split = next((key[: -len("_accuracy")] for key in teacher_eval if key.endswith("_accuracy")), None)
    return {
        # A from-scratch student has no base checkpoint: workflow adds its architecture as `from_scratch`.
        "base_model": None if model_args.student_config else base_model_id(model_args.student),
        "student_num_layers": model_args.student_num_layers,
        "dataset": public_name(data_args.data_name()),
        "dataset_hub_id": facts["hub_id"],
        "dataset_description": facts["description"],
        "label_names": data.label_names,
        "split_sizes": {name: len(split) for name, split in data.splits.items()},
        "teacher": public_name(model_args.teacher),
        "teacher_eval": teacher_split
        and {
            "split": teacher_split,
            "accuracy": teacher_eval.get(f"{teacher_split}_accuracy"),
            "macro_f1": teacher_eval.get(f"{teacher_split}_macro_f1"),
            "dataset": public_name(teacher_eval.get("dataset")),
        },
        "eval_split": eval_split,
        "max_length": data_args.max_length,
        "baselines": baselines,
        "peft": model_args.use_peft
        and {
            "r": model_args.lora_r,
            "alpha": model_args.lora_alpha,
            "dropout": model_args.lora_dropout,
            "merged": model_args.merge_lora,
        },
        # Not rendered: this machine's paths, which the push scan refuses to find in any published file.
        "local_paths": [os.path.abspath(p) for p in local if p and os.path.exists(p)],
    }


def other_metrics(values: dict, prefix: str) -> dict[str, float]:
    """The `--extra_metrics` scores among `{prefix}_*` values (accuracy and macro-F1 have their own columns)."""
    found = {}
    for key, value in values.items():
        name = key[len(prefix) + 1 :] if key.startswith(f"{prefix}_") else None
        if name and name not in NOT_METRICS and not name.startswith("trainer_"):
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                found[name] = float(value)
    return found


def training_schedule(args, global_step: int, epoch: float | None) -> str:
    """What was trained (steps and epochs as counted by the Trainer), or what is planned before the first step."""
    if global_step and epoch is not None:
        return f"{global_step} optimizer steps ({epoch:.3g} epochs)"
    if args.max_steps and args.max_steps > 0:
        return f"{args.max_steps} optimizer steps planned (--max_steps)"
    return f"{args.num_train_epochs} epochs planned"


def trainer_card_context(model, teacher_cache=None, train_dataset=None, eval_dataset=None) -> dict:
    """The static card facts of a trainer built in Python without `card_context=` (the CLI passes its own): what
    the model, the teacher cache and the datasets say, nothing guessed. The Trainer's `eval_dataset` is the
    evaluated split, named `eval` as in its metrics."""
    config = model.config
    fingerprint = dict(teacher_cache.fingerprint) if teacher_cache is not None else {}
    named = public_name(fingerprint.get("dataset"))
    dataset = named or "the data given to LELPTrainer"
    splits = (("train", train_dataset), ("eval", eval_dataset))
    sizes = {name: len(split) for name, split in splits if hasattr(split, "__len__") and not isinstance(split, dict)}
    peft = None
    overrides = {
        "num_labels": config.num_labels,
        "id2label": {int(k): v for k, v in config.id2label.items()},
        "label2id": dict(config.label2id),
    }
    if getattr(config, "num_hidden_layers", None):
        overrides["num_hidden_layers"] = config.num_hidden_layers  # a truncated base stays truncated
    lora = getattr(model, "peft_config", {}).get("default")
    if lora is not None:
        peft = {"r": lora.r, "alpha": lora.lora_alpha, "dropout": lora.lora_dropout, "merged": False}
    base = public_name(getattr(config, "_name_or_path", None)) or None
    return {
        "base_model": base,
        # A model that came from no checkpoint (e.g. hf_lelp.student_from_config) was initialised randomly.
        "from_scratch": None if base else architecture_facts(model),
        "student_num_layers": None,
        "dataset": dataset,
        "dataset_hub_id": None,  # the trainer cannot tell where the rows came from: no Hub id is claimed
        "dataset_description": f"`{named}`, as given to `LELPTrainer` in Python" if named else f"{dataset} in Python",
        "label_names": [config.id2label[i] for i in range(config.num_labels)],
        "split_sizes": sizes,
        "teacher": public_name(fingerprint.get("teacher")),
        "teacher_eval": None,
        "eval_split": "eval" if "eval" in sizes else None,
        "max_length": fingerprint.get("max_length"),
        "baselines": [],
        "peft": peft,
        "base_overrides": overrides,
        "local_paths": [],
        "python_api": True,  # the card cannot tell which split chose what
    }


def run_card_context(
    static: dict,
    args,
    meta: dict,
    log_history: list[dict],
    global_step: int,
    results,
    citation,
    epoch: float | None = None,
    folder: str | None = None,
):
    """Static context + the run's options + the freshest metrics (final results, else the last evaluation).

    A pure function of values: the card knows nothing of the trainer, which passes what the card shows. `folder`:
    where the model is saved, when not in args.output_dir (its name is the model id of a local model)."""
    split = static["eval_split"]
    metrics = {}
    if results:
        metrics = {
            "other": other_metrics(results, split) if split else {},
            "accuracy": results.get(f"{split}_accuracy"),
            "macro_f1": results.get(f"{split}_macro_f1"),
            "export_agreement": results.get("export_agreement"),
            "export_reloaded_with": results.get("export_reloaded_with"),
            "trainer_accuracy": results.get(f"{split}_trainer_accuracy"),
            "metrics_from": f"final evaluation on `{split}`",
        }
    else:
        evals = [log for log in log_history if "eval_accuracy" in log]
        if evals:
            metrics = {
                "other": other_metrics(evals[-1], "eval"),
                "accuracy": evals[-1]["eval_accuracy"],
                "macro_f1": evals[-1].get("eval_macro_f1"),
                "metrics_from": f"evaluation at step {evals[-1].get('step')} (training in progress)",
            }
    model_id = args.hub_model_id or os.path.basename(os.path.abspath(folder or args.output_dir))
    return {
        **static,
        "model_id": model_id,
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "other_metrics": metrics.get("other", {}),
        "export_agreement": metrics.get("export_agreement"),
        "export_reloaded_with": metrics.get("export_reloaded_with"),
        "trainer_accuracy": metrics.get("trainer_accuracy"),
        "metrics_from": metrics.get("metrics_from", "no evaluation yet"),
        "global_step": global_step,
        "meta": meta,
        "training": {
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs,
            "schedule": training_schedule(args, global_step, epoch),
            "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "seed": args.seed,
            "max_length": static["max_length"],
        },
        "fingerprint": meta.get("cache_fingerprint"),
        **method_strings(meta, len(static["label_names"])),
        "citation": citation,
        **body_strings(static, model_id),
    }


def method_strings(meta: dict, num_classes: int) -> dict:
    """What the card says of the method, from its registry entry: how it trained the student, and its paper."""
    method = get_method(meta["method"])
    return {"method_description": method.describe(meta, num_classes), "method_paper": method.paper}


def body_strings(static: dict, model_id: str) -> dict:
    """The user's strings as the card body shows them: escaped Markdown text, or Python source in code blocks."""
    names = static["label_names"]
    return {
        "label_names_md": [markdown_text(name) for name in names],
        "example_label_py": python_literal(names[-1] if names else ""),
        "model_id_py": python_literal(model_id),
        "base_overrides_py": python_literal(static.get("base_overrides") or {}),
    }


def card_metadata(context: dict) -> ModelCardData:
    """YAML front matter: licence, base model, data, tags and a model-index with the evaluation results."""
    scores = [("accuracy", context["accuracy"], "accuracy (top-1)"), ("f1", context["macro_f1"], "f1 (macro)")]
    scores += [(name, value, name) for name, value in context.get("other_metrics", {}).items()]
    results = []
    # The model-index needs a dataset id (`dataset.type`): only data from the Hub has one, and an invented id
    # would point to another dataset or none. Other data keeps its metrics in the card's body.
    for metric, value, label in scores if context["dataset_hub_id"] else ():
        if value is not None:
            results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=context["dataset_hub_id"],
                    dataset_name=context["dataset"],
                    dataset_split=context["eval_split"],
                    metric_type=metric,
                    metric_value=round(float(value), 4),
                    metric_name=label,
                )
            )
    return ModelCardData(
        license="apache-2.0",
        base_model=context["base_model"],
        datasets=[context["dataset_hub_id"]] if context["dataset_hub_id"] else None,
        metrics=["accuracy", "f1"],
        pipeline_tag="text-classification",
        library_name="transformers",
        tags=["lelp", "distillation", "text-classification", "hf-lelp"],
        model_name=context["model_id"],
        eval_results=results or None,
    )


def render_model_card(context: dict, template_path: str | Path = TEMPLATE) -> ModelCard:
    return ModelCard.from_template(card_metadata(context), template_path=str(template_path), **context)


def write_model_card(output_dir: str, context: dict) -> str:
    path = os.path.join(output_dir, "README.md")
    card = render_model_card(context)
    write_atomic(path, card.save)  # never a half-written card, also for an upload reading it meanwhile
    return path
