"""Fine-tune a teacher classifier with the plain Trainer (offline default: all-MiniLM-L6-v2 on Rotten Tomatoes).

    python recipes/train_teacher.py recipes/configs/teacher_rotten_tomatoes.yaml [--flag value ...]
    hf-lelp train-teacher recipes/configs/teacher_rotten_tomatoes.yaml [--flag value ...]   # the same job

Writes the teacher (safetensors, config with label names, tokenizer) and `teacher_results.json` with its test
metrics to --output_dir. The job lives in hf_lelp.teacher, so that the installed package runs it too.
"""

from __future__ import annotations

from hf_lelp.base.errors import run_cli
from hf_lelp.teacher import TeacherArguments, main, train_teacher  # noqa: F401

if __name__ == "__main__":
    run_cli(main)
