"""Tests of the disentanglement metrics: perfect, useless and degenerate representations, closed forms.

The array metrics get four discrete factors of sizes (3, 5, 8, 8), small enough that each value falls in
its own one of the 20 code bins, so a perfect code has mutual information equal to the factor's entropy.
Representations:

* perfect: the factors themselves;
* noise: standard normal codes independent of the factors;
* degenerate: factor 0 copied into every code dimension.

The oracle metrics get an identity oracle whose "images" are the factor indices (disentanglement_lib's
``IdentityObservationsData``), and the real shapes oracle with an encoder that returns the true factors of
each image it is shown, looked up in a record of what the oracle rendered.
"""

import numpy as np
import pytest

from ppzoo.data import shapes
from ppzoo.metrics import disentanglement as dm

SIZES = (3, 5, 8, 8)
NUM = 600
# Mean test accuracy of the degenerate code: factor 0 is predicted exactly, the others at chance 1/size.
DEGENERATE_ACCURACY = (1 + 1 / 5 + 1 / 8 + 1 / 8) / 4
# Standard error of a chance-level accuracy on the 200 test rows (1/3 of 600), at worst p = 1/2.
ACCURACY_SE = np.sqrt(0.25 / 200)


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, size, NUM) for size in SIZES], axis=1)


@pytest.fixture(scope="module")
def representations(factors):
    rng = np.random.default_rng(1)
    as_float = factors.astype(np.float64)
    return {
        "perfect": as_float,
        "noise": rng.normal(size=(NUM, len(SIZES))),
        "degenerate": np.repeat(as_float[:, :1], len(SIZES), axis=1),
    }


@pytest.fixture(scope="module")
def dci_scores(representations, factors):
    return {name: dm.dci(codes, factors) for name, codes in representations.items()}


# ------------------------------------------------------------------------------------------------------
# MIG
# ------------------------------------------------------------------------------------------------------


def test_mig(representations, factors):
    perfect = dm.mig(representations["perfect"], factors)
    noise = dm.mig(representations["noise"], factors)
    degenerate = dm.mig(representations["degenerate"], factors)
    # Perfect: the gap is H(v) minus the MI of an unrelated factor, whose plug-in estimate is biased up by
    # about (a - 1)(b - 1) / (2n) <= 49 / 1200 = 0.04 nats against H >= log 3 = 1.1: MIG >= 0.95.
    assert perfect >= 0.95
    # Noise: every MI is estimation bias of similar size, so the gaps are a few hundredths at most.
    assert 0.0 <= noise <= 0.05
    # Degenerate: identical codes have identical MI, so every gap is exactly 0.
    assert degenerate == pytest.approx(0.0, abs=1e-12)


def test_mig_is_invariant_to_code_order_and_accepts_factor_values(representations, factors):
    codes = np.hstack([representations["perfect"], representations["noise"]])
    reference = dm.mig(codes, factors)
    assert dm.mig(codes[:, ::-1], factors) == pytest.approx(reference, abs=1e-12)
    # Factor values (any labels) instead of indices give the same classes, hence the same MIG.
    values = factors * 0.25 + 3.0
    assert dm.mig(codes, values) == pytest.approx(reference, abs=1e-12)


def test_mig_of_half_informative_code():
    # Factor uniform on 4 values; code 0 keeps only its parity (1 bit of its 2), code 1 is constant. The
    # gap is I = log 2 against H = log 4: MIG = 1/2 exactly (up to float error).
    factor = np.tile(np.arange(4), 250)[:, None]
    codes = np.stack([factor[:, 0] % 2, np.zeros(1000)], axis=1).astype(float)
    assert dm.mig(codes, factor) == pytest.approx(0.5, abs=1e-12)


def test_discretize_matches_histogram_bins():
    values = np.array([[0.0], [0.5], [1.0], [2.0]])
    # Edges of 2 equal bins over [0, 2]: 0 and 1; a value gets the index of the last edge <= it.
    np.testing.assert_array_equal(dm.discretize(values, num_bins=2)[:, 0], [1, 1, 2, 2])


# ------------------------------------------------------------------------------------------------------
# DCI
# ------------------------------------------------------------------------------------------------------


def test_dci_orders_perfect_noise_degenerate(dci_scores):
    perfect, noise, degenerate = dci_scores["perfect"], dci_scores["noise"], dci_scores["degenerate"]
    assert set(perfect) == {"disentanglement", "completeness", "informativeness", "informativeness_train"}
    # Perfect: each factor is predicted from its own code alone; trees put (almost) all importance there.
    assert perfect["disentanglement"] >= 0.95 and perfect["completeness"] >= 0.95
    assert perfect["informativeness"] >= 0.95
    # Noise: importance is spread evenly, so the normalised entropies are close to 1.
    assert noise["disentanglement"] <= 0.1 and noise["completeness"] <= 0.1
    # Noise is predicted at chance: mean of 1/3, 1/5, 1/8, 1/8 = 0.196; allow 4 SE.
    assert noise["informativeness"] <= (1 / 3 + 1 / 5 + 1 / 8 + 1 / 8) / 4 + 4 * ACCURACY_SE
    # Degenerate: every code is the same mix of all factors and each factor is spread over every copy.
    assert degenerate["disentanglement"] <= 0.1 and degenerate["completeness"] <= 0.1
    assert degenerate["informativeness"] == pytest.approx(DEGENERATE_ACCURACY, abs=4 * ACCURACY_SE)


def test_dci_duplicated_codes_lose_completeness_only(representations, factors):
    # Every factor in two identical codes: D stays 1, C = 1 - log 2 / log 8 (importance split in two
    # among 8 codes), as in disentanglement_lib's test_duplicated_latent_space.
    codes = np.hstack([representations["perfect"], representations["perfect"]])
    scores = dm.dci(codes, factors)
    assert scores["disentanglement"] >= 0.95
    assert scores["completeness"] == pytest.approx(1 - np.log(2) / np.log(8), abs=0.03)


def test_dci_importance_closed_forms():
    # disentanglement_lib's matrix-level tests.
    diagonal = np.diag(5.0 * np.ones(5))
    assert dm._dci_disentanglement(diagonal) == pytest.approx(1.0)
    assert dm._dci_completeness(diagonal) == pytest.approx(1.0)
    assert dm._dci_disentanglement(np.zeros((10, 10))) == pytest.approx(0.0, abs=1e-7)
    assert dm._dci_completeness(np.zeros((10, 10))) == pytest.approx(0.0, abs=1e-7)
    one_code_two_factors = np.hstack([diagonal, diagonal])
    assert dm._dci_disentanglement(one_code_two_factors) == pytest.approx(1 - np.log(2) / np.log(10))
    assert dm._dci_completeness(one_code_two_factors) == pytest.approx(1.0)
    with_empty_code = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert dm._dci_disentanglement(with_empty_code) == pytest.approx(1.0)


def test_dci_reference_gbt_agrees_with_hist_gbt(factors):
    # The fast histogram trees stand in for disentanglement_lib's GradientBoostingClassifier; on a
    # partly entangled code both must give about the same scores (measured differences: 0.03 or less).
    rng = np.random.default_rng(2)
    subset = factors[:300, :3]
    codes = np.hstack(
        [subset[:, :2] @ np.array([[1.0, 0.5], [0.5, 1.0]]), subset[:, 2:] + rng.normal(size=(300, 1))]
    )
    fast = dm.dci(codes, subset)
    reference = dm.dci(codes, subset, predictor="gbt")
    for name in ("disentanglement", "completeness", "informativeness"):
        assert fast[name] == pytest.approx(reference[name], abs=0.1), name


# ------------------------------------------------------------------------------------------------------
# SAP
# ------------------------------------------------------------------------------------------------------


def test_sap(representations, factors):
    perfect = dm.sap(representations["perfect"], factors)
    noise = dm.sap(representations["noise"], factors)
    degenerate = dm.sap(representations["degenerate"], factors)
    # A linear SVM on one code separates few of 5 or 8 classes, so perfect SAP is well below 1 (0.31
    # measured) but far above noise, whose score gaps are sampling noise (SE of an accuracy ~0.035).
    assert perfect >= 0.2
    assert noise <= 0.08
    # Degenerate: identical codes score identically, so every gap is exactly 0.
    assert degenerate == pytest.approx(0.0, abs=1e-12)


def test_sap_continuous_factors(representations, factors):
    # Squared correlation: 1 for the code equal to the factor, ~1/n for the others.
    assert dm.sap(representations["perfect"], factors, continuous_factors=True) >= 0.98
    assert dm.sap(representations["noise"], factors, continuous_factors=True) <= 0.02
    assert dm.sap(representations["degenerate"], factors, continuous_factors=True) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------------------
# Modularity and explicitness
# ------------------------------------------------------------------------------------------------------


def test_modularity_explicitness(representations, factors):
    perfect = dm.modularity_explicitness(representations["perfect"], factors)
    noise = dm.modularity_explicitness(representations["noise"], factors)
    degenerate = dm.modularity_explicitness(representations["degenerate"], factors)
    assert set(perfect) == {"modularity", "explicitness", "explicitness_train"}
    assert perfect["modularity"] >= 0.95
    # Noise codes carry only MI estimation bias, which grows with the number of classes, so at 400 rows
    # one factor dominates each code's bias and noise looks partly modular (0.6 measured); it must still
    # be clearly below the perfect code.
    assert noise["modularity"] <= perfect["modularity"] - 0.2
    # Modularity only asks each code to depend on one factor: copies of factor 0 are perfectly modular,
    # as in disentanglement_lib's test_duplicated_latent_space.
    assert degenerate["modularity"] >= 0.95
    # Explicitness is a one-vs-rest ROC-AUC: 0.5 at chance. A linear model on the index separates all
    # classes of a perfect code well (0.99 measured).
    assert perfect["explicitness"] >= 0.9
    # Noise: each class AUC on ~200 test rows has SE ~0.04-0.06; the mean over classes is within 0.05.
    assert noise["explicitness"] == pytest.approx(0.5, abs=0.05)
    # Degenerate: factor 0 explicit (AUC 1), the other three at chance: (1 + 3 * 0.5) / 4 = 0.625.
    assert degenerate["explicitness"] == pytest.approx(0.625, abs=0.05)


def test_modularity_closed_forms():
    # disentanglement_lib's matrix-level tests.
    diagonal = np.diag(5.0 * np.ones(5))
    assert dm._modularity(diagonal) == pytest.approx(1.0)
    assert dm._modularity(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])) == pytest.approx(2 / 3)
    assert dm._modularity(np.zeros((10, 10))) == pytest.approx(0.0)
    assert dm._modularity(np.hstack([diagonal, diagonal])) == pytest.approx(1 - 1 / 9)


# ------------------------------------------------------------------------------------------------------
# Gaussian total correlation
# ------------------------------------------------------------------------------------------------------


def test_gaussian_total_correlation(representations):
    # Independent codes: the plug-in estimate is biased by about d (d - 1) / (4 n) = 0.005 nats.
    assert 0.0 <= dm.gaussian_total_correlation(representations["perfect"]) <= 0.05
    assert 0.0 <= dm.gaussian_total_correlation(representations["noise"]) <= 0.05
    # Copies of one code are perfectly dependent: infinite total correlation.
    assert dm.gaussian_total_correlation(representations["degenerate"]) == np.inf


def test_gaussian_total_correlation_closed_form():
    # Two Gaussians with correlation rho: TC = -log(1 - rho^2) / 2 = 0.5108 for rho = 0.8. With 20,000
    # draws the SE of rho-hat is (1 - rho^2) / sqrt(n) = 0.0025, i.e. 0.006 nats of TC; allow 5 SE.
    rng = np.random.default_rng(3)
    rho = 0.8
    z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=20000)
    assert dm.gaussian_total_correlation(z) == pytest.approx(-0.5 * np.log(1 - rho**2), abs=0.03)
    # Scale-free, and a constant code (independent of everything) adds nothing.
    scaled = z * np.array([3.0, 0.1])
    with_constant = np.hstack([z, np.ones((20000, 1))])
    assert dm.gaussian_total_correlation(scaled) == pytest.approx(dm.gaussian_total_correlation(z))
    assert dm.gaussian_total_correlation(with_constant) == pytest.approx(dm.gaussian_total_correlation(z))
    assert dm.gaussian_total_correlation(np.ones((10, 3))) == 0.0


# ------------------------------------------------------------------------------------------------------
# Oracle metrics
# ------------------------------------------------------------------------------------------------------


class IdentityOracle:
    """Ground-truth data whose observations are the factor indices themselves."""

    factor_sizes = SIZES

    def sample_factors(self, rng, num):
        return np.stack([rng.integers(0, size, num) for size in self.factor_sizes], axis=1)

    def observations_from_factors(self, factor_indices):
        return np.asarray(factor_indices, dtype=np.float64)


class RecordingOracle:
    """Wraps the shapes oracle; `encode` returns the factor indices of each image it rendered."""

    def __init__(self, ds):
        self.ds = ds
        self.factor_sizes = ds.factor_sizes
        self.table = {}

    def sample_factors(self, rng, num):
        return self.ds.sample_factors(rng, num)

    def _keys(self, images):
        return [row.tobytes() for row in np.packbits(images.astype(bool).reshape(len(images), -1), axis=1)]

    def observations_from_factors(self, factor_indices):
        images = self.ds.observations_from_factors(factor_indices)
        self.table.update(zip(self._keys(images), np.asarray(factor_indices, dtype=np.float64), strict=True))
        return images

    def encode(self, images):
        return np.stack([self.table[key] for key in self._keys(images)])


ORACLE_SIZES = {"batch_size": 16, "num_train": 300, "num_eval": 200}
FACTOR_VAE_SIZES = {**ORACLE_SIZES, "num_variance_estimate": 500}
CHANCE = 1 / len(SIZES)
# SE of an accuracy near chance on 200 evaluation points is sqrt(0.25 * 0.75 / 200) = 0.031; allow 4 SE.
ORACLE_TOLERANCE = 4 * np.sqrt(CHANCE * (1 - CHANCE) / 200)


def _encoders():
    rng = np.random.default_rng(4)
    return {
        "perfect": lambda x: x,
        "noise": lambda x: rng.normal(size=(len(x), len(SIZES))),
        "degenerate": lambda x: np.repeat(x[:, :1], len(SIZES), axis=1),
    }


def test_beta_vae_score_on_identity_oracle():
    encoders = _encoders()
    scores = {name: dm.beta_vae_score(e, IdentityOracle(), 0, **ORACLE_SIZES) for name, e in encoders.items()}
    assert set(scores["perfect"]) == {"train_accuracy", "eval_accuracy"}
    # Perfect: the fixed factor's feature is exactly 0 and the others positive, so it is identified
    # (disentanglement_lib's test asks for >= 0.9).
    assert scores["perfect"]["eval_accuracy"] >= 0.9
    assert scores["noise"]["eval_accuracy"] == pytest.approx(CHANCE, abs=ORACLE_TOLERANCE)
    # Degenerate: factor 0 is recognised (feature 0), the other three are indistinguishable:
    # 1/4 * 1 + 3/4 * 1/3 = 0.5.
    assert scores["degenerate"]["eval_accuracy"] == pytest.approx(0.5, abs=4 * np.sqrt(0.25 / 200))


def test_factor_vae_score_on_identity_oracle():
    encoders = _encoders()
    scores = {
        name: dm.factor_vae_score(e, IdentityOracle(), 0, **FACTOR_VAE_SIZES) for name, e in encoders.items()
    }
    assert scores["perfect"]["eval_accuracy"] >= 0.9
    assert scores["perfect"]["num_active_dims"] == len(SIZES)
    assert scores["noise"]["eval_accuracy"] == pytest.approx(CHANCE, abs=ORACLE_TOLERANCE)
    # Degenerate: every vote lands on code 0 (ties go to the first code), and the majority factor of code 0
    # gets about a quarter of the votes.
    assert scores["degenerate"]["eval_accuracy"] == pytest.approx(CHANCE, abs=ORACLE_TOLERANCE)


def test_factor_vae_prunes_collapsed_codes():
    oracle = IdentityOracle()
    collapsed = dm.factor_vae_score(lambda x: np.zeros((len(x), 3)), oracle, 0, **FACTOR_VAE_SIZES)
    assert collapsed == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    # A code with standard deviation 0.01 < 0.05 is pruned; the rest still score perfectly.
    rng = np.random.default_rng(5)
    with_collapsed = dm.factor_vae_score(
        lambda x: np.hstack([0.01 * rng.normal(size=(len(x), 1)), x]), oracle, 0, **FACTOR_VAE_SIZES
    )
    assert with_collapsed["num_active_dims"] == len(SIZES)
    assert with_collapsed["eval_accuracy"] >= 0.9


def test_oracle_metrics_are_reproducible_with_any_key_kind():
    oracle, encode = IdentityOracle(), _encoders()["perfect"]
    small = {"batch_size": 4, "num_train": 20, "num_eval": 10}
    assert dm.beta_vae_score(encode, oracle, 3, **small) == dm.beta_vae_score(
        encode, oracle, np.random.default_rng(3), **small
    )
    jax = pytest.importorskip("jax")
    first = dm.factor_vae_score(encode, oracle, jax.random.key(1), **small, num_variance_estimate=50)
    second = dm.factor_vae_score(encode, oracle, jax.random.key(1), **small, num_variance_estimate=50)
    assert first == second


# disentanglement_lib's LogisticRegression (100 lbfgs iterations) does not converge on the unscaled
# features of the shapes factors; the warning is expected and the metric keeps that setting.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_oracle_metrics_on_shapes_with_true_factors():
    oracle = RecordingOracle(shapes.load(image_size=32, num_data=1, seed=0))
    sizes = {"batch_size": 16, "num_train": 200, "num_eval": 100}
    beta = dm.beta_vae_score(oracle.encode, oracle, 0, **sizes)
    factor = dm.factor_vae_score(oracle.encode, oracle, 0, **sizes, num_variance_estimate=500)
    # The encoder returns the true factors (up to the rare images that two grid points share), so both
    # scores identify the fixed factor (>= 0.9 as disentanglement_lib's perfect-representation tests).
    assert beta["eval_accuracy"] >= 0.9
    assert factor["eval_accuracy"] >= 0.9 and factor["num_active_dims"] == 5


# ------------------------------------------------------------------------------------------------------
# Versions and errors
# ------------------------------------------------------------------------------------------------------


def test_versions_are_recorded():
    import sklearn

    assert dm.METRICS_SKLEARN_VERSION == sklearn.__version__
    assert dm.metric_versions()["scikit-learn"] == sklearn.__version__
    assert {"numpy", "scipy"} <= set(dm.metric_versions())


ARRAY_METRICS = [dm.mig, dm.dci, dm.sap, dm.modularity_explicitness]


@pytest.mark.parametrize("metric", ARRAY_METRICS)
def test_array_metrics_reject_bad_inputs(metric, representations, factors):
    codes = representations["perfect"]
    with pytest.raises(ValueError, match="`codes` must be a 2-D array"):
        metric(codes[:, 0], factors)
    with pytest.raises(ValueError, match="`factors` must be a 2-D array"):
        metric(codes, factors[None])
    with pytest.raises(ValueError, match="`codes` has 599 rows but `factors` has 600"):
        metric(codes[1:], factors)
    bad = codes.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="`codes` contains NaN or inf"):
        metric(bad, factors)
    with pytest.raises(TypeError, match="`codes` must be numeric"):
        metric(codes.astype(str), factors)
    constant = factors.copy()
    constant[:, 2] = 4
    with pytest.raises(ValueError, match="column 2 is constant"):
        metric(codes, constant)
    continuous = np.random.default_rng(0).normal(size=(NUM, 2))
    with pytest.raises(ValueError, match="looks continuous.*factor_bins=20"):
        metric(codes, continuous)


def test_continuous_factors_can_be_binned():
    # Codes equal to two continuous sources, both binned into 20 bins: the gap is H minus the MI bias of
    # the unrelated pair, about 19 * 19 / (2 * 4000) = 0.045 nats against H = log 20 = 3.0.
    rng = np.random.default_rng(6)
    sources = rng.uniform(size=(4000, 2))
    assert dm.mig(sources, sources, factor_bins=20) >= 0.95


def test_minimum_numbers_of_columns(representations, factors):
    codes = representations["perfect"]
    with pytest.raises(ValueError, match="`codes` needs at least 2 columns"):
        dm.mig(codes[:, :1], factors)
    with pytest.raises(ValueError, match="`codes` needs at least 2 columns"):
        dm.sap(codes[:, :1], factors)
    with pytest.raises(ValueError, match="`factors` needs at least 2 columns"):
        dm.dci(codes, factors[:, :1])
    with pytest.raises(ValueError, match="`factors` needs at least 2 columns"):
        dm.modularity_explicitness(codes, factors[:, :1])
    with pytest.raises(ValueError, match="at least 2 rows"):
        dm.gaussian_total_correlation(codes[:1])


def test_bad_settings(representations, factors):
    codes = representations["perfect"]
    with pytest.raises(ValueError, match="`predictor` must be 'hist_gbt' or 'gbt'"):
        dm.dci(codes, factors, predictor="random_forest")
    for fraction in (0.0, 1.0, "half"):
        with pytest.raises(ValueError, match=r"`train_fraction` must be in \(0, 1\)"):
            dm.sap(codes, factors, train_fraction=fraction)
    with pytest.raises(ValueError, match="leaves no test rows"):
        dm.dci(codes[:2], factors[:2], train_fraction=0.9)
    with pytest.raises(ValueError, match="`num_bins` must be an int >= 1"):
        dm.mig(codes, factors, num_bins=0)
    with pytest.raises(ValueError, match="`factor_bins` must be an int >= 2"):
        dm.mig(codes, factors, factor_bins=1)
    with pytest.raises(ValueError, match="`seed` must be an int >= 0"):
        dm.dci(codes, factors, seed=-1)


def test_modularity_explicitness_needs_every_factor_in_training_rows():
    factors = np.zeros((30, 2), dtype=int)
    factors[:, 0] = np.arange(30) % 2
    # Factor 1 varies in one row only, and the split of seed 0 puts that row in the test part.
    _, test_rows = dm._split(30, 2 / 3, 0)
    factors[test_rows[0], 1] = 1
    codes = np.random.default_rng(0).normal(size=(30, 2))
    with pytest.raises(ValueError, match="factor column 1 takes one value in the training rows"):
        dm.modularity_explicitness(codes, factors, seed=0)


class OnlySizes:
    factor_sizes = SIZES


def test_oracle_metric_errors():
    oracle, encode = IdentityOracle(), _encoders()["perfect"]
    small = {"batch_size": 4, "num_train": 5, "num_eval": 5}
    with pytest.raises(TypeError, match="`encode` must be a function"):
        dm.beta_vae_score("encoder", oracle, 0, **small)
    with pytest.raises(TypeError, match="lacks sample_factors, observations_from_factors"):
        dm.factor_vae_score(encode, OnlySizes(), 0, **small)
    with pytest.raises(TypeError, match="`key` must be an int seed"):
        dm.beta_vae_score(encode, oracle, "seed", **small)
    with pytest.raises(ValueError, match=r"`encode` must map \d+ images to codes of shape"):
        dm.beta_vae_score(lambda x: x[:, 0], oracle, 0, **small)
    with pytest.raises(ValueError, match="`encode` returned NaN or inf"):
        dm.factor_vae_score(lambda x: x * np.nan, oracle, 0, **small, num_variance_estimate=10)
    with pytest.raises(ValueError, match="`num_train` must be an int >= 2"):
        dm.beta_vae_score(encode, oracle, 0, batch_size=4, num_train=1, num_eval=5)
    with pytest.raises(ValueError, match="`batch_size` must be an int >= 2"):
        dm.factor_vae_score(encode, oracle, 0, batch_size=1, num_train=5, num_eval=5)
    with pytest.raises(ValueError, match="`prune_threshold` must be a number >= 0"):
        dm.factor_vae_score(encode, oracle, 0, **small, prune_threshold=-0.1)

    class OneFactor(IdentityOracle):
        factor_sizes = (4,)

    with pytest.raises(ValueError, match="at least 2 factors"):
        dm.beta_vae_score(encode, OneFactor(), 0, **small)

    class WrongDraws(IdentityOracle):
        def sample_factors(self, rng, num):
            return super().sample_factors(rng, num)[:, :2]

    with pytest.raises(ValueError, match=r"must return integer indices of shape \(n, 4\)"):
        dm.factor_vae_score(encode, WrongDraws(), 0, **small)


def test_beta_vae_needs_two_fixed_factors_in_training(monkeypatch):
    class AlwaysZero:
        def integers(self, low, high, size=None):
            return np.zeros(size, dtype=np.int64)

    monkeypatch.setattr(dm, "as_generator", lambda key: AlwaysZero())
    with pytest.raises(ValueError, match="fixed the same factor.*increase `num_train`"):
        dm.beta_vae_score(lambda x: x, IdentityOracle(), 0, batch_size=4, num_train=5, num_eval=5)
