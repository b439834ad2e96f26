"""Model card of an exported student, rendered from the Jinja template in `model_cards/`."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .assets import OFFLINE_MODELS

TEMPLATE = Path(__file__).resolve().parents[1] / "model_cards" / "lelp_student.md.j2"


def base_model_id(name: str) -> str:
    """Hub id of the student's initial checkpoint (offline short names map to their Hub original)."""
    return f"sentence-transformers/{name}" if name in OFFLINE_MODELS else name


def card_context(trainer, data, data_args, model_args, results: dict, teacher_eval: dict) -> dict:
    args = trainer.args
    meta = trainer.lelp_metadata()
    eval_split = data_args.eval_split
    accuracy = results.get(f"{eval_split}_accuracy")
    return {
        "model_id": args.hub_model_id or os.path.basename(os.path.abspath(args.output_dir)),
        "base_model": base_model_id(model_args.student),
        "student_num_layers": model_args.student_num_layers,
        "dataset": data_args.dataset,
        "label_names": data.label_names,
        "split_sizes": {name: len(split) for name, split in data.splits.items()},
        "teacher": model_args.teacher,
        "teacher_accuracy": teacher_eval.get(f"{eval_split}_accuracy"),
        "eval_split": eval_split,
        "accuracy": accuracy,
        "macro_f1": results.get(f"{eval_split}_macro_f1"),
        "export_agreement": results.get("export_agreement"),
        "meta": meta,
        "training": {
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs,
            "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps,
            "seed": args.seed,
            "max_length": data_args.max_length,
        },
        "fingerprint": meta.get("cache_fingerprint"),
        "citation": trainer._paper["citation"],
    }


def card_metadata(context: dict) -> ModelCardData:
    """YAML front matter: licence, base model, data, tags and a model-index with the evaluation results."""
    results = []
    for metric, value in (("accuracy", context["accuracy"]), ("f1", context["macro_f1"])):
        if value is not None:
            results.append(
                EvalResult(
                    task_type="text-classification",
                    dataset_type=context["dataset"],
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
        datasets=[context["dataset"]],
        metrics=["accuracy", "f1"],
        pipeline_tag="text-classification",
        library_name="transformers",
        tags=["lelp", "distillation", "text-classification", "hf-lelp"],
        model_name=context["model_id"],
        eval_results=results or None,
    )


def render_model_card(context: dict, template_path: str | Path = TEMPLATE) -> ModelCard:
    return ModelCard.from_template(card_metadata(context), template_path=str(template_path), **context)


def write_model_card(output_dir: str, trainer, data, data_args, model_args, results: dict, teacher_eval: dict) -> str:
    card = render_model_card(card_context(trainer, data, data_args, model_args, results, teacher_eval))
    path = os.path.join(output_dir, "README.md")
    card.save(path)
    return path
