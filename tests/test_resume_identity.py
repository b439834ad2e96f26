"""A run's identity (what a resumed run must share with its checkpoint) comes from where its settings are defined:
the method registry, the cache's fingerprint keys, the recipe's flags and a documented list of transformers'."""

import dataclasses

import pytest
from transformers import TrainingArguments

from hf_lelp import LELPConfig
from hf_lelp.cache.store import FINGERPRINT_KEYS
from hf_lelp.methods.registry import get_method, register_method, registered_methods, unregister_method
from hf_lelp.training.arguments import RESUMABLE_FLAGS, DataArguments, ModelArguments
from hf_lelp.training.resume import check_resumable, mark_complete, run_fingerprint


def identity(tmp_path, **options) -> dict:
    args = LELPConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", **options)
    return run_fingerprint(args, {}, None, 10)


def test_an_option_added_to_a_registry_entry_joins_the_identity_by_itself(tmp_path):
    # kd does not read the feature weight: changing it leaves kd's identity as it was.
    assert identity(tmp_path, method="kd", feature_loss_weight=0.1) == identity(
        tmp_path, method="kd", feature_loss_weight=10.0
    )
    register_method(dataclasses.replace(get_method("kd"), name="kd_weighted", card_fields=("feature_loss_weight",)))
    try:
        low = identity(tmp_path, method="kd_weighted", feature_loss_weight=0.1)
        high = identity(tmp_path, method="kd_weighted", feature_loss_weight=10.0)
    finally:
        unregister_method("kd_weighted")
    assert low["feature_loss_weight"] == 0.1 and low != high


def test_a_labels_only_run_is_not_identified_by_options_it_does_not_read(tmp_path):
    ce = identity(tmp_path, method="ce", num_subclasses=2)
    assert not {"num_subclasses", "subclass_temperature", "temperature"} & set(ce)
    assert ce == identity(tmp_path, method="ce", num_subclasses=5, temperature=7.0)
    lelp = identity(tmp_path, method="lelp", num_subclasses=2)
    assert lelp["num_subclasses"] == 2 and lelp != identity(tmp_path, method="lelp", num_subclasses=5)
    # The search flags are not the run; the S and beta they chose are.
    assert "auto_hparams" not in lelp and "auto_keep" not in lelp


def test_the_cache_part_is_its_fingerprint_keys(tmp_path):
    cache = {key: f"value of {key}" for key in FINGERPRINT_KEYS}
    args = LELPConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    fingerprint = run_fingerprint(args, {}, cache, 10)
    recorded = {key.removeprefix("cache_") for key in fingerprint if key.startswith("cache_")}
    # The tokenizer is covered by the teacher and the data; markers never recorded it (older checkpoints resume).
    assert recorded == set(FINGERPRINT_KEYS) - {"tokenizer_sha256"}


def test_every_option_of_hf_lelp_makes_some_methods_runs_or_is_the_search():
    own = {f.name for f in dataclasses.fields(LELPConfig)} - {f.name for f in dataclasses.fields(TrainingArguments)}
    read = {"method"}
    for name in registered_methods():
        method = get_method(name)
        args = LELPConfig(output_dir="out", use_cpu=True, report_to="none", method=name)
        read |= set(method.option_values(args))
    assert {name for name in own - read if not name.startswith("auto_")} == set()


def test_the_resumable_recipe_flags_are_flags():
    flags = {f.name for arguments in (DataArguments, ModelArguments) for f in dataclasses.fields(arguments)}
    assert set(RESUMABLE_FLAGS) <= flags


def test_a_setting_an_older_checkpoint_recorded_that_no_longer_makes_the_run_does_not_refuse_it(tmp_path):
    current = identity(tmp_path, method="ce")
    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    mark_complete(str(folder), 4, {**current, "num_subclasses": 4})  # as markers before the registry identity
    check_resumable(str(folder), current)
    mark_complete(str(folder), 4, {**current, "learning_rate": 1.0})
    with pytest.raises(ValueError, match="learning_rate: checkpoint 1.0"):
        check_resumable(str(folder), current)
