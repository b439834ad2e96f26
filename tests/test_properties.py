"""Property-based checks of the fit and the targets over random shapes (hypothesis)."""

import tempfile

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import synthetic_cache
from hf_lelp.methods.losses import lelp_targets
from hf_lelp.methods.projections import FitOptions, fit_projections

shapes = st.tuples(st.integers(2, 5), st.integers(1, 4), st.integers(0, 6), st.integers(0, 3)).map(
    lambda t: {"c": t[0], "s": t[1], "d": t[0] + t[1] + t[2], "per_class": t[1] + 1 + 3 * t[3], "seed": t[2]}
)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, tau=st.floats(0.5, 4.0), beta=st.floats(0.2, 3.0))
def test_fit_and_targets_properties(shape, tau, beta):
    c, s, d = shape["c"], shape["s"], shape["d"]
    with tempfile.TemporaryDirectory() as folder:
        cache = synthetic_cache(folder, n=c * shape["per_class"], d=d, c=c, seed=shape["seed"])
        hidden, logits, _ = next(cache.iter_chunks())
        rotated = fit_projections(cache, FitOptions(num_subclasses=s, seed=1))
        other = fit_projections(cache, FitOptions(num_subclasses=s, seed=2))
        weight = cache.weight.double()
    for k in range(c):
        v = rotated.components[k].double()
        # orthonormal directions, orthogonal to every row of the teacher head
        torch.testing.assert_close(v.T @ v, torch.eye(s, dtype=torch.float64), atol=1e-4, rtol=0)
        assert (weight @ v).abs().max() < 1e-3 * (1 + weight.abs().max())
    targets = lelp_targets(rotated.scores(hidden), logits, tau, beta)
    assert torch.isfinite(targets).all() and (targets >= 0).all()
    torch.testing.assert_close(targets.sum(dim=(1, 2)), torch.ones(len(hidden)), atol=1e-5, rtol=0)
    # The class marginals are the teacher's, whatever the rotation: rotating only re-splits inside a class.
    class_probs = torch.softmax(logits / tau, dim=-1)
    torch.testing.assert_close(targets.sum(dim=2), class_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        lelp_targets(other.scores(hidden), logits, tau, beta).sum(dim=2), class_probs, atol=1e-5, rtol=0
    )
