"""Fine-tune a teacher classifier with the plain Trainer: the job behind `hf-lelp train-teacher` and
`recipes/train_teacher.py` (offline default: all-MiniLM-L6-v2 on Rotten Tomatoes).

Writes the teacher (safetensors, config with label names, tokenizer) and `teacher_results.json` with its metrics
on --eval_split to --output_dir.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from hf_lelp.base.io_utils import write_json_atomic
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import LABEL
from hf_lelp.data.load import data_summary
from hf_lelp.data.preflight import check_models
from hf_lelp.hub.export import read_as_trained
from hf_lelp.methods.modeling import load_student
from hf_lelp.training.arguments import DataArguments, run_job
from hf_lelp.training.job_data import load_data
from hf_lelp.training.metrics import build_compute_metrics

RESULTS_FILE = "teacher_results.json"


@dataclass
class TeacherArguments:
    teacher_model: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "Checkpoint to fine-tune (offline short name, folder or any Hub id)."},
    )
    teacher_num_layers: int | None = field(default=None, metadata={"help": "Keep only the first k layers."})


def train_teacher(
    data_args: DataArguments, teacher_args: TeacherArguments, args: TrainingArguments, callbacks: list | None = None
) -> dict:
    """Train, evaluate on --eval_split (when the data has it), save to args.output_dir; returns the metrics.
    `callbacks`: extra TrainerCallbacks (e.g. to record every evaluation)."""
    set_seed(args.seed)
    data = load_data(data_args)
    check_models(data_args.max_length, data.label_names, {"--teacher_model": teacher_args.teacher_model})
    path = resolve_model(teacher_args.teacher_model)
    model = load_student(path, data.label_names, teacher_args.teacher_num_layers)
    tokenizer = read_as_trained(AutoTokenizer.from_pretrained(path), data_args.max_length)  # saved with it

    def encode(split):
        split = split.filter(lambda row: row[LABEL] >= 0)  # a teacher learns from labelled rows only
        return split.map(
            lambda b: tokenizer(b["text"], truncation=True, max_length=data_args.max_length), batched=True
        ).rename_column(LABEL, "labels")

    eval_name = data_args.eval_split if data_args.eval_split in data.splits else None
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=encode(data.splits["train"]),
        eval_dataset=encode(data.splits[eval_name]) if eval_name else None,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(data.num_labels),
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    results = trainer.evaluate(metric_key_prefix=eval_name) if eval_name else {}
    trainer.save_model(args.output_dir)
    if args.should_save:
        results.update(
            {
                **data_summary(data),  # what it trained on: source, rows, class names
                "teacher_model": teacher_args.teacher_model,
                "train_examples": len(trainer.train_dataset),  # the labelled rows: a teacher learns from those only
            }
        )
        write_json_atomic(os.path.join(args.output_dir, RESULTS_FILE), results)
    return results


def main(argv: list[str] | None = None) -> dict:
    """`[CONFIG.yaml] [--flag value ...]`: DataArguments, TeacherArguments, TrainingArguments."""
    return run_job(train_teacher, (DataArguments, TeacherArguments, TrainingArguments), argv)
