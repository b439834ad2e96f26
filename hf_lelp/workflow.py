"""The whole job behind `recipes/distill.py`: data → cache → fit → train → evaluate → export → card → push."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from contextlib import nullcontext

import numpy as np
from transformers import (
    set_seed,
)

from hf_lelp.base.errors import UserError
from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.base.locks import exclusive_folder
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import TEXT
from hf_lelp.data.load import data_summary
from hf_lelp.data.preflight import check_models
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.hub.card import static_card_context
from hf_lelp.hub.export import base_overrides, measure_export, read_as_trained
from hf_lelp.hub.output_files import foreign_model_files
from hf_lelp.hub.publish import public_name
from hf_lelp.methods.modeling import parameter_counts
from hf_lelp.methods.scratch_student import architecture_facts
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.autotune import choose_hparams_automatically
from hf_lelp.training.builder import build_student, build_subclasses
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.job_cache import check_process_group, ensure_teacher_cache
from hf_lelp.training.job_data import (
    align_data_to_teacher,
    check_eval_split,
    check_labels_for_method,
    load_data,
    selection_split,
    split_roles,
)
from hf_lelp.training.metrics import build_compute_metrics
from hf_lelp.training.trainer import text_trainer


def load_baselines(paths: list[str], split: str) -> list[dict]:
    rows = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            results = json.load(handle)
        rows.append(
            {
                "method": results.get("method", os.path.basename(os.path.dirname(path))),
                "accuracy": results.get(f"{split}_accuracy"),
                "macro_f1": results.get(f"{split}_macro_f1"),
            }
        )
    return rows


def _same_or_inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_roles(output_dir: str, model_args: ModelArguments) -> None:
    """--output_dir must not be the teacher's or the student's folder, nor the teacher cache's."""
    for flag in ("teacher", "student"):
        folder = os.path.expanduser(getattr(model_args, flag) or "")
        if folder and os.path.isdir(folder) and os.path.realpath(output_dir) == os.path.realpath(folder):
            raise UserError(
                f"--output_dir {output_dir} is the --{flag} folder: the student would be saved over the {flag} "
                f"model. Pass another --output_dir (e.g. {os.path.normpath(output_dir)}_student)."
            )
    cache_dir = model_args.cache_dir
    if cache_dir and _same_or_inside(output_dir, cache_dir):
        where = "the same folder as" if _same_or_inside(cache_dir, output_dir) else "inside"
        raise UserError(
            f"--output_dir {output_dir} is {where} --cache_dir {cache_dir}: the student and the teacher cache would "
            "share one folder (its files and its lock, so the run would refuse itself as in use). Pass a --cache_dir "
            "of its own (e.g. a sibling of --output_dir), or leave --cache_dir out for the default place."
        )


def check_output_dir(output_dir: str, method: str, model_args: ModelArguments | None = None) -> None:
    """Refuse an --output_dir where the student would replace or mix with a model this run does not own: the
    teacher's, the student's or the cache's folder, a folder holding a model hf-lelp did not write, or another
    method's student (their side files and results would mix)."""
    if model_args is not None:
        check_output_roles(output_dir, model_args)
    foreign = foreign_model_files(output_dir)
    if foreign:
        raise UserError(
            f"{output_dir} holds a model that hf-lelp did not write ({', '.join(foreign)}): saving the student there "
            "would replace it. Pass another --output_dir (an empty or new folder, or one an earlier hf-lelp run "
            "wrote)."
        )
    config_path = os.path.join(output_dir, "lelp_config.json")
    if not os.path.isfile(config_path):
        return
    previous = read_json(config_path).get("method")
    if previous != method:
        raise ValueError(
            f"{output_dir} holds a finished --method {previous} student; a --method {method} run there would mix "
            f"the two (side files, results, checkpoints). Pass another --output_dir, or delete {output_dir}."
        )


def run_distillation(data_args: DataArguments, model_args: ModelArguments, args: LELPConfig) -> dict:
    """The whole job, holding output_dir against a second run (refused with this run named)."""
    check_process_group(args)
    check_output_roles(args.output_dir, model_args)  # before the lock: not even a lock file in the teacher's folder
    holding = exclusive_folder(args.output_dir, "output folder") if args.process_index == 0 else nullcontext()
    with holding:
        return _run_distillation(data_args, model_args, args)


def _run_distillation(data_args: DataArguments, model_args: ModelArguments, args: LELPConfig) -> dict:
    start = time.time()
    set_seed(args.seed)
    data = load_data(data_args)
    if args.uses_teacher:  # label ids in the teacher's output order, for the cache, the student and every split
        data = align_data_to_teacher(data, model_args)
    check_eval_split(data, data_args)
    selection_name = selection_split(data, data_args, args)
    check_labels_for_method(data, args)
    check_output_dir(args.output_dir, args.method, model_args)
    teacher = {"--teacher": model_args.teacher} if args.uses_teacher else {}
    # A from-scratch student is sized for the data and max_length when it is built: only a checkpoint is checked.
    trained = {} if model_args.student_config else {"--student": model_args.student}
    check_models(data_args.max_length, data.label_names, trained, teacher)
    cache = projections = None
    if args.uses_teacher:
        cache = ensure_teacher_cache(data, data_args, model_args, args)
    auto = None
    if args.auto_hparams:
        args, auto = choose_hparams_automatically(data, data_args, model_args, args, cache)
    if args.method_spec.subclass_source is not None:
        projections = build_subclasses(cache, data, model_args, args)
    set_seed(args.seed)
    hidden = cache.hidden_size if cache else None
    student, tokenizer = build_student(data, model_args, args, projections, hidden, data_args.max_length)
    read_as_trained(tokenizer, data_args.max_length)  # saved with the export: it reads texts as training did
    parameters = parameter_counts(student)
    train_set = tokenize_split(data.splits["train"], tokenizer, data_args.max_length)
    eval_name = data_args.eval_split or None  # '' = no final evaluation, asked for explicitly
    eval_set = tokenize_split(data.splits[eval_name], tokenizer, data_args.max_length) if eval_name else None
    selection_set = (
        tokenize_split(data.splits[selection_name], tokenizer, data_args.max_length) if selection_name else None
    )
    card = static_card_context(
        data,
        data_args,
        model_args,
        _teacher_eval(model_args.teacher),
        load_baselines(model_args.baseline_results, data_args.eval_split),
    )
    card["auto_hparams"] = auto
    card["split_roles"] = split_roles(data, data_args, args, selection_name)
    card["base_overrides"] = base_overrides(student.config, model_args.student_num_layers)
    card["from_scratch"] = model_args.student_config and {
        **architecture_facts(student),
        "tokenizer": public_name(model_args.teacher or model_args.student),
    }
    trainer = text_trainer(
        student,
        args,
        tokenizer,
        data,
        cache,
        projections,
        train_set,
        eval_dataset=selection_set,  # never the reported split: selection happens on validation only
        compute_metrics=build_compute_metrics(data.num_labels, model_args.extra_metrics),
        card_context=card,
        run_settings={**dataclasses.asdict(data_args), **dataclasses.asdict(model_args)},
    )
    resume = args.resume_from_checkpoint
    resume = True if str(resume).lower() in ("true", "1", "yes") else resume  # "latest complete checkpoint"
    train_result = trainer.train(resume_from_checkpoint=resume)
    results = {
        **data_summary(data),  # what it trained on: source, rows, class names
        "method": args.method,
        "train_seconds": train_result.metrics.get("train_runtime"),
        "train_examples": len(train_set),
        "selection_split": selection_name,
        **parameters,
    }
    if projections is not None:  # S per class and member, K members: as the source was built
        results.update(num_subclasses=projections.num_subclasses, ensemble_size=projections.num_members)
    if auto:
        results["auto_hparams"] = auto
    if selection_set is not None:
        results.update(trainer.evaluate(selection_set, metric_key_prefix=selection_name))
    if eval_set is not None:  # the reported split, evaluated once, after every choice is made
        prediction = trainer.predict(eval_set, metric_key_prefix=eval_name)
        results.update({f"{eval_name}_trainer_{k[len(eval_name) + 1 :]}": v for k, v in prediction.metrics.items()})
        results[f"{eval_name}_examples"] = len(prediction.label_ids)  # each example once, also across processes
    if model_args.use_peft and model_args.merge_lora:
        trainer.model = trainer.model_wrapped = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.final_results = results
    # Saved without the Trainer's own push (save_model pushes when --push_to_hub): the push comes last, after
    # results.json is written, so that a refused push leaves the measured results behind.
    trainer.save_model(args.output_dir, _internal_call=True)
    if args.should_save:
        if eval_set is not None:
            # The reported metrics are the saved student's, reloaded the way users load it (not the trainer's
            # bf16-autocast forward); the trainer's stay beside them as <split>_trainer_*.
            adapter = model_args.use_peft and not model_args.merge_lora
            results.update(
                measure_export(
                    args.output_dir,
                    list(data.splits[eval_name][TEXT]),
                    np.asarray(data.splits[eval_name]["label"]),
                    np.asarray(prediction.predictions).argmax(axis=-1),
                    build_compute_metrics(data.num_labels, model_args.extra_metrics),
                    eval_name,
                    num_labels=data.num_labels,
                    batch_size=args.per_device_eval_batch_size,
                    adapter_overrides=card["base_overrides"] if adapter else None,
                    max_length=data_args.max_length,
                )
            )
        results["wall_seconds"] = time.time() - start
        write_json_atomic(os.path.join(args.output_dir, "results.json"), results)
        trainer.write_card(args.output_dir)  # now with the measured export
        trainer.record_written("results.json", "README.md")
    if args.push_to_hub:
        trainer.push_to_hub(commit_message=f"hf-lelp: {args.method} student", blocking=True)
    trainer.accelerator.wait_for_everyone()
    return results


def _teacher_eval(teacher: str | None) -> dict:
    """The teacher's own test metrics, written by recipes/train_teacher.py beside its weights."""
    path = os.path.join(resolve_model(teacher), "teacher_results.json") if teacher else ""
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    return {}
