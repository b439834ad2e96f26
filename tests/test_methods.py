"""Every method by name: its loss against a hand-computed value, its subclass source, and a training run from the
cache alone (no teacher model anywhere). The matrix iterates over the method registry: a new method is in it."""

import json
import math
import os
import re

import numpy as np
import pytest
import torch
from transformers import default_data_collator

from benchmarks.harness.embedding_student import embedding_student
from conftest import ROOT, synthetic_cache
from hf_lelp import LELPConfig
from hf_lelp.methods.losses import (
    fitnet_loss,
    kd_loss,
    lelp_loss,
    lelp_targets,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
)
from hf_lelp.methods.projections import FitOptions, fit_projections
from hf_lelp.methods.registry import (
    BUILTIN_METHODS,
    Method,
    get_method,
    register_method,
    registered_methods,
    unregister_method,
)
from hf_lelp.methods.sources import SubclassInputs
from hf_lelp.methods.subclasses import fit_kmeans_subclasses, oracle_subclasses
from hf_lelp.methods.terms import LossInputs, feature_regressor
from hf_lelp.training.trainer import method_trainer


def test_fitnet_hand_value():
    # ((1 - 0)² + (2 - 0)²) / 2 elements = 2.5
    assert fitnet_loss(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2)).item() == pytest.approx(2.5)


def test_rkd_distance_hand_value():
    # Student 1-D points 0,1,2 -> distances (1,2,1)/mean 4/3 = (.75,1.5,.75); teacher 0,1,3 -> (1,3,2)/2 =
    # (.5,1.5,1). Differences ±.25 and 0, Huber .5·d² -> 2·(2·.03125)/6 entries.
    student, teacher = torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([[0.0], [1.0], [3.0]])
    assert rkd_distance_loss(student, teacher).item() == pytest.approx(0.125 / 6, abs=1e-6)


def test_rkd_angle_hand_value():
    # Right triangle vs collinear points: the six proper triplet cosines differ by -1, 1 + 1/√2 and 1/√2 - 1
    # (each twice); Huber gives 0.5, 1/√2 + 0.5 and 0.5·(1 - 1/√2)², which add to 1.75; 2·1.75 over 27 entries.
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert rkd_angle_loss(student, teacher).item() == pytest.approx(3.5 / 27, abs=1e-5)


def test_rkd_is_invariant_to_teacher_scale_and_rotation():
    student = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(1)))[0]
    assert rkd_loss(student, 3.0 * student @ rotation).item() == pytest.approx(0.0, abs=1e-5)
    assert rkd_loss(student, torch.randn(6, 4)).item() > 0.01


def test_pkt_hand_value():
    # Student cosines [[1,0],[0,1]] -> rows (2/3, 1/3); teacher all 1 -> rows (1/2, 1/2);
    # KL per row = .5 ln(.75) + .5 ln(1.5) = .5 ln 1.125.
    student, teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert pkt_loss(student, teacher).item() == pytest.approx(0.5 * math.log(1.125), abs=1e-5)


def test_ensemble_loss_is_the_mean_of_member_losses():
    generator = torch.Generator().manual_seed(3)
    b, c, s, k = 5, 3, 2, 3
    scores, teacher = torch.randn(b, c, k * s, generator=generator), torch.randn(b, c, generator=generator)
    class_logits, subclass_logits = torch.randn(b, c, generator=generator), torch.randn(b, c * k * s)
    targets = lelp_targets(scores, teacher, 2.0, 0.5, num_members=k)
    torch.testing.assert_close(targets.sum(dim=(1, 2)), torch.ones(b))
    ensemble = lelp_loss(class_logits, subclass_logits, targets, 2.0, num_members=k)
    members = []
    grouped_logits = subclass_logits.view(b, c, k, s)
    for m in range(k):
        member_targets = lelp_targets(scores[:, :, m * s : (m + 1) * s], teacher, 2.0, 0.5)
        members.append(lelp_loss(class_logits, grouped_logits[:, :, m].reshape(b, -1), member_targets, 2.0))
    torch.testing.assert_close(ensemble, torch.stack(members).mean())


def test_random_directions_are_orthonormal_per_member_and_in_the_null_space(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=200, d=12, c=3)
    projections = fit_projections(cache, FitOptions(num_subclasses=2, directions="random", num_members=3))
    assert projections.components.shape == (3, 12, 6)
    for k in range(3):
        directions = projections.components[k].double()
        assert (cache.weight.double() @ directions).abs().max() < 1e-4  # W cannot see them
        for m in range(3):
            block = directions[:, 2 * m : 2 * m + 2]
            torch.testing.assert_close(block.T @ block, torch.eye(2, dtype=torch.float64), atol=1e-5, rtol=0)
    pca = fit_projections(cache, FitOptions(num_subclasses=2))
    assert not torch.allclose(pca.components, projections.components[:, :, :2])


def test_pca_ablation_keeps_the_directions_the_head_can_see(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=300, d=8, c=2)
    plain = fit_projections(cache, FitOptions(num_subclasses=2, null_space=False, rotate=False))
    assert plain.info["null_space_dim"] == 8
    assert (cache.weight @ plain.components[0]).abs().max() > 1e-2


def test_kmeans_recovers_planted_clusters(tmp_path):
    from hf_lelp.cache.writer import write_cache

    generator = torch.Generator().manual_seed(0)
    n, d = 400, 6
    labels = torch.arange(n) % 2
    cluster = (torch.arange(n) // 2) % 2  # two clusters inside each class, far apart along axis 3
    hidden = torch.randn(n, d, generator=generator) * 0.1
    hidden[:, 0] += labels * 4.0
    hidden[:, 3] += cluster * 5.0
    weight = torch.zeros(2, d)
    weight[0, 0], weight[1, 0] = -1.0, 1.0  # the head sees axis 0 only
    from conftest import synthetic_fingerprint

    fingerprint = synthetic_fingerprint(num_examples=n, label_names=["a", "b"])
    cache = write_cache(str(tmp_path / "c"), hidden, hidden @ weight.T, labels, weight, torch.zeros(2), fingerprint)
    kmeans = fit_kmeans_subclasses(cache, num_subclasses=2)
    scores = kmeans.subclass_scores(hidden)
    assignment = scores[torch.arange(n), labels].argmax(dim=1)
    for k in range(2):
        rows = labels == k
        agreement = (assignment[rows] == cluster[rows]).float().mean().item()
        assert max(agreement, 1 - agreement) == 1.0
    with pytest.raises(ValueError, match="fewer than S \\+ 1"):
        fit_kmeans_subclasses(cache, num_subclasses=250)


def test_oracle_scores_one_hot_on_own_class_uniform_elsewhere():
    oracle = oracle_subclasses([10, 11, 12, 13], [0, 0, 1, 1], ["x", "y", "z", "z"], num_labels=2)
    assert oracle.fine_names == [["x", "y"], ["z"]]
    scores = oracle.subclass_scores(torch.zeros(2, 3), torch.tensor([11, 13]))
    targets = lelp_targets(scores, torch.tensor([[0.0, 0.0], [0.0, 0.0]]), 1.0, 1.0)
    # Example 11: class 0, fine "y": (0, .5) in class 0; class 1 has one fine label "z" and a padding slot.
    torch.testing.assert_close(targets[0], torch.tensor([[0.0, 0.5], [0.5, 0.0]]))
    # Example 13: class 1, fine "z"; in class 0 (not its class) the mass is uniform over x and y.
    torch.testing.assert_close(targets[1], torch.tensor([[0.25, 0.25], [0.5, 0.0]]))
    with pytest.raises(KeyError, match="fine-label table"):
        oracle.subclass_scores(torch.zeros(1, 3), torch.tensor([99]))


def test_s_equals_one_kmeans_and_random_reduce_to_kd(tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=120, d=10, c=3)
    hidden, teacher = cache.lookup(np.arange(8))
    student_logits = torch.randn(8, 3)
    kd = kd_loss(student_logits, teacher, 2.0)
    for source in (
        fit_kmeans_subclasses(cache, num_subclasses=1),
        fit_projections(cache, FitOptions(num_subclasses=1, directions="random")),
    ):
        targets = lelp_targets(source.subclass_scores(hidden, np.arange(8)), teacher, 2.0, 1.0)
        torch.testing.assert_close(lelp_loss(student_logits, None, targets, 2.0), kd)


def test_config_maps_ablation_names_onto_fit_options(tmp_path):
    base = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, num_subclasses=3)

    def options(args):
        return args.method_spec.fit_options(args)

    assert not options(LELPConfig(method="pca", **base)).null_space
    assert not options(LELPConfig(method="no_rotation", **base)).rotate
    assert options(LELPConfig(method="random", **base)).directions == "random"
    ensemble = LELPConfig(method="random_ensemble", ensemble_size=5, **base)
    assert options(ensemble).num_members == 5 and ensemble.method_spec.num_members(ensemble) == 5
    with pytest.raises(ValueError, match="--method must be one of"):
        LELPConfig(method="dkd", **base)


def _subclasses(cache, args):
    """The method's pseudo-subclass source, as its registry entry builds it (fine labels for the oracle)."""
    recipe = args.method_spec.subclass_source
    if recipe is None:
        return None
    labels = np.asarray(cache.labels)
    fine = {int(i): f"{y}-{(k // 3) % 2}" for k, (i, y) in enumerate(zip(np.asarray(cache.example_ids), labels))}
    return recipe(SubclassInputs(cache, args, fine_labels=fine))


def _train_from_cache(method, tmp_path, **options):
    """Train an MLP student with `method` from a synthetic cache; returns (trainer, weights before training)."""
    cache = synthetic_cache(tmp_path / "cache", n=96, d=16, c=3)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(96, 8)).astype(np.float32) + np.asarray(cache.labels)[:, None]
    import datasets

    train = datasets.Dataset.from_dict(
        {"features": features.tolist(), "labels": np.asarray(cache.labels), "example_id": np.arange(96)}
    )
    settings = dict(num_subclasses=2, ensemble_size=2, per_device_train_batch_size=16, num_train_epochs=2)
    args = LELPConfig(
        output_dir=str(tmp_path / "out"),
        method=method,
        learning_rate=3e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
        **{**settings, **options},
    )
    model = embedding_student(8, ["class_0", "class_1", "class_2"], hidden_size=16)
    source = _subclasses(cache, args)
    trainer = method_trainer(model, args, cache, source, train, 3, data_collator=default_data_collator)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    return trainer, before


@pytest.mark.parametrize("method", registered_methods())
def test_every_method_trains_from_the_cache_alone(method, tmp_path):
    trainer, before = _train_from_cache(method, tmp_path)
    model, spec = trainer.model, get_method(method)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert any("classifier" in k for k in changed)
    if feature_regressor in spec.training_modules:  # fitnet
        assert any("lelp_feature_regressor" in k for k in changed)
    if spec.subclass_source is not None:
        assert any("lelp_subclass_head" in k for k in changed)


@pytest.mark.parametrize("method", ["ce", "kd", "lelp"])
def test_a_run_records_and_shows_only_the_options_its_method_reads(method, tmp_path):
    """Issue 21: a `ce` run neither records nor shows S, β, τ; the card describes its method from the registry."""
    trainer, _ = _train_from_cache(method, tmp_path, max_steps=1)
    meta = trainer.lelp_metadata()
    spec = get_method(method)
    assert ("num_subclasses" in meta) == ("subclass_temperature" in meta) == (spec.subclass_source is not None)
    assert ("temperature" in meta) == spec.uses_teacher
    assert meta["method"] == method and "hard_label_weight" in meta
    trainer.write_card(str(tmp_path / "card"))
    card = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    hyperparameters = next(line for line in card.splitlines() if line.startswith("- Hyperparameters:"))
    assert ("S = " in hyperparameters) == (spec.subclass_source is not None)
    assert ("τ (temperature)" in card) == spec.uses_teacher
    assert ("arXiv 2409.20449" in card.split("## How to use")[0]) == bool(spec.paper)
    if spec.description:
        assert spec.describe(meta, 3) in card.replace("\n  ", " ").replace("\n", " ")


def test_the_methods_by_kind():
    methods = BUILTIN_METHODS
    assert tuple(m for m in methods if get_method(m).subclass_source is not None) == (
        "lelp",
        "pca",
        "no_rotation",
        "random",
        "random_ensemble",
        "kmeans",
        "oracle",
    )
    assert [m for m in methods if get_method(m).feature_loss is not None] == ["fitnet", "rkd", "pkt"]
    assert [m for m in methods if not get_method(m).uses_teacher] == ["ce"]
    assert [m for m in methods if get_method(m).needs_labels] == ["oracle", "ce"]


def _method_choices():
    from transformers import HfArgumentParser

    action = next(a for a in HfArgumentParser(LELPConfig)._actions if a.dest == "method")
    return tuple(action.choices), action.help


def _kd_on_the_teacher_temperature_only(batch: LossInputs, args) -> torch.Tensor:
    # A toy KD variant: the teacher is softened by τ, the student is not (and no τ² scaling).
    return kd_loss(batch.class_logits * args.temperature, batch.teacher_logits, args.temperature, False)


def test_a_method_registered_in_a_test_trains_and_is_a_cli_choice(tmp_path):
    toy = Method(
        name="toy_kd",
        help="KD with the temperature on the teacher only",
        loss=_kd_on_the_teacher_temperature_only,
        search={"temperature": (2.0, 4.0)},
    )
    register_method(toy)
    try:
        choices, help_text = _method_choices()
        assert "toy_kd" in choices and "'toy_kd': KD with the temperature on the teacher only" in help_text
        with pytest.raises(ValueError, match="already registered"):
            register_method(toy)
        trainer, before = _train_from_cache("toy_kd", tmp_path, temperature=2.0)
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        assert losses and all(math.isfinite(loss) for loss in losses)
        assert not any("lelp_" in k for k in before)  # no subclass head, no regressor: the entry lists none
        assert get_method("toy_kd").search_grid({"learning_rate": 1e-3, "temperature": 1.0}) == [
            {"learning_rate": 1e-3, "temperature": 2.0},
            {"learning_rate": 1e-3, "temperature": 4.0},
        ]
    finally:
        unregister_method("toy_kd")
    assert "toy_kd" not in _method_choices()[0] and _method_choices()[0] == BUILTIN_METHODS
    with pytest.raises(ValueError, match="--method must be one of"):
        LELPConfig(output_dir=str(tmp_path), method="toy_kd", report_to="none", use_cpu=True)


def test_the_readme_methods_table_lists_exactly_the_registered_methods():
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Methods, baselines and ablations", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert sorted(rows) == sorted(BUILTIN_METHODS) and len(rows) == len(set(rows))


def test_search_grids_are_the_benchmarks():
    # The staged grids of the benchmark before the registry (learning rate and τ of stage two come from KD's best).
    lrs, taus, subclass = (1e-3, 3e-3), (1.0, 2.0, 4.0), [(s, b) for s in (2, 4, 8) for b in (0.5, 1.0, 2.0)]
    assert get_method("ce").search_grid() == [{"learning_rate": lr} for lr in lrs]
    assert get_method("kd").search_grid() == [{"learning_rate": lr, "temperature": t} for lr in lrs for t in taus]
    anchor = {"learning_rate": 3e-3, "temperature": 2.0, "seed": 0}
    base = {"learning_rate": 3e-3, "temperature": 2.0}
    for name in ("fitnet", "rkd", "pkt"):
        grid = get_method(name).search_grid(anchor, unlabelled=True)
        assert grid == [{**base, "feature_loss_weight": w} for w in (0.1, 1.0, 10.0)]
    for name in ("lelp", "pca", "no_rotation", "random", "kmeans"):
        assert get_method(name).search_grid(anchor) == [
            {**base, "num_subclasses": s, "subclass_temperature": b} for s, b in subclass
        ]
    ensemble = get_method("random_ensemble").search_grid(anchor, unlabelled=True)
    assert ensemble == [
        {**base, "grouping": "prediction", "ensemble_size": 4, "num_subclasses": s, "subclass_temperature": b}
        for s, b in subclass
    ]
    assert get_method("oracle").search_grid(anchor) == [{**base, "subclass_temperature": 1.0}]
    smoke = {"num_subclasses": (2,), "subclass_temperature": (1.0,), "ensemble_size": (2,)}
    assert get_method("random_ensemble").search_grid(anchor, smoke) == [
        {**base, "ensemble_size": 2, "num_subclasses": 2, "subclass_temperature": 1.0}
    ]
    with pytest.raises(ValueError, match="tuned from kd's best"):
        get_method("lelp").search_grid()


def test_a_random_ensemble_records_s_and_k_apart(tmp_path):
    trainer, _ = _train_from_cache("random_ensemble", tmp_path, num_subclasses=2, ensemble_size=4, num_train_epochs=1)
    source = trainer.projections
    assert (source.num_subclasses, source.num_members, source.columns) == (2, 4, 8)
    head = trainer.model.lelp_subclass_head
    assert head.out_features == 3 * 2 * 4  # C·S·K
    trainer.save_model(str(tmp_path / "saved"))
    saved = json.loads((tmp_path / "saved" / "lelp_config.json").read_text())
    assert (saved["num_subclasses"], saved["ensemble_size"]) == (2, 4)
    static = {
        "base_model": "mlp",
        "student_num_layers": None,
        "dataset": "synthetic",
        "dataset_hub_id": None,
        "dataset_description": "synthetic",
        "label_names": ["class_0", "class_1", "class_2"],
        "split_sizes": {"train": 96},
        "teacher": "teacher",
        "teacher_eval": None,
        "eval_split": "test",
        "max_length": 8,
        "baselines": [],
        "peft": False,
        "auto_hparams": None,
        "split_roles": None,
    }
    trainer.card_context = static
    trainer.write_card(str(tmp_path))
    card = (tmp_path / "README.md").read_text()
    assert "S = 2 pseudo-subclasses per class in each of\n  K = 4 ensemble members (8 subclass logits" in card
    # What the ablation really switched off is recorded, not the flag it overrides.
    pca, _ = _train_from_cache("pca", tmp_path / "pca", num_train_epochs=1)
    assert pca.lelp_metadata()["null_space"] is False and pca.lelp_metadata()["num_subclasses"] == 2
    assert "ensemble_size" not in pca.lelp_metadata()


def test_the_workflow_builds_each_source_as_its_entry_says(tmp_path):
    import datasets

    from hf_lelp.data.columns import FINE_LABEL
    from hf_lelp.data.load import TextClassificationData
    from hf_lelp.training.arguments import ModelArguments
    from hf_lelp.training.builder import build_subclasses

    cache = synthetic_cache(tmp_path / "cache", n=60, d=16, c=3)
    ids, labels = np.asarray(cache.example_ids), np.asarray(cache.labels)
    rows = {
        "example_id": ids,
        "text": ["t"] * 60,
        "label": labels,
        FINE_LABEL: [f"{y}-{i % 2}" for i, y in enumerate(labels)],
    }
    train = datasets.Dataset.from_dict(rows).select(range(59, -1, -1))  # another order than the cache's: by id
    data = TextClassificationData(datasets.DatasetDict(train=train), ["a", "b", "c"], "synthetic")
    base = dict(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, num_subclasses=2)
    oracle = build_subclasses(cache, data, ModelArguments(), LELPConfig(method="oracle", **base))
    assert oracle.fine_names == [["0-0", "0-1"], ["1-0", "1-1"], ["2-0", "2-1"]]
    assert (oracle.num_subclasses, oracle.num_members, oracle.columns) == (2, 1, 2)
    no_fine = TextClassificationData(
        datasets.DatasetDict(train=train.remove_columns(FINE_LABEL)), ["a", "b", "c"], "x"
    )
    with pytest.raises(ValueError, match="needs known fine labels"):
        build_subclasses(cache, no_fine, ModelArguments(), LELPConfig(method="oracle", **base))
    # Projections are kept beside the cache and reused; k-means is fitted in place.
    ensemble = LELPConfig(method="random_ensemble", ensemble_size=3, **base)
    fitted = build_subclasses(cache, data, ModelArguments(), ensemble)
    saved = [f for f in os.listdir(cache.path) if f.startswith("projections-S2-") and f.endswith(".safetensors")]
    assert saved == ["projections-S2-label-null-rot-random3-seed0.safetensors"]
    reused = build_subclasses(cache, data, ModelArguments(), ensemble)
    torch.testing.assert_close(reused.components, fitted.components)
    assert (reused.num_subclasses, reused.num_members, reused.columns) == (2, 3, 6)
    kmeans = build_subclasses(cache, data, ModelArguments(), LELPConfig(method="kmeans", **base))
    assert kmeans.centroids.shape == (3, 2, 16)
