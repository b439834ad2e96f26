"""The trainer's side that faces the Hub: its model card and its pushes. Mixed into LELPTrainer (hf_lelp.training).

Checked against transformers 5.17-5.25: Trainer.push_to_hub uploads the whole output_dir, and the checkpoint push
the checkpoint folder with training_args.bin; here every commit is an allowlisted, scanned staging folder
(hf_lelp/hub/publish.py). `push_to_hub` replaces the Trainer's; `push_checkpoint` is called by the
trainer's CheckpointFinisher (hf_lelp/training/callbacks.py) once the checkpoint is finished (card, marker).
"""

from __future__ import annotations

import logging
import os
import shutil

from huggingface_hub import HfApi, get_token
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, SaveStrategy
from transformers.utils.hub import PushInProgress

from hf_lelp.hub.card import run_card_context, trainer_card_context, write_model_card
from hf_lelp.hub.publish import (
    CHECKPOINT_STATE,
    PUBLISHED,
    relative_trainer_state,
    sanitise_adapter_config,
    scan,
    stage,
)

logger = logging.getLogger(__name__)

# The method's paper, recorded in lelp_config.json and cited by the card.
PAPER = {
    "title": "Linear Projections of Teacher Embeddings for Few-Class Distillation",
    "id": "2409.20449",
    "citation": "@article{loo2024lelp, title={Linear Projections of Teacher Embeddings for Few-Class "
    "Distillation}, author={Loo, Noel and Iliopoulos, Fotis and Hu, Wei and Vee, Erik}, "
    "journal={arXiv preprint arXiv:2409.20449}, year={2024}}",
}


def is_checkpoint_folder(output_dir: str) -> bool:
    """A local checkpoint folder: it keeps the Trainer's own files untouched (never uploaded as they are)."""
    return os.path.basename(os.path.normpath(output_dir)).startswith(PREFIX_CHECKPOINT_DIR)


class HubMixin:
    """Card and pushes of a `transformers.Trainer` subclass that has `card_context`, `teacher_cache`,
    `run_settings`, `final_results`, `lelp_metadata()` and `record_written()`."""

    def write_card(self, output_dir: str) -> None:
        """README.md model card (hf_lelp/hub/lelp_student.md.j2) with the freshest metrics; at every save and push.
        A trainer built in Python without `card_context=` describes what it knows itself (model, cache, datasets)."""
        static = self.card_context
        if static is None:
            model = self.accelerator.unwrap_model(self.model)
            static = trainer_card_context(model, self.teacher_cache, self.train_dataset, self.eval_dataset)
        context = run_card_context(
            static,
            self.args,
            self.lelp_metadata(),
            self.state.log_history,
            self.state.global_step,
            self.final_results,
            PAPER["citation"],
            epoch=self.state.epoch,
            folder=None if is_checkpoint_folder(output_dir) else output_dir,  # save_model(elsewhere) too
        )
        write_model_card(output_dir, context)

    def create_model_card(self, *args, **kwargs):
        # Trainer.push_to_hub calls this; our card replaces the generic Trainer card (also without card_context).
        if self.args.should_save:
            self.write_card(self.args.output_dir)
            self.record_written("README.md")

    @property
    def hub_api(self) -> HfApi:
        """One client for the run: its background uploads run one at a time, in order (the Trainer's checkpoint
        pushes share huggingface_hub's module-level client the same way), so the Hub's commits keep the order."""
        if getattr(self, "_hub_api", None) is None:
            self._hub_api = HfApi()
        return self._hub_api

    def push_to_hub(self, commit_message="End of training", blocking=True, token=None, revision=None, **kwargs):
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token, private=kwargs.pop("private", None))
        self.save_model(_internal_call=True)
        if not self.is_world_process_zero():
            return None
        self.create_model_card(**kwargs)
        self._finish_current_push()
        return self._upload(
            self.args.output_dir,
            commit_message,
            token=token,
            revision=revision or self.args.hub_revision,
            blocking=blocking,
        )

    def push_checkpoint(self, checkpoint_folder: str) -> None:
        """The Trainer's checkpoint push (--hub_strategy), each commit staged and scanned."""
        args = self.args
        if not self.is_world_process_zero() or args.hub_strategy == HubStrategy.END:
            return
        if not args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return  # the Trainer's rule: skip this push while the previous one is still uploading
        self.callback_handler.on_push_begin(args, self.state, self.control)
        if args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        # The checkpoint folder holds the model, tokenizer and side files of this step, its card and completion
        # marker: CheckpointFinisher.on_save pushes it once finished, before old checkpoints are rotated away.
        jobs = [self._upload(checkpoint_folder, message, blocking=False)]
        if args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            path_in_repo = "last-checkpoint" if args.hub_strategy == HubStrategy.CHECKPOINT else None
            jobs.append(
                self._upload(
                    checkpoint_folder,
                    message + ", checkpoint",
                    path_in_repo=path_in_repo or os.path.basename(checkpoint_folder),
                    resumable=True,
                    blocking=False,
                )
            )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

    def _upload(self, folder, message, *, token=None, revision=None, path_in_repo=None, resumable=False, blocking):
        """Stage the allowlisted files of `folder`, scan them, upload them as one commit; the staging folder is
        removed when the upload ends."""
        args = self.args
        staging = stage(folder, PUBLISHED + CHECKPOINT_STATE if resumable else PUBLISHED)
        try:
            sanitise_adapter_config(staging, (self.card_context or {}).get("base_model"))
            relative_trainer_state(staging, args.output_dir)
            secrets = [token, args.hub_token, get_token(), os.environ.get("HF_TOKEN")]
            scan(staging, secrets, self.local_paths, allow_pickles=resumable)
            upload = self.hub_api.upload_folder(
                repo_id=self.hub_model_id,
                folder_path=staging,
                path_in_repo=path_in_repo,
                commit_message=message,
                token=token or args.hub_token,
                revision=revision or args.hub_revision,
                run_as_future=not blocking,
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if blocking:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            upload.add_done_callback(lambda done: _after_background_upload(done, staging, message))
        return upload

    @property
    def local_paths(self) -> list[str]:
        """This machine's paths that a published file must not contain: every path the run was given (teacher,
        student, cache, data files, output and logging folders); the scan adds home, working and temp folders."""
        paths = list((self.card_context or {}).get("local_paths", []))
        if self.teacher_cache is not None:
            paths.append(self.teacher_cache.path)
        given = [self.args.output_dir]
        for value in (*self.args.to_dict().values(), *(self.run_settings or {}).values()):  # every flag's value
            given += value if isinstance(value, list) else [value]
        paths += [p for p in given if isinstance(p, str) and p and (os.path.isabs(p) or os.path.exists(p))]
        return [os.path.abspath(p) for p in paths]


def _after_background_upload(done, staging: str, message: str) -> None:
    """A checkpoint push runs in the background; its failure is said, never dropped with the future."""
    shutil.rmtree(staging, ignore_errors=True)
    if done.exception() is not None:
        logger.warning("Hub push '%s' failed: %s", message, done.exception())
