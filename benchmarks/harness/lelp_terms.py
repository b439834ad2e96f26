"""Issue #22 item 5: why LELP trails KD on fine-tuned students. On the fine-tuned transformer track (all-MiniLM-L6-v2
truncated to 2 layers, the demo's student), from a ceiling folder's teacher and a prefix of its train rows:

    terms   one LELP run that measures, on a fixed probe batch every few steps, the loss's class term (KD's) and its
            within-class term (all that the pseudo-subclasses add; hf_lelp.methods.losses.lelp_loss_terms), and the
            norm of each term's gradient on the student's body (every weight but the two heads)
    sweep   S, β and τ on validation for this track (seed 0), KD's τ beside it, with labels mixed in (α = 0.5) for
            KD and LELP; then the best LELP setting and the best KD setting on test over 3 seeds; then the ceiling
            on this track (`ceiling_rows`): λ for LELP and the oracle on validation, and the oracle, k-means,
            random and PCA subclasses at LELP's chosen setting on test
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import torch
from transformers import TrainerCallback

from hf_lelp.base.io_utils import write_atomic
from hf_lelp.methods.losses import lelp_loss_terms, lelp_targets
from hf_lelp.methods.modeling import SUBCLASS_HEAD, SUBCLASS_LOGITS, subclass_logits_of

from .search import select
from .strong_transformer import Runs

STUDENT, STUDENT_LAYERS = "all-MiniLM-L6-v2", 2
FIXED = {"num_train_epochs": 4, "per_device_train_batch_size": 32}  # the strong study's transformer track
BASE = {"learning_rate": 3e-4, "temperature": 4.0}  # the strong study's validation choice for KD (Rotten Tomatoes)
DEMO_LELP = {"num_subclasses": 4, "subclass_temperature": 1.0}  # the demo's S and β


def stem_for(results_dir: str, folder: str) -> str:
    """`lelp_vs_kd_<dataset>_<labelled folder>` under results_dir: one per teacher folder, because a run's key names
    no folder, so two folders sharing a progress file would reuse each other's runs."""
    folder = os.path.normpath(folder)
    dataset, teacher = os.path.basename(os.path.dirname(folder)), os.path.basename(folder)
    return os.path.join(results_dir, f"lelp_vs_kd_{dataset}_{teacher}")


def prefix_folder(folder: str, rows: int) -> str:
    """A transfer set of the first `rows` train rows of a ceiling folder (its own cache, built by the first job)."""
    target = os.path.join(folder, f"fine_tuned_n{rows}")
    train = os.path.join(target, "data", "train.jsonl")
    if not os.path.isfile(train):
        os.makedirs(os.path.dirname(train), exist_ok=True)
        with open(os.path.join(folder, "data", "train.jsonl"), encoding="utf-8") as handle:
            lines = [next(handle) for _ in range(rows)]

        def write_lines(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as out:  # closed (flushed) before write_atomic renames it
                out.writelines(lines)

        write_atomic(train, write_lines)
        for split in ("validation", "test"):
            shutil.copyfile(
                os.path.join(folder, "data", f"{split}.jsonl"), os.path.join(target, "data", f"{split}.jsonl")
            )
    return target


class TermsProbe(TrainerCallback):
    """Every `every` optimizer steps: both loss terms and their gradient norms on the body, on one fixed batch."""

    def __init__(self, trainer, probe: dict, every: int):
        self.trainer, self.probe, self.every, self.rows = trainer, probe, every, []

    def measure(self, step: int) -> None:
        trainer, args = self.trainer, self.trainer.args
        model = trainer.accelerator.unwrap_model(trainer.model)
        was_training = model.training
        model.eval()  # no dropout: the two terms see the same forward pass at every measurement
        ids = self.probe["example_id"]
        hidden, teacher_logits = trainer.teacher_cache.lookup(ids.numpy())
        scores = trainer.projections.subclass_scores(hidden, ids.numpy())
        targets = lelp_targets(scores, teacher_logits, args.temperature, args.subclass_temperature)
        inputs = {k: v for k, v in self.probe.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with subclass_logits_of(model, trainer.num_labels):
            outputs = model(**inputs)
        class_term, within = lelp_loss_terms(outputs.logits, outputs[SUBCLASS_LOGITS], targets, args.temperature)
        body = [p for n, p in model.named_parameters() if p.requires_grad and not _is_head(n)]
        norms = []
        for term in (class_term, within):
            grads = torch.autograd.grad(term, body, retain_graph=True, allow_unused=True)
            norms.append(float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None))))
        model.train(was_training)
        self.rows.append(
            {
                "step": step,
                "class_term": float(class_term.detach()),
                "within_term": float(within.detach()),
                "within_share_of_loss": float((within / (class_term + within)).detach()),
                "class_grad_norm": norms[0],
                "within_grad_norm": norms[1],
                "within_to_class_grad_ratio": norms[1] / norms[0] if norms[0] else None,
            }
        )

    def on_train_begin(self, args, state, control, **kwargs):
        self.measure(0)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self.measure(state.global_step)


def _is_head(name: str) -> bool:
    return name.startswith("classifier") or f".{SUBCLASS_HEAD}." in f".{name}" or name.startswith(SUBCLASS_HEAD)


def probe_batch(train_dataset, collator, size: int = 64) -> dict:
    rows = train_dataset.select(range(min(size, len(train_dataset))))
    keep = [c for c in rows.column_names if c in ("input_ids", "attention_mask", "token_type_ids", "example_id")]
    batch = collator([{k: row[k] for k in keep} for row in rows])
    return {k: torch.as_tensor(np.asarray(v)) for k, v in batch.items()}


def summary(rows: list[dict]) -> dict:
    """Over training: the within-class term's share of the loss and its gradient ratio, first, mean and last."""
    if not rows:
        return {}
    share = [r["within_share_of_loss"] for r in rows]
    ratio = [r["within_to_class_grad_ratio"] for r in rows if r["within_to_class_grad_ratio"] is not None]
    return {
        "within_share_of_loss": {"first": share[0], "mean": float(np.mean(share)), "last": share[-1]},
        "within_to_class_grad_ratio": {"first": ratio[0], "mean": float(np.mean(ratio)), "last": ratio[-1]},
    }


def terms_run(folder: str, rows: int, every: int, work: str) -> dict:
    """One LELP run with the demo's S and β on the fine-tuned track, measured by TermsProbe."""
    from hf_lelp import LELPConfig, LELPTrainer, load_student, load_text_classification
    from hf_lelp.data.assets import resolve_model

    from .student_job import SHARED_SETTINGS

    names = _label_names(folder)
    target = prefix_folder(folder, rows)
    train = load_text_classification(
        "train", data_files={"train": os.path.join(target, "data", "train.jsonl")}, label_names=names
    ).splits["train"]
    args = LELPConfig(
        output_dir=os.path.join(work, "terms_run"),
        method="lelp",
        seed=0,
        projection_seed=0,
        use_cpu=True,
        **{**SHARED_SETTINGS, **FIXED, **BASE, **DEMO_LELP},
    )
    trainer = LELPTrainer(
        model=load_student(resolve_model(STUDENT), names, STUDENT_LAYERS),
        teacher=os.path.join(folder, "teacher"),
        args=args,
        train_dataset=train,
        max_length=64,
        cache_dir=os.path.join(target, "one_call_cache"),
    )
    probe = TermsProbe(trainer, probe_batch(trainer.train_dataset, trainer.data_collator), every)
    trainer.add_callback(probe)
    trainer.train()
    return {
        "settings": {**FIXED, **BASE, **DEMO_LELP, "transfer_rows": rows},
        "rows": probe.rows,
        **summary(probe.rows),
    }


def _label_names(folder: str) -> list[str]:
    with open(os.path.join(folder, "ceiling.json"), encoding="utf-8") as handle:
        return json.load(handle)["label_names"]


def sweep_job(target: str, method: str, hparams: dict, seed: int, split: str) -> dict:
    """One fine-tuned student trained by the recipe's own job on a prefix folder; metrics of its reloaded export."""
    from hf_lelp.training.arguments import DataArguments, ModelArguments

    from .student_job import distill_student, student_row

    folder = os.path.dirname(target)
    data_args = DataArguments(
        train_file=os.path.join(target, "data", "train.jsonl"),
        **{f"{split}_file": os.path.join(target, "data", f"{split}.jsonl")},
        class_names=_label_names(folder),
        max_length=64,
        eval_split=split,
        fine_label_column="fine_label" if method == "oracle" else None,
    )
    model_args = ModelArguments(
        teacher=os.path.join(folder, "teacher"),
        student=STUDENT,
        student_num_layers=STUDENT_LAYERS,
        cache_dir=os.path.join(target, "teacher_cache"),
    )
    results = distill_student(data_args, model_args, method, seed, hparams, use_cpu=True, **FIXED)
    return student_row(method, seed, split, hparams, results)


def sweep_grid() -> list[tuple[str, dict]]:
    """Validation candidates (ours): KD's τ; LELP's S at β = 1, β at S = 4, τ at S = 4; α = 0.5 for both."""
    grid = [("ce", {"learning_rate": BASE["learning_rate"]})]
    grid += [("kd", {**BASE, "temperature": t}) for t in (1.0, 2.0, 4.0)]
    grid += [("lelp", {**BASE, "num_subclasses": s, "subclass_temperature": 1.0}) for s in (2, 4, 8)]
    grid += [("lelp", {**BASE, "num_subclasses": 4, "subclass_temperature": b}) for b in (0.5, 2.0)]
    grid += [("lelp", {**BASE, **DEMO_LELP, "temperature": t}) for t in (1.0, 2.0)]
    grid += [("kd", {**BASE, "hard_label_weight": 0.5}), ("lelp", {**BASE, **DEMO_LELP, "hard_label_weight": 0.5})]
    return grid


def sweep(args) -> dict:
    """Validation candidates (seed 0), then the best of each family on test over every seed."""
    target = prefix_folder(args.folder, args.rows)
    grid = sweep_grid()
    runs = Runs(
        f"{stem_for(args.results_dir, args.folder)}_n{args.rows}_sweep.progress.json",
        args.workers,
        job=sweep_job,
    )
    try:
        first = next((m, h) for m, h in grid if m != "ce")
        runs.run([(target, *first, args.seeds[0], "validation")])  # alone: builds the teacher cache once
        trials = runs.run([(target, m, h, args.seeds[0], "validation") for m, h in grid])
        chosen = {}
        for name, keep in (
            ("ce", lambda r: r["method"] == "ce"),
            ("kd", lambda r: r["method"] == "kd" and "hard_label_weight" not in r["hparams"]),
            ("lelp", lambda r: r["method"] == "lelp" and "hard_label_weight" not in r["hparams"]),
            ("kd+labels", lambda r: r["method"] == "kd" and "hard_label_weight" in r["hparams"]),
            ("lelp+labels", lambda r: r["method"] == "lelp" and "hard_label_weight" in r["hparams"]),
        ):
            best = select([r for r in trials if keep(r)])
            chosen[name] = {"method": best["method"], "hparams": best["hparams"]}
        tests = runs.run(
            [(target, c["method"], c["hparams"], seed, "test") for c in chosen.values() for seed in args.seeds]
        )
        ceiling = ceiling_rows(runs, target, chosen["lelp"]["hparams"], args.seeds)
    finally:
        runs.close()
    return {
        "settings": {**FIXED, "transfer_rows": args.rows},
        "trials": trials,
        "chosen": chosen,
        "runs": tests,
        "ceiling": ceiling,
    }


ABLATIONS = ("kmeans", "random", "pca")  # take LELP's chosen setting, as in the strong study (not searched)


def ceiling_rows(runs, target: str, lelp: dict, seeds: list[int]) -> dict:
    """The ceiling on the fine-tuned track: λ (`--within_class_weight`) on validation for LELP and the oracle at
    LELP's chosen setting (the oracle's S is its number of fine labels), then on test over the seeds the oracle and
    LELP at their λ, and the other subclass sources at LELP's setting with the paper's λ = 1."""
    from .ceiling import WEIGHTS

    oracle = {k: v for k, v in lelp.items() if k != "num_subclasses"}
    # LELP at λ = 1 is the search's own trial (its key has no λ), so it is not trained again.
    grid = [("lelp", {**lelp, "within_class_weight": w} if w != 1.0 else lelp) for w in WEIGHTS]
    grid += [("oracle", {**oracle, "within_class_weight": w}) for w in WEIGHTS]
    trials = runs.run([(target, m, h, seeds[0], "validation") for m, h in grid])
    chosen = {m: select([t for t in trials if t["method"] == m])["hparams"] for m in ("lelp", "oracle")}
    chosen.update({m: lelp for m in ABLATIONS})
    tests = runs.run([(target, m, h, seed, "test") for m, h in chosen.items() for seed in seeds])
    return {"weights": list(WEIGHTS), "trials": trials, "chosen": chosen, "runs": tests}
