"""The fit: null space, per-class PCA, rotation, standardised scores, save/load, and its errors."""

import numpy as np
import pytest
import torch

from conftest import synthetic_cache
from hf_lelp.cache.store import CacheMismatchError, CorruptCacheError
from hf_lelp.methods.projections import (
    FitOptions,
    SubclassProjections,
    fit_projections,
    load_or_fit_projections,
    random_rotation,
)


@pytest.fixture
def cache(tmp_path):
    return synthetic_cache(tmp_path / "cache", n=400, d=12, c=3)


def test_components_and_projection_are_orthogonal_to_the_teacher_head(cache):
    projections = fit_projections(cache, FitOptions(num_subclasses=4))
    weight = cache.weight.double()
    for c in range(3):
        assert (weight @ projections.components[c].double()).abs().max() < 1e-4
    hidden, _, _ = next(cache.iter_chunks())
    assert (projections.project(hidden).double() @ weight.T).abs().max() < 1e-3


def test_components_are_orthonormal(cache):
    projections = fit_projections(cache, FitOptions(num_subclasses=5))
    for c in range(3):
        gram = projections.components[c].T @ projections.components[c]
        torch.testing.assert_close(gram, torch.eye(5), atol=1e-5, rtol=0)


def test_span_equals_numpy_pca_of_projected_class_embeddings(cache):
    options = FitOptions(num_subclasses=3, rotate=True)
    projections = fit_projections(cache, options, chunk_size=37)  # many small chunks: the streaming path
    hidden = np.asarray(cache.hidden, dtype=np.float64)
    weight = cache.weight.double().numpy()
    null = np.eye(12) - weight.T @ np.linalg.inv(weight @ weight.T) @ weight
    for c in range(3):
        rows = hidden[np.asarray(cache.labels) == c] @ null
        centred = rows - rows.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        reference = vt[:3].T
        got = projections.components[c].double().numpy()
        # Same subspace: the rotation changes the basis, not the span.
        np.testing.assert_allclose(got @ got.T, reference @ reference.T, atol=1e-4)
        np.testing.assert_allclose(projections.means[c].numpy(), rows.mean(axis=0), atol=1e-4)


def test_scores_are_standardised_within_their_class(cache):
    projections = fit_projections(cache, FitOptions(num_subclasses=3))
    hidden, _, labels = next(cache.iter_chunks())
    scores = projections.scores(hidden)
    for c in range(3):
        own = scores[labels == c, c]
        torch.testing.assert_close(own.mean(dim=0), torch.zeros(3), atol=1e-4, rtol=0)
        torch.testing.assert_close(own.std(dim=0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_rotation_is_seeded_orthogonal_and_equalises_variance(cache):
    generator = torch.Generator().manual_seed(0)
    q = random_rotation(4, generator)
    torch.testing.assert_close(q.T @ q, torch.eye(4, dtype=torch.float64))
    a = fit_projections(cache, FitOptions(num_subclasses=3, seed=7))
    b = fit_projections(cache, FitOptions(num_subclasses=3, seed=7))
    c = fit_projections(cache, FitOptions(num_subclasses=3, seed=8))
    torch.testing.assert_close(a.components, b.components)
    assert not torch.allclose(a.components, c.components)
    unrotated = fit_projections(cache, FitOptions(num_subclasses=3, rotate=False))
    # Without rotation the variances are the (very unequal) eigenvalues; rotation mixes them.
    spread = lambda p: (p.scales.max(dim=1).values / p.scales.min(dim=1).values).mean()  # noqa: E731
    assert spread(a) < spread(unrotated)


def test_pca_ablation_keeps_directions_the_head_sees(cache):
    projections = fit_projections(cache, FitOptions(num_subclasses=2, null_space=False))
    assert projections.null_basis.numel() == 0
    assert (cache.weight @ projections.components[0]).abs().max() > 1e-2


@pytest.mark.bad_input
def test_d_smaller_than_c_plus_s_is_a_clear_error(cache):
    with pytest.raises(ValueError, match=r"D >= C \+ S.*at most 9"):
        fit_projections(cache, FitOptions(num_subclasses=10))


@pytest.mark.bad_input
def test_class_with_too_few_examples_is_a_clear_error(tmp_path):
    small = synthetic_cache(tmp_path / "small", n=9, d=12, c=3)  # 3 examples per class
    with pytest.raises(ValueError, match=r"fewer than S \+ 1 = 4 examples.*class_0': 3"):
        fit_projections(small, FitOptions(num_subclasses=3))


@pytest.mark.bad_input
def test_unlabelled_transfer_set_needs_grouping_by_prediction(tmp_path):
    cache = synthetic_cache(tmp_path / "unlabelled", n=200, d=12, c=2, unlabelled=True)
    with pytest.raises(ValueError, match="grouping='prediction'"):
        fit_projections(cache, FitOptions(num_subclasses=2, grouping="label"))
    projections = fit_projections(cache, FitOptions(num_subclasses=2, grouping="prediction"))
    predicted = np.asarray(cache.logits).argmax(axis=1)
    assert projections.info["class_counts"] == {
        "class_0": int((predicted == 0).sum()),
        "class_1": int((predicted == 1).sum()),
    }


@pytest.mark.fault
def test_save_load_roundtrip_reuse_and_refusals(cache, tmp_path):
    options = FitOptions(num_subclasses=3)
    path = str(tmp_path / "proj.safetensors")
    fitted = load_or_fit_projections(cache, options, path)
    loaded = SubclassProjections.load(path, cache.fingerprint)
    torch.testing.assert_close(loaded.components, fitted.components)
    assert load_or_fit_projections(cache, options, path).options == options
    with pytest.raises(CacheMismatchError, match="fitted with"):
        load_or_fit_projections(cache, FitOptions(num_subclasses=2), path)
    other = dict(cache.fingerprint, dataset_sha256="f" * 64)
    with pytest.raises(CacheMismatchError, match="dataset_sha256"):
        SubclassProjections.load(path, other)
    with open(path, "r+b") as handle:  # flip one byte
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CorruptCacheError, match="corrupt"):
        SubclassProjections.load(path)
