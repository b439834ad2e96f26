"""Trainer callbacks: what happens around the Trainer's own save and load, through its public hooks."""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_lelp.methods.modeling import load_auxiliary
from hf_lelp.training.resume import checkpoint_steps, mark_complete

try:  # transformers >= 5.25; before it, rotation was only the Trainer's private _rotate_checkpoints
    from transformers.trainer_utils import rotate_checkpoints
except ImportError:
    rotate_checkpoints = None

logger = logging.getLogger(__name__)


class CheckpointFinisher(TrainerCallback):
    """Each checkpoint complete before anything can delete or publish it.

    The Trainer's checkpoint save (transformers 5.17-5.25) calls `save_model` first, then writes the optimizer and
    state, pushes the folder and deletes old checkpoints (--save_total_limit), and only then calls `on_save`: a
    kill after the deletion would leave no complete checkpoint, and the push would publish an unfinished one.
    So LELPTrainer.save_model calls `begin` for a checkpoint: a folder of that name left by an earlier run is
    removed, and the limit and the push are held (the Trainer sees none). `on_save` gives them back, then writes
    the model card and the completion marker last, pushes the folder through the allowlist and rotates.
    After training with `load_best_model_at_end`: the training-only modules of the best checkpoint, beside the
    weights the Trainer restored."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.writing: str | None = None  # the checkpoint folder being written, while the user's values are held
        self.held: tuple[int | None, bool] | None = None  # (save_total_limit, push_to_hub) as the user gave them

    def is_checkpoint(self, output_dir: str | None) -> bool:
        """A save_model call that is the Trainer's checkpoint save of this step."""
        trainer = self.trainer
        name = os.path.basename(os.path.normpath(output_dir or ""))
        wanted = f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
        return trainer.is_in_train and trainer.control.should_save and name == wanted

    def begin(self, folder: str) -> None:
        args = self.trainer.args
        if args.should_save and os.path.isdir(folder):  # its marker, another model's files: they would mix
            logger.warning("Replacing %s, left by an earlier run.", folder)
            shutil.rmtree(folder)
        self.trainer.accelerator.wait_for_everyone()  # before any process writes into it
        self.release()  # a save that failed before on_save (caught by the user) held them already
        self.writing, self.held = os.path.abspath(folder), (args.save_total_limit, args.push_to_hub)
        args.save_total_limit, args.push_to_hub = None, False

    def release(self) -> None:
        """The user's save_total_limit and push_to_hub back (also after a failed save: LELPTrainer.train)."""
        if self.held is not None:
            self.trainer.args.save_total_limit, self.trainer.args.push_to_hub = self.held
        self.writing = self.held = None

    @contextmanager
    def user_values(self):
        """The user's values while the checkpoint's arguments are written (training_args.bin/.json)."""
        args, held = self.trainer.args, self.held
        if held is None:
            yield
            return
        args.save_total_limit, args.push_to_hub = held
        try:
            yield
        finally:
            args.save_total_limit, args.push_to_hub = None, False

    def on_save(self, args, state, control, **kwargs):
        folder, push = self.writing, self.held is not None and self.held[1]
        self.release()
        if folder is None:
            return
        self.finish(folder)
        if push:
            self.trainer.push_checkpoint(folder)
        if args.should_save:
            rotate = rotate_checkpoints or rotate_by_step
            run_dir = os.path.dirname(folder)
            rotate(
                output_dir=run_dir,
                save_total_limit=args.save_total_limit,
                best_model_checkpoint=state.best_model_checkpoint,
                use_mtime=True,
            )

    def finish(self, folder: str) -> None:
        """The card, then the completion marker, written last (a kill while the Trainer writes a checkpoint file by
        file leaves a folder that looks complete but is not)."""
        trainer = self.trainer
        if not trainer.args.should_save or not os.path.isdir(folder):
            return
        if trainer.card_context is not None:
            trainer.write_card(folder)
        mark_complete(folder, trainer.state.global_step, trainer.run_fingerprint())

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if args.load_best_model_at_end and state.best_model_checkpoint and model is not None:
            load_auxiliary(model, state.best_model_checkpoint)


def rotate_by_step(
    output_dir: str, save_total_limit: int | None, best_model_checkpoint: str | None, use_mtime: bool = False
) -> None:
    """transformers < 5.25 has no public rotation: the policy of 5.25's `rotate_checkpoints` (the newest and the
    best checkpoint kept, then the newest ones up to the limit), by step number (a checkpoint's mtime is not its
    age once it was finished or copied; `use_mtime` is taken for the same call and ignored)."""
    if not save_total_limit or save_total_limit <= 0:
        return
    folders = checkpoint_steps(output_dir)  # newest first
    protected = {os.path.realpath(p) for p in folders[:1] + ([best_model_checkpoint] if best_model_checkpoint else [])}
    keep = max(save_total_limit, len(protected))
    remaining = len(folders)
    for folder in reversed(folders):  # oldest first
        if remaining <= keep:
            break
        if os.path.realpath(folder) not in protected:
            logger.info("Deleting older checkpoint [%s] due to args.save_total_limit", folder)
            shutil.rmtree(folder, ignore_errors=True)
            remaining -= 1
