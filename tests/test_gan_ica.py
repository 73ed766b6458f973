"""GAN-ICA: the signals data, column shuffling, the model's encode and errors, and a smoke run of ``ppzoo run gan_ica``."""

import numpy as np
import pytest

import ppzoo
from ppzoo.data import signals
from ppzoo.models import gan_ica
from ppzoo.models.factor_vae import permute_dims


@pytest.mark.parametrize("mixing", ["linear", "pnl", "mlp"])
def test_signals_are_the_papers_task(mixing):
    ds = ppzoo.data.load("signals", mixing=mixing, seed=3)
    x, s = ds.data["x"], ds.truth["sources"]
    assert x.shape == (3500, 6) and s.shape == (3500, 6) and ds.truth["heldout_x"].shape == (500, 6)
    every = np.concatenate([ds.truth["heldout_sources"], s])
    np.testing.assert_allclose(every.mean(0), 0.0, atol=1e-9)
    np.testing.assert_allclose(every.std(0), 1.0, atol=1e-9)
    a = ds.truth["mixing"]
    assert np.all(np.abs(a) <= 0.5)
    expected = {"linear": lambda v: v @ a.T, "pnl": lambda v: np.tanh(v @ a.T),
                "mlp": lambda v: np.tanh(np.tanh(v @ a.T) @ ds.truth.get("mixing2", a).T)}[mixing]
    np.testing.assert_allclose(x, expected(s), atol=1e-6)
    np.testing.assert_allclose(ds.truth["heldout_x"], expected(ds.truth["heldout_sources"]), atol=1e-6)


def test_signal_frequencies():
    # The deterministic sources at their frequencies: the spectrum's peak of the 800 Hz and 90 Hz sines.
    s = signals.sources(np.random.default_rng(0))
    freqs = np.fft.rfftfreq(len(s), 1 / signals.RATE_HZ)
    for column, hz in ((1, 800), (3, 90)):
        assert abs(freqs[np.argmax(np.abs(np.fft.rfft(s[:, column])))] - hz) <= 2.5  # resolution 10000 / 4000
    assert set(np.unique(np.sign(s[:, 0]))) == {-1.0, 1.0}  # the square wave


def test_signals_errors():
    with pytest.raises(ValueError, match="`mixing` must be one of 'linear', 'pnl', 'mlp'; got 'relu'"):
        ppzoo.data.load("signals", mixing="relu")


def test_shuffling_columns_gives_independent_marginals():
    # Correlated input (rho = 0.9): shuffling each column across rows keeps every marginal exactly and removes
    # the dependence: the sample correlation of independent columns has sd 1 / sqrt(N) = 0.016; 4 sd = 0.063.
    rng = np.random.default_rng(0)
    n = 4000
    a = rng.standard_normal(n)
    z = np.stack([a, 0.9 * a + np.sqrt(1 - 0.81) * rng.standard_normal(n), a**2], axis=1).astype(np.float32)
    shuffled = np.asarray(permute_dims(__import__("jax").random.key(0), z))
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), np.sort(z, axis=0))
    assert np.corrcoef(z.T)[0, 1] > 0.85
    corr = np.corrcoef(shuffled.T)
    assert np.all(np.abs(corr[np.triu_indices(3, 1)]) < 4 / np.sqrt(n))
    # Also a dependence that is not a correlation: a and a^2 (uncorrelated, dependent) become independent.
    assert abs(np.corrcoef(np.abs(shuffled[:, 0]), shuffled[:, 2])[0, 1]) < 4 / np.sqrt(n)
    assert np.corrcoef(np.abs(z[:, 0]), z[:, 2])[0, 1] > 0.5


@pytest.fixture(scope="module")
def tiny_fit():
    ds = ppzoo.data.load("signals", mixing="pnl", seed=0)
    model = ppzoo.models.get("gan_ica", encoder="pnl", hidden=(4,), discriminator_hidden=(8,))
    fit = ppzoo.fit(model, {"x": ds.data["x"][:100]}, engine="svi", seed=0, steps=5, num_draws=2, learning_rate=1e-3,
                    chunk_size=5)
    return fit, ds


def test_encode_gives_standardised_sources_of_new_rows(tiny_fit):
    fit, ds = tiny_fit
    z = np.asarray(gan_ica.encode(fit.model, fit.params, ds.truth["heldout_x"]))
    assert z.shape == (500, 6) and np.all(np.isfinite(z))
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    # The discriminator trained alongside: its state is returned, with a finite loss.
    assert np.isfinite(float(fit.params["discriminator$state"].loss))
    np.testing.assert_allclose(gan_ica.encode(fit.model.config, fit.params, ds.truth["heldout_x"]), z)


def test_encode_and_model_errors(tiny_fit):
    fit, ds = tiny_fit
    with pytest.raises(ValueError, match="lacks 'encoder\\$params'"):
        gan_ica.encode(fit.model, {}, ds.truth["heldout_x"])
    with pytest.raises(ValueError, match=r"shape \(num_data, num_observed\); got shape \(500,\)"):
        gan_ica.encode(fit.model, fit.params, ds.truth["heldout_x"][:, 0])
    with pytest.raises(TypeError, match="gan_ica model or its GANICAConfig"):
        gan_ica.encode(ppzoo.models.get("ica"), fit.params, ds.truth["heldout_x"])
    with pytest.raises(ValueError, match="num_observed=4; set num_observed=6"):
        ppzoo.fit(ppzoo.models.get("gan_ica", num_observed=4), ds.data, engine="svi", steps=1)
    with pytest.raises(ValueError, match="GANICAConfig.encoder must be one of 'linear', 'pnl', 'mlp'"):
        ppzoo.models.get("gan_ica", encoder="conv")


def test_case_study_smoke(tmp_path):
    import pandas as pd

    from ppzoo.case_studies import gan_ica as study

    out = study.main(["--seeds", "1", "--mixings", "pnl", "--methods", "GAN-ICA,FastICA", "--steps", "10",
                      "--train-rows", "200", "--out", str(tmp_path / "report")])
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns) == ["model", "mixing", "seed", "mcc"]
    assert set(frame["model"]) == {"GAN-ICA", "FastICA"} and set(frame["mixing"]) == {"pnl"}
    assert frame["mcc"].between(0, 1).all()
    page = (out / "index.html").read_text()
    assert "Held-out MCC" in page and "PNL mixing: GAN-ICA" in page
    with pytest.raises(SystemExit):
        study.parse_args(["--mixings", "relu"])
