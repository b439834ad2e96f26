"""The student's subclass head layouts (`--subclass_head`): how the C·S distribution is formed, and what the
trainer, the loss and the training-only modules do differently for each. Nothing else compares head names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudentHead:
    name: str
    help: str
    # The student predicts with its C·S layer (p_c = Σ_s q_{c,s}) and the exported C-class layer is trained beside
    # it, on detached features, to follow it (the paper's layout); else the C-class layer times a within-class softmax.
    predicts_with_subclasses: bool = False


STUDENT_HEADS = {
    head.name: head
    for head in (
        StudentHead("factorized", "ours (default): the model's own C-class layer times a within-class softmax"),
        StudentHead("flat", "the paper's: one C·S layer, class probability = sum of its subclasses'", True),
    )
}


def get_student_head(name: str) -> StudentHead:
    if name not in STUDENT_HEADS:
        raise ValueError(f"--subclass_head must be one of {tuple(STUDENT_HEADS)}, got {name!r}.")
    return STUDENT_HEADS[name]
