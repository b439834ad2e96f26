"""One number S: --auto_hparams returns new arguments with the chosen S and β; the given ones stay as they were."""

import datasets
import numpy as np

from conftest import make_texts, save_tiny_model, synthetic_cache
from hf_lelp import LELPConfig
from hf_lelp.data.load import TextClassificationData
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.autotune import choose_hparams_automatically


def test_auto_hparams_returns_new_arguments_and_leaves_the_given_ones_alone(tmp_path):
    n = 48
    cache = synthetic_cache(tmp_path / "cache", n=n, d=16, c=2)  # labels i % 2, as make_texts
    texts, labels, _ = make_texts(n, 2, seed=0)
    assert labels == list(np.asarray(cache.labels))
    valid_texts, valid_labels, _ = make_texts(16, 2, seed=1)
    splits = {
        "train": datasets.Dataset.from_dict({"example_id": np.arange(n), "text": texts, "label": labels}),
        "validation": datasets.Dataset.from_dict(
            {"example_id": np.arange(n, n + 16), "text": valid_texts, "label": valid_labels}
        ),
    }
    data = TextClassificationData(datasets.DatasetDict(splits), ["class_0", "class_1"], "synthetic")
    student = save_tiny_model(tmp_path / "student", num_labels=2, hidden=32, layers=1)
    model_args = ModelArguments(student=student, student_num_layers=None)
    args = LELPConfig(
        output_dir=str(tmp_path / "out"),
        method="random_ensemble",
        ensemble_size=2,
        auto_hparams=True,
        auto_num_subclasses=[1, 2],
        auto_subclass_temperatures=[0.5],
        auto_budget_epochs=0.25,
        auto_keep=1,
        per_device_train_batch_size=16,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
    )
    before = args.to_dict()
    chosen, auto = choose_hparams_automatically(data, DataArguments(max_length=16), model_args, args, cache)
    assert args.to_dict() == before  # not one field of the given arguments changed (S stays 4, β 1.0)
    assert (args.num_subclasses, args.subclass_temperature) == (4, 1.0)
    assert chosen is not args and isinstance(chosen, LELPConfig)
    assert chosen.num_subclasses == auto["chosen"]["num_subclasses"] in (1, 2)
    assert chosen.subclass_temperature == 0.5 and chosen.ensemble_size == 2  # S per member; K unchanged
    assert {k: v for k, v in chosen.to_dict().items() if k not in ("num_subclasses", "subclass_temperature")} == {
        k: v for k, v in before.items() if k not in ("num_subclasses", "subclass_temperature")
    }
