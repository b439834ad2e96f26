"""Every method by name: its loss against a hand-computed value, its subclass source, and a training run from the
cache alone (no teacher model anywhere)."""

import math

import numpy as np
import pytest
import torch
from transformers import default_data_collator

from conftest import synthetic_cache
from hf_lelp import LELPConfig, LELPTrainer
from hf_lelp.config import METHODS, SUBCLASS_METHODS
from hf_lelp.embedding_student import embedding_student
from hf_lelp.losses import (
    fitnet_loss,
    kd_loss,
    lelp_loss,
    lelp_targets,
    pkt_loss,
    rkd_angle_loss,
    rkd_distance_loss,
    rkd_loss,
)
from hf_lelp.projections import FitOptions, fit_projections
from hf_lelp.subclasses import fit_kmeans_subclasses, oracle_subclasses
from hf_lelp.workflow import attach_training_modules


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
    from hf_lelp.cache import write_cache

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
    assert not LELPConfig(method="pca", **base).fit_options().null_space
    assert not LELPConfig(method="no_rotation", **base).fit_options().rotate
    assert LELPConfig(method="random", **base).fit_options().directions == "random"
    ensemble = LELPConfig(method="random_ensemble", ensemble_size=5, **base)
    assert ensemble.fit_options().num_members == 5 and ensemble.subclass_columns == 15
    with pytest.raises(ValueError, match="--method must be one of"):
        LELPConfig(method="dkd", **base)


def _subclass_source(method, cache, args):
    if method == "kmeans":
        return fit_kmeans_subclasses(cache, args.num_subclasses)
    if method == "oracle":
        labels = np.asarray(cache.labels)
        fine = [f"{y}-{(i // 3) % 2}" for i, y in enumerate(labels)]
        return oracle_subclasses(np.asarray(cache.example_ids), labels, fine, cache.num_labels)
    return fit_projections(cache, args.fit_options())


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_from_the_cache_alone(method, tmp_path):
    cache = synthetic_cache(tmp_path / "cache", n=96, d=16, c=3)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(96, 8)).astype(np.float32) + np.asarray(cache.labels)[:, None]
    import datasets

    train = datasets.Dataset.from_dict(
        {"features": features.tolist(), "labels": np.asarray(cache.labels), "example_id": np.arange(96)}
    )
    args = LELPConfig(
        output_dir=str(tmp_path / "out"),
        method=method,
        num_subclasses=2,
        ensemble_size=2,
        per_device_train_batch_size=16,
        num_train_epochs=2,
        learning_rate=3e-3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        disable_tqdm=True,
    )
    model = embedding_student(8, ["class_0", "class_1", "class_2"], hidden_size=16)
    source = _subclass_source(method, cache, args) if method in SUBCLASS_METHODS else None
    attach_training_modules(model, 3, args, source, cache.hidden_size)
    trainer = LELPTrainer(
        model=model,
        args=args,
        teacher_cache=cache if method != "ce" else None,
        projections=source,
        train_dataset=train,
        data_collator=default_data_collator,
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert any("classifier" in k for k in changed)
    if method == "fitnet":
        assert any("lelp_feature_regressor" in k for k in changed)
    if method in SUBCLASS_METHODS:
        assert any("lelp_subclass_head" in k for k in changed)
