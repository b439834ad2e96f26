"""Model card of an exported student, rendered from the Jinja template in `model_cards/`."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .assets import OFFLINE_MODELS, looks_like_local_path, resolve_model
from .io_utils import write_atomic
from .offline_datasets import OFFLINE_DATASET_SOURCES
from .publish import public_name
from .split_assets import SPLIT_MODELS

TEMPLATE_NAME = "lelp_student.md.j2"


def _template_path() -> Path:
    """The wheel ships the repository's top-level model_cards/ as package data hf_lelp/model_cards/ (see
    pyproject.toml); a checkout (plain or `pip install -e .`) has it one level above the package."""
    packaged = Path(str(importlib.resources.files(__package__) / "model_cards" / TEMPLATE_NAME))
    checkout = Path(__file__).resolve().parents[1] / "model_cards" / TEMPLATE_NAME
    return packaged if packaged.is_file() else checkout


TEMPLATE = _template_path()


def base_model_id(name: str) -> str:
    """Hub id of the student's initial checkpoint (offline short names map to their Hub original); a local
    folder is written as its basename, never as a path of this machine."""
    return f"sentence-transformers/{name}" if name in OFFLINE_MODELS or name in SPLIT_MODELS else public_name(name)


def dataset_facts(data_args) -> dict:
    """The data as it truly was: a Hub id only when the data came from the Hub."""
    name = data_args.dataset
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
    local += [resolve_model(name) for name in (model_args.student, model_args.teacher) if name]
    local += list((data_args.data_files() or {}).values()) + [data_args.transfer_data]
    facts = dataset_facts(data_args)
    # The teacher's own evaluation (beside its weights) ran on its own split: shown apart from the student's table.
    teacher_split = next((key[: -len("_accuracy")] for key in teacher_eval if key.endswith("_accuracy")), None)
    return {
        "base_model": base_model_id(model_args.student),
        "student_num_layers": model_args.student_num_layers,
        "dataset": public_name(data_args.dataset),
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


def run_card_context(static: dict, args, meta: dict, log_history: list[dict], global_step: int, results, citation):
    """Static context + the run's options + the freshest metrics (final results, else the last evaluation).

    A pure function of values: the card knows nothing of the trainer, which passes what the card shows."""
    split = static["eval_split"]
    metrics = {}
    if results:
        metrics = {
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
                "accuracy": evals[-1]["eval_accuracy"],
                "macro_f1": evals[-1].get("eval_macro_f1"),
                "metrics_from": f"evaluation at step {evals[-1].get('step')} (training in progress)",
            }
    return {
        **static,
        "model_id": args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
        "accuracy": metrics.get("accuracy"),
        "macro_f1": metrics.get("macro_f1"),
        "export_agreement": metrics.get("export_agreement"),
        "export_reloaded_with": metrics.get("export_reloaded_with"),
        "trainer_accuracy": metrics.get("trainer_accuracy"),
        "metrics_from": metrics.get("metrics_from", "no evaluation yet"),
        "global_step": global_step,
        "meta": meta,
        "training": {
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs,
            "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size,
            "seed": args.seed,
            "max_length": static["max_length"],
        },
        "fingerprint": meta.get("cache_fingerprint"),
        "citation": citation,
    }


def card_metadata(context: dict) -> ModelCardData:
    """YAML front matter: licence, base model, data, tags and a model-index with the evaluation results."""
    results = []
    for metric, value in (("accuracy", context["accuracy"]), ("f1", context["macro_f1"])):
        if value is not None:
            results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=context["dataset_hub_id"] or f"local:{context['dataset']}",  # no Hub id it is not
                    dataset_name=context["dataset"],
                    dataset_split=context["eval_split"],
                    metric_type=metric,
                    metric_value=round(float(value), 4),
                    metric_name=f"{metric} ({'macro' if metric == 'f1' else 'top-1'})",
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
