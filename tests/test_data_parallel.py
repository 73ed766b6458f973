"""SVI data parallel over CPU host devices: the same fit as on one device, up to float32 reduction order."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import ppzoo


def _max_relative_difference(a, b):
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)) / (np.abs(np.asarray(x)) + 1e-3))) for x, y in pairs)


@pytest.mark.parametrize("name,config,data", [
    ("ica", {"num_sources": 2}, "ica"),
    ("beta_vae", {"network": "mlp", "mlp_hidden": (16,), "latent_dim": 2, "batch_size": 8}, "images"),
])
def test_two_devices_give_the_single_device_fit(name, config, data):
    assert jax.local_device_count() >= 2, "ppzoo creates at least 4 CPU host devices at import"
    if data == "ica":
        arrays = dict(ppzoo.data.load("linear_ica", num_data=400, num_sources=2, seed=0).data)
    else:
        arrays = {"x": (np.random.default_rng(0).random((32, 8, 8)) < 0.3).astype(np.float32)}
    model = ppzoo.models.get(name, **config)
    one = ppzoo.fit(model, arrays, engine="svi", seed=0, steps=100, num_draws=5)
    two = ppzoo.fit(model, arrays, engine="svi", seed=0, steps=100, num_draws=5, data_devices=2)
    # Same seed, same steps: only the order of float32 sums differs (measured: 2e-7 relative on ICA).
    # 1e-4 leaves room for 100 steps of Adam amplifying rounding, and is far below any real difference.
    assert _max_relative_difference(one.params, two.params) < 1e-4
    np.testing.assert_allclose(one.losses, two.losses, rtol=1e-4)


def test_data_devices_errors():
    data = dict(ppzoo.data.load("linear_ica", num_data=201, num_sources=2, seed=0).data)
    model = ppzoo.models.get("ica", num_sources=2)
    with pytest.raises(ValueError, match="data `x` has 201 rows.*not a multiple of 2"):
        ppzoo.fit(model, data, engine="svi", steps=10, data_devices=2)
    with pytest.raises(ValueError, match="only .* device"):
        ppzoo.fit(model, data, engine="svi", steps=10, data_devices=10_000)
    with pytest.raises(ValueError, match="positive integer"):
        ppzoo.fit(model, data, engine="svi", steps=10, data_devices=0)
