"""Tests of scikit-learn's bundled 8 x 8 digits loader."""

import numpy as np
import pytest

from ppzoo.data import digits
from ppzoo.data._dataset import Dataset


def test_digits_shapes_scaling_and_labels():
    ds = digits.load()
    assert isinstance(ds, Dataset) and ds.name == "digits"
    x, label = ds.data["x"], ds.truth["label"]
    assert x.shape == (1797, 8, 8) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    # 17 grey levels 0..16 divided by 16.
    np.testing.assert_array_equal(np.unique(x * 16), np.arange(17))
    assert label.shape == (1797,) and np.issubdtype(label.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(label) > 170, True)  # each class has ~180 images
    assert "not a generative factor" in ds.info["label"]


def test_digits_binarize_and_seed():
    grey = digits.load()
    binary = digits.load(binarize=True)
    np.testing.assert_array_equal(binary.data["x"], (grey.data["x"] > 0.5).astype(np.float32))
    assert set(np.unique(binary.data["x"])) == {0.0, 1.0}
    # The data are fixed: the seed is recorded but does not change them.
    np.testing.assert_array_equal(digits.load(seed=5).data["x"], grey.data["x"])
    assert digits.load(seed=5).info["seed"] == 5


def test_digits_through_the_registry():
    import ppzoo.data

    assert ppzoo.data.load("digits", binarize=True).data["x"].shape == (1797, 8, 8)


def test_digits_bad_binarize():
    with pytest.raises(TypeError, match="`binarize` must be True or False"):
        digits.load(binarize="yes")
