"""Trainer callbacks: what happens around the Trainer's own save and load, through its public hooks."""

from __future__ import annotations

import os

from transformers import TrainerCallback

from hf_lelp.methods.modeling import load_auxiliary
from hf_lelp.training.resume import mark_complete


class CheckpointFinisher(TrainerCallback):
    """Finishing each checkpoint: its model card, then the completion marker, written last (a kill while the
    Trainer writes a checkpoint file by file leaves a folder that looks complete but is not). LELPTrainer calls
    `finish` inside its checkpoint save, after the Trainer's files and before old checkpoints are rotated away
    (the Trainer rotates before any on_save callback runs). After training with `load_best_model_at_end`: the
    training-only modules of the best checkpoint, beside the weights the Trainer restored."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.finished: tuple[str, int] | None = None

    def finish(self, folder: str) -> None:
        trainer = self.trainer
        if not trainer.args.should_save or not os.path.isdir(folder):
            return
        done = (os.path.abspath(folder), trainer.state.global_step)
        if self.finished == done:  # a checkpoint push finishes the folder before its upload
            return
        if trainer.card_context is not None:
            trainer.write_card(folder)
        mark_complete(folder, trainer.state.global_step, trainer.run_fingerprint())
        self.finished = done

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if args.load_best_model_at_end and state.best_model_checkpoint and model is not None:
            load_auxiliary(model, state.best_model_checkpoint)
