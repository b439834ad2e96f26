"""Fine-tune a teacher classifier with the plain Trainer (offline default: all-MiniLM-L6-v2 on Rotten Tomatoes).

    python recipes/train_teacher.py recipes/configs/teacher_rotten_tomatoes.yaml [--flag value ...]

Writes the teacher (safetensors, config with label names, tokenizer) and `teacher_results.json` with its test
metrics to --output_dir.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

from hf_lelp.assets import resolve_model
from hf_lelp.cli import DataArguments, parse_with_config
from hf_lelp.data import LABEL
from hf_lelp.errors import run_cli
from hf_lelp.io_utils import write_json_atomic
from hf_lelp.metrics import build_compute_metrics
from hf_lelp.modeling import load_student
from hf_lelp.workflow import load_data


@dataclass
class TeacherArguments:
    teacher_model: str = field(
        default="all-MiniLM-L6-v2",
        metadata={"help": "Checkpoint to fine-tune (offline short name, folder or any Hub id)."},
    )
    teacher_num_layers: int | None = field(default=None, metadata={"help": "Keep only the first k layers."})


def main(argv: list[str] | None = None) -> dict:
    data_args, teacher_args, args = parse_with_config((DataArguments, TeacherArguments, TrainingArguments), argv)
    set_seed(args.seed)
    data = load_data(data_args)
    path = resolve_model(teacher_args.teacher_model)
    model = load_student(path, data.label_names, teacher_args.teacher_num_layers)
    tokenizer = AutoTokenizer.from_pretrained(path)

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
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    results = trainer.evaluate(metric_key_prefix=eval_name) if eval_name else {}
    trainer.save_model(args.output_dir)
    if args.should_save:
        results.update(
            {
                "teacher_model": teacher_args.teacher_model,
                "dataset": data_args.dataset,
                "train_examples": len(trainer.train_dataset),
            }
        )
        write_json_atomic(os.path.join(args.output_dir, "teacher_results.json"), results)
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_cli(main)
