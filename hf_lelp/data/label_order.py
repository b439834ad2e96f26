"""The one check of a teacher's classes against the data's, shared by the CLI (workflow), the teacher pass
(build_teacher_cache) and the Python API: the data's label ids must follow the teacher's output order, or the
teacher's logits would be read as the wrong classes.

Names are matched by name: the same classes in another order are remapped to the teacher's order (the student's
id2label then follows that order too); classes that cannot be matched are refused, naming both orders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import datasets
import numpy as np

from hf_lelp.base.errors import UserError
from hf_lelp.data.columns import LABEL, UNLABELLED

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelOrder:
    """The class names in the teacher's output order, and where each of the data's label ids goes."""

    names: list[str]  # the teacher's order: what the cache records and the student's id2label
    new_ids: list[int]  # new_ids[i]: the teacher output of the data's label id i

    @property
    def changed(self) -> bool:
        return self.new_ids != list(range(len(self.new_ids)))

    def relabel(self, split: datasets.Dataset) -> datasets.Dataset:
        """`split` (label ids in the data's order, -1 unlabelled) with label ids in the teacher's order."""
        if not self.changed or LABEL not in split.column_names:
            return split
        table = np.asarray([*self.new_ids, UNLABELLED], dtype=np.int64)  # index -1 is the last entry: unlabelled
        labels = table[np.asarray(split.with_format(None)[LABEL][:], dtype=np.int64)]
        return split.remove_columns(LABEL).add_column(LABEL, labels).select_columns(split.column_names)


def teacher_class_names(teacher) -> list[str]:
    """The teacher's class names in output order, from a model, a config (id2label, num_labels) or a list."""
    if isinstance(teacher, (list, tuple)):
        return [str(name) for name in teacher]
    config = getattr(teacher, "config", teacher)
    id2label = {int(k): str(v) for k, v in (getattr(config, "id2label", None) or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(config.num_labels)]


def _generic(names: list[str]) -> bool:
    return all(name == f"LABEL_{i}" for i, name in enumerate(names))


def check_teacher_labels(teacher, label_names: list[str]) -> LabelOrder:
    """The order the data's labels must take to match the teacher's outputs (`teacher`: a model, its config or its
    class names); refuses classes that cannot be matched.

    - the same names in the same order, or a teacher with generic names (LABEL_0...): unchanged;
    - the same names in another order, or a subset of the teacher's names: mapped by name to the teacher's order;
    - integer labels 0..K-1 (names "0", "1", ...): the teacher's output ids, which give them the teacher's names;
    - anything else (other names, more classes than outputs): a UserError naming both orders.
    """
    data = [str(name) for name in label_names]
    names = teacher_class_names(teacher)
    same = list(range(len(data)))
    if names == data or (_generic(names) and len(names) == len(data)):
        return LabelOrder(data, same)
    if not _generic(names) and len(set(data)) == len(data) and set(data) <= set(names):
        order = LabelOrder(names, [names.index(name) for name in data])
        if order.changed:
            logger.warning(
                "The data's classes %s are not in the order of the teacher's outputs %s: labels are mapped by name "
                "to the teacher's order, which the cache and the student use (in Python, train and evaluate on "
                "hf_lelp.align_to_teacher(data, teacher)).",
                data,
                names,
            )
        return order
    if data == [str(i) for i in same] and len(data) == len(names):
        return LabelOrder(names, same)
    raise UserError(
        f"The teacher's classes {names} (its {len(names)} outputs, in order) do not match the data's classes "
        f"{data}: use the teacher trained on this data, or pass --class_names / label_names that name the "
        "teacher's classes (they are then matched by name, in any order)."
    )


def align_to_teacher(data, teacher):
    """`data` (a TextClassificationData) with its label ids and class names in the teacher's output order: what a
    student distilled from `teacher` must train and be evaluated on. Unchanged when they already agree."""
    order = check_teacher_labels(teacher, data.label_names)
    if not order.changed and order.names == list(data.label_names):
        return data
    splits = datasets.DatasetDict({name: order.relabel(split) for name, split in data.splits.items()})
    return type(data)(**{**vars(data), "splits": splits, "label_names": list(order.names)})
