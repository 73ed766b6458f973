"""Case study: identifiable nonlinear ICA, iVAE against the VAE, linear ICA and FastICA, with exact posteriors.

Sources that change their variance from one segment of the data to the next are mixed by a random,
invertible MLP (the simulation of Khemakhem et al. 2020, ``ppzoo.data.load("nonlinear_ica")``). A plain VAE
cannot recover them: any rotation of its isotropic prior explains the data equally well. The iVAE
(``ppzoo.models.get("ivae")``) conditions the prior on the segment index ``u``, p(z | u) = N(0, diag
lambda_u^2), and the theory says the sources are then identified up to permutation and elementwise
transformation. The same NumPyro program with ``conditional_prior=False`` is the VAE, so the comparison
isolates that one change. Linear ICA (the zoo's Bayesian ICA fit by SVI) and scikit-learn's FastICA show
what a linear unmixing gets.

Each model is fit on the training points of every segment and scored on held-out points of the same
segments by the mean correlation coefficient (MCC: sources matched by the Hungarian algorithm, Pearson and
Spearman). The report plots MCC against the number of segments and the number of mixing layers (seeds as
error bars), each recovered source against its true source, the ELBO curves and posterior predictive checks
on held-out observations. Finally the amortization gap: with the decoder and prior network held at their
SVI values, NUTS (and BlackJAX) draw the exact posterior of the sources of held-out points, which is
compared with the encoder's Gaussian point by point (means, 90% intervals, 2-Wasserstein distances, and the
MCC of each posterior mean to the truth).

The exact posterior runs 4 chains x (500 warmup + 1000 draws) per engine. With 500 draws per chain its max
r_hat over the 150 scalars (50 points x 3 sources) was 1.011 for NUTS (seed 0; 1.010 and 1.008 with chain
seeds 1 and 2; BlackJAX 1.008), above the 1.01 threshold, although every scalar had bulk ESS above 1480 and
the chains agreed on every mean to within 0.2 posterior sd. It is not multimodality and not a symmetry:
with the decoder held fixed the sources' sign and order are fixed, and the worst scalar (point 4, source 1)
is one skewed posterior whose right tail chain 2 visited more (sd 0.161 against 0.124-0.137), which the folded
(scale) part of the rank r_hat reads as disagreement. That is Monte Carlo error in the tails of the maximum of
150 r_hats, so the fix is more draws: with 1000 per chain the max r_hat is 1.006, 1.004, 1.004 (NUTS, chain
seeds 0-2) and 1.005 (BlackJAX), min bulk ESS 2770-3380, for 2-4 s more per engine. A dense mass matrix
also gave 1.006 at 500 draws but took 95 leapfrog steps per draw against 31 (57 s against 4 s).

The iVAE and VAE encoders are full-covariance Gaussians (``IVAEConfig.encoder_covariance``): with a mean-field
encoder, as in the reference code, the ELBO rotates the sources even for linear mixing.

Observations are standardized with the training mean and sd before fitting (the decoder's noise sd is then
relative to the data's scale). Run ``ppzoo run nonlinear_ica`` (3 sources, 10 segments, 2-layer mixing, 3
seeds; 347 s of CPU time (user + sys), 10.5 minutes of wall time in one run and 24 in another on a 2-core
machine shared with other jobs) or
``ppzoo run nonlinear_ica --full`` (the paper's grid: 5 sources, 40 segments x 1000 points, 3 layers, 5 seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import ppzoo
from ppzoo.amortization import amortization_gap, encoder_pareto_k
from ppzoo.case_studies.command import main_for
from ppzoo.checks import closed_loop_section, convergence_diagnostics, mark_unconverged, posterior_collapse
from ppzoo.claims import ordering_claim
from ppzoo.data.nonlinear_ica import split_heldout
from ppzoo.metrics import match_components, mcc
from ppzoo.models.ivae import encode, prior_log_variance
from ppzoo.report import ESS_MIN, RHAT_MAX, Claim, Section, rst_to_html
from ppzoo.results import write_results

__all__ = ["main", "parse_args", "run", "Settings", "SMALL", "FULL", "fit_methods"]

METHODS = ("iVAE", "VAE", "linear ICA", "FastICA")
MCC_SECTION = "MCC: iVAE, VAE, linear ICA, FastICA"
GAP_SECTION = "Amortization gap: the encoder against the exact posterior"
#: The encoder "agrees with the exact posterior" when their posterior means' MCCs differ by less than this.
MCC_AGREEMENT = 0.02


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything a run depends on (the CLI fills it from ``SMALL`` or ``FULL`` and the options)."""

    num_sources: int
    num_segments: int
    points_per_segment: int
    heldout_per_segment: int
    num_layers: int
    activation: str
    segment_grid: tuple[int, ...]
    layer_grid: tuple[int, ...]
    seeds: tuple[int, ...]
    hidden: tuple[int, ...]
    observation_noise: float
    steps: int
    learning_rate: float
    batch_size: int | None
    ica_steps: int
    nuts_points: int
    nuts_warmup: int
    nuts_samples: int
    nuts_chains: int
    mcmc_engines: tuple[str, ...]
    sweeps: bool = True
    encoder_covariance: str = "full"
    anneal_steps: int = 0
    anneal_start_weight: float = 100.0


#: Defaults: a reduced problem that runs in minutes on 2 CPU cores.
SMALL = Settings(
    num_sources=3,
    num_segments=10,
    points_per_segment=500,
    heldout_per_segment=100,
    num_layers=2,
    activation="xtanh",
    segment_grid=(1, 5, 10, 20),
    layer_grid=(1, 2, 3, 4),
    seeds=(0, 1, 2),
    hidden=(32, 32),
    observation_noise=0.1,
    steps=5000,
    learning_rate=3e-3,
    batch_size=64,
    ica_steps=3000,
    nuts_points=50,
    nuts_warmup=500,
    nuts_samples=1000,  # 500 left the max r_hat of 150 scalars at 1.008-1.011 (module docstring)
    nuts_chains=4,
    mcmc_engines=("nuts", "blackjax"),
)

#: ``--full``: the paper's setting and grid (Khemakhem et al. 2020, Sec. 6.1), 5 seeds. NOT YET REPRODUCING THE
#: PAPER on 3-layer mixing. Measured held-out MCC on its main setting, seeds 0-2 (this file's ``fit_methods`` with
#: these settings, about 50 s per seed for iVAE + VAE on 2 shared cores): iVAE 0.681, 0.702, 0.631 (mean 0.67) and
#: VAE 0.608, 0.583, 0.571 with the full-covariance encoder; with the reference's mean-field encoder the iVAE had
#: 0.62 (linear ICA 0.67, FastICA 0.57). Two causes, measured on seed 0: (1) a mean-field encoder rotates the
#: sources (its ELBO penalty at the true solution is 1.0 nat per point for linear mixing, 2.7 for 3 layers, more
#: than the rotation costs in the prior); the full-covariance encoder fixes that (linear mixing, 5 sources, 40
#: segments: 0.89 -> 0.997). (2) The 3-layer mixing squeezes one direction of the sources to a median Jacobian
#: singular value of 0.006 (seed 0; 0.02-0.03 for seeds 1, 2) in standardized x, far below the decoder noise sd
#: 0.1: the iVAE drops that latent (posterior collapse, one recovered source with sd ~0) and MCC stays near 0.7.
#: Fixed sd 0.02, a learned sd (down to 0.04), a cosine learning-rate decay and 80,000 steps all stayed at 0.64-0.82.
#: Annealing the reconstruction weight (``IVAEConfig.anneal_steps``, after the reference code's ``anneal``) helped
#: little: weight 10 -> 1 over the first 7,800 of 12,500 steps gave 0.715, 0.721, 0.625 (mean 0.69; seed 0 also
#: 0.664 with weight 100, 0.717 / 0.712 with weight 10 / 3 over all 12,500 steps, 0.718 over 15,600 of 25,000), so
#: it stays off here (``anneal_steps=0``). Measured 2026-11-28, seed 0, held-out MCC: ``activation="xtanh"`` networks
#: (the mixing's own nonlinearity) 0.61 (noise 0.1), 0.52 (0.01); noise 0.01 with the noise annealed down from 0.1
#: 0.71; learned noise, 25,000 steps 0.70; minibatch 512 0.69 (noise 0.1) / 0.66 (0.03); Adam 1e-2 with cosine decay
#: 0.57-0.58; six restarts of the networks' initial weights 0.65-0.73 (noise 0.1) with no restart near 0.9. The
#: reference code's own weighted objective (a=100, b=1, c=0, d=10, decoder variance 0.1, raw x, lr 1e-2 with its
#: plateau schedule, 20 epochs), reimplemented in JAX on the same data: 0.66; on data with the reference's repeated
#: mixing matrix 0.47; on leaky-ReLU mixing 0.45. So neither this iVAE nor the reference's estimator reaches the
#: paper's MCC on this data; in standardized x the mixing's Jacobian has median singular values 1.2, 0.5, 0.2, 0.09,
#: 0.03 (seed 0), so two directions sit at or below the noise level of the models that train stably.
FULL = Settings(
    num_sources=5,
    num_segments=40,
    points_per_segment=1000,
    heldout_per_segment=100,
    num_layers=3,
    activation="xtanh",
    segment_grid=(1, 5, 10, 20, 40),
    layer_grid=(1, 2, 3, 4),
    seeds=(0, 1, 2, 3, 4),
    hidden=(100, 100),
    observation_noise=0.1,
    steps=12500,
    learning_rate=3e-3,
    batch_size=64,
    ica_steps=5000,
    nuts_points=100,
    nuts_warmup=1000,
    nuts_samples=1000,
    nuts_chains=4,
    mcmc_engines=("nuts", "blackjax"),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ppzoo run nonlinear_ica", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="reports/nonlinear_ica", help="report folder (default reports/nonlinear_ica)")
    parser.add_argument("--full", action="store_true", help="the paper's setting and grid with 5 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3; --full 5)")
    parser.add_argument("--steps", type=int, default=None, help="SVI steps of the iVAE and VAE")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="SVI minibatch size (0 = all points every step; default 64)"
    )
    parser.add_argument("--activation", choices=("xtanh", "leaky_relu"), default=None,
                        help="mixing nonlinearity (default xtanh, as in the reference configuration)")
    parser.add_argument("--encoder-covariance", choices=("full", "diagonal"), default=None,
                        help="covariance of the iVAE/VAE encoder (default full; diagonal is the reference code's)")
    parser.add_argument("--mcmc-engines", default=None, help="engines for the exact posterior, e.g. nuts,blackjax")
    parser.add_argument("--no-sweeps", action="store_true", help="skip MCC against segments and layers")
    args = parser.parse_args(argv)
    base = FULL if args.full else SMALL
    changes: dict[str, Any] = {}
    if args.seeds is not None:
        if args.seeds < 1:
            parser.error(f"--seeds must be at least 1; got {args.seeds}.")
        changes["seeds"] = tuple(range(args.seeds))
    if args.steps is not None:
        if args.steps < 1:
            parser.error(f"--steps must be positive; got {args.steps}.")
        changes["steps"] = args.steps
    if args.batch_size is not None:
        if args.batch_size < 0:
            parser.error(f"--batch-size must be 0 (all points) or positive; got {args.batch_size}.")
        changes["batch_size"] = args.batch_size or None
    if args.activation is not None:
        changes["activation"] = args.activation
    if args.encoder_covariance is not None:
        changes["encoder_covariance"] = args.encoder_covariance
    if args.mcmc_engines is not None:
        engines = tuple(e.strip() for e in args.mcmc_engines.split(",") if e.strip())
        bad = sorted(set(engines) - {"nuts", "blackjax"})
        if bad:
            parser.error(f"--mcmc-engines: unknown engine(s) {bad}; valid: nuts, blackjax.")
        changes["mcmc_engines"] = engines
    if args.no_sweeps:
        changes["sweeps"] = False
    args.settings = dataclasses.replace(base, **changes)
    return args


# ----------------------------------------------------------------------------------------------- data


def _load(s: Settings, *, num_segments: int, num_layers: int, seed: int) -> tuple[dict, dict, Any]:
    ds = ppzoo.data.load(
        "nonlinear_ica",
        num_sources=s.num_sources,
        num_segments=num_segments,
        points_per_segment=s.points_per_segment + s.heldout_per_segment,
        num_layers=num_layers,
        activation=s.activation,
        seed=seed,
    )
    train, test, _ = split_heldout(ds, s.heldout_per_segment)
    return train, test, ds


# ---------------------------------------------------------------------------------------------- fits


def _ivae_model(s: Settings, num_segments: int, *, conditional: bool, seed: int):
    return ppzoo.models.get(
        "ivae",
        num_segments=num_segments,
        conditional_prior=conditional,
        hidden=s.hidden,
        observation_noise=s.observation_noise,
        encoder_covariance=s.encoder_covariance,
        batch_size=s.batch_size,
        anneal_steps=s.anneal_steps,
        anneal_start_weight=s.anneal_start_weight,
        seed=seed,
    )


def _scores(estimated_train, estimated_test, train, test) -> dict[str, float]:
    return {
        "pearson_in": mcc(estimated_train, train["z"]),
        "pearson_out": mcc(estimated_test, test["z"]),
        "spearman_in": mcc(estimated_train, train["z"], method="spearman"),
        "spearman_out": mcc(estimated_test, test["z"], method="spearman"),
    }


def fit_methods(
    s: Settings, train: dict, test: dict, *, num_segments: int, seed: int, methods: Sequence[str] = METHODS
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Fit the chosen methods on ``train`` and score them on ``train`` and ``test``.

    Returns ``(scores, fits)``: MCC per method, and the ``ppzoo.Fit`` of each Bayesian method.
    """
    from sklearn.decomposition import FastICA

    scores, fits = {}, {}
    data = {"x": train["x"], "u": train["u"]}
    for method in methods:
        if method in ("iVAE", "VAE"):
            model = _ivae_model(s, num_segments, conditional=method == "iVAE", seed=seed)
            with warnings.catch_warnings():
                # A single segment is part of the sweep on purpose; the report says why it fails.
                warnings.filterwarnings("ignore", message=".*single segment.*")
                fit = ppzoo.fit(model, data, engine="svi", seed=seed, steps=s.steps,
                                learning_rate=s.learning_rate, num_draws=20)
            fits[method] = fit
            scores[method] = _scores(encode(fit.model, fit.params, train["x"], train["u"])[0],
                                     encode(fit.model, fit.params, test["x"], test["u"])[0], train, test)
        elif method == "linear ICA":
            fit = ppzoo.fit(ppzoo.models.get("ica", num_sources=s.num_sources), {"x": train["x"]}, engine="svi",
                            seed=seed, steps=s.ica_steps, learning_rate=0.02, num_draws=20)
            fits[method] = fit
            # The ICA guide's amortized encoder, z = W x + b, applied to held-out points.
            unmix = np.asarray(fit.params["unmixing"])
            offset = np.asarray(fit.params["source_offset"])
            scores[method] = _scores(train["x"] @ unmix.T + offset, test["x"] @ unmix.T + offset, train, test)
        elif method == "FastICA":
            ica = FastICA(n_components=s.num_sources, whiten="unit-variance", whiten_solver="eigh",
                          random_state=seed, max_iter=1000)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*did not converge.*")
                estimated = ica.fit_transform(train["x"])
            scores[method] = _scores(estimated, ica.transform(test["x"]), train, test)
        else:
            raise ValueError(f"Unknown method {method!r}; valid: {', '.join(METHODS)}.")
    return scores, fits


# ------------------------------------------------------------------------------------------ figures


def _line_plot(frame: pd.DataFrame, column: str, xlabel: str, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, group in frame.groupby("method", sort=False):
        stats = group.groupby(column)["pearson_out"].agg(["mean", "std", "count"]).reset_index().sort_values(column)
        ax.errorbar(stats[column], stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3, label=method)
        ax.scatter(group[column], group["pearson_out"], s=8, alpha=0.35, color=ax.lines[-1].get_color())
    ax.set_xticks(sorted(frame[column].unique()))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MCC (Pearson, held-out)")
    ax.set_ylim(0.0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _scatter_figure(estimates: dict[str, np.ndarray], true: np.ndarray):
    import matplotlib.pyplot as plt

    k = true.shape[1]
    fig, axes = plt.subplots(len(estimates), k, figsize=(2.6 * k, 2.4 * len(estimates)), squeeze=False)
    for row, (label, estimated) in enumerate(estimates.items()):
        order, signs = match_components(estimated, true)
        for j in range(k):
            ax = axes[row, j]
            recovered = signs[j] * estimated[:, order[j]]
            r = np.corrcoef(recovered, true[:, j])[0, 1]
            ax.scatter(true[:, j], recovered, s=2, alpha=0.3)
            ax.set_title(f"{label}: source {j} (r={r:.2f})", fontsize=8)
            ax.tick_params(labelsize=7)
            if row == len(estimates) - 1:
                ax.set_xlabel("true source", fontsize=8)
            if j == 0:
                ax.set_ylabel("recovered (matched)", fontsize=8)
    fig.tight_layout()
    return fig


def _elbo_figure(curves: dict[str, list[np.ndarray]]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    colours = {"iVAE": "C0", "VAE": "C1"}
    for label, losses in curves.items():
        for i, loss in enumerate(losses):
            loss = np.asarray(loss, dtype=np.float64)
            width = max(1, len(loss) // 100)
            smooth = np.convolve(loss, np.ones(width) / width, mode="valid")
            ax.plot(np.arange(len(smooth)) + width // 2, -smooth, color=colours.get(label, None), lw=0.9,
                    alpha=0.8, label=label if i == 0 else None)
    finite = np.concatenate([-np.asarray(v) for loss in curves.values() for v in loss])
    finite = finite[np.isfinite(finite)]
    if finite.size:
        lo, hi = np.quantile(finite, [0.05, 1.0])
        ax.set_ylim(lo, hi + 0.05 * abs(hi - lo))
    ax.set_xlabel("SVI step")
    ax.set_ylabel("ELBO (moving average)")
    ax.set_title("ELBO per step, one line per seed", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _interval_figure(enc_mean, enc_sd, gap: dict, true: np.ndarray, num_points: int = 15):
    import matplotlib.pyplot as plt

    k = enc_mean.shape[1]
    order, signs = match_components(gap["mcmc_mean"], true)
    n = min(num_points, enc_mean.shape[0])
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.9 * k), squeeze=False, sharex=True)
    points = np.arange(n)
    for row in range(k):
        ax = axes[row, 0]
        j = order[row]
        low_q, high_q = gap["encoder_interval"][:, :n, j]
        low_p, high_p = gap["mcmc_interval"][:, :n, j]
        mean_q, mean_p = enc_mean[:n, j], gap["mcmc_mean"][:n, j]
        ax.errorbar(points - 0.15, mean_q, yerr=[mean_q - low_q, high_q - mean_q], fmt="o", ms=3, capsize=2,
                    label="encoder q(z | x, u)")
        ax.errorbar(points + 0.15, mean_p, yerr=[mean_p - low_p, high_p - mean_p], fmt="s", ms=3, capsize=2,
                    label="exact posterior (NUTS)")
        ax.set_ylabel(f"latent {j}\n(true source {row})", fontsize=8)
        ax.tick_params(labelsize=7)
        if row == 0:
            ax.legend(fontsize=7, ncol=2)
    axes[-1, 0].set_xlabel("held-out point")
    fig.tight_layout()
    return fig


def _ppc_figure(observed: np.ndarray, replicated: dict[str, np.ndarray]):
    import matplotlib.pyplot as plt

    d = observed.shape[1]
    fig, axes = plt.subplots(1, d, figsize=(2.6 * d, 2.6), squeeze=False)
    for j in range(d):
        ax = axes[0, j]
        low, high = np.quantile(observed[:, j], [0.005, 0.995])
        pad = 0.2 * (high - low)
        bins = np.linspace(low - pad, high + pad, 50)
        ax.hist(observed[:, j], bins=bins, density=True, color="k", alpha=0.35, label="held-out x")
        for label, rep in replicated.items():
            ax.hist(rep[..., j].ravel(), bins=bins, density=True, histtype="step", lw=1.2, label=label)
        ax.set_title(f"x[{j}]", fontsize=9)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    return fig


def _predictive(fit, u: np.ndarray, key_seed: int, *, z: np.ndarray | None = None, num_draws: int = 20) -> np.ndarray:
    """Replicated observations for the points ``u``: from the prior p(z | u) or from the given ``z`` draws."""
    import jax
    from numpyro.infer import Predictive

    model = fit.model.with_config(batch_size=None, num_observed=np.shape(fit.data["x"])[1])
    if z is None:
        predictive = Predictive(model, params=fit.params, num_samples=num_draws, return_sites=["x"])
    else:
        predictive = Predictive(model, posterior_samples={"z": z}, params=fit.params, return_sites=["x"])
    return np.asarray(predictive(jax.random.key(key_seed), u=u)["x"])


# ---------------------------------------------------------------------------------------------- run




def _table(rows: list[dict], index: str | list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    values = ["pearson_in", "pearson_out", "spearman_in", "spearman_out"]
    grouped = frame.groupby(index, sort=False)[values]
    mean, sd = grouped.mean(), grouped.std().fillna(0.0)
    out = pd.DataFrame(index=mean.index)
    for v in values:
        out[v.replace("_", " ")] = [f"{m:.3f} ± {e:.3f}" for m, e in zip(mean[v], sd[v])]
    out["seeds"] = grouped.size()
    return out


def _pivot(rows: list[dict], column: str) -> pd.DataFrame:
    """Held-out MCC (Pearson; Spearman in brackets), mean ± sd over seeds, one row per value of ``column``."""
    frame = pd.DataFrame(rows)
    grouped = frame.groupby([column, "method"], sort=True)
    cell = lambda g: (f"{g['pearson_out'].mean():.3f} ± {g['pearson_out'].std(ddof=1) if len(g) > 1 else 0:.3f} "  # noqa: E731
                      f"({g['spearman_out'].mean():.3f})")
    table = grouped.apply(cell, include_groups=False).unstack("method")
    order = [m for m in METHODS if m in table.columns]
    return table[order].fillna("not run")


def _headline(s: Settings, main_rows: list[dict], gaps: dict, diagnostics: dict, elapsed: float) -> dict:
    """The numbers the README quotes: held-out MCC per method (mean over seeds, and per seed for the iVAE),
    and the encoder against the exact posterior per MCMC engine."""
    frame = pd.DataFrame(main_rows)
    values: dict = {"wall_s": round(elapsed)}
    for method, group in frame.groupby("method", sort=False):
        key = method.lower().replace(" ", "_")
        values[f"mcc_{key}"] = float(group["pearson_out"].mean())
        values[f"mcc_{key}_sd"] = float(group["pearson_out"].std(ddof=1)) if len(group) > 1 else 0.0
    for seed, value in zip(frame[frame["method"] == "iVAE"]["seed"], frame[frame["method"] == "iVAE"]["pearson_out"]):
        values[f"mcc_ivae_seed{seed}"] = float(value)
    for engine, gap in gaps.items():
        values[f"{engine}_mcc_mcmc"] = float(gap["mcc_mcmc"])
        values[f"{engine}_mcc_encoder"] = float(gap["mcc_encoder"])
        values[f"{engine}_max_rhat"] = float(diagnostics[engine]["max r_hat"])
        values[f"{engine}_min_ess_bulk"] = float(diagnostics[engine]["min bulk ESS"])
        values[f"{engine}_min_ess_tail"] = float(diagnostics[engine]["min tail ESS"])
        values[f"{engine}_divergences"] = int(diagnostics[engine]["divergences"])
    return values


def _claims(main_rows: list[dict], gaps: dict, diagnostics: dict) -> list[Claim]:
    """The study's claims, from this run's numbers: the iVAE identifies the sources where the others do not
    (held-out MCC, on the mean over seeds and on every seed), and, per MCMC engine, that the exact posterior
    converged and that the iVAE's encoder agrees with it."""
    frame = pd.DataFrame(main_rows)
    scores = {m: frame[frame["method"] == m].sort_values("seed")["pearson_out"].to_numpy()
              for m in METHODS if m in set(frame["method"])}
    claims = [ordering_claim(scores, winner="iVAE", metric="held-out MCC", section=MCC_SECTION)]
    for engine, gap in gaps.items():
        rhat, divergences = diagnostics[engine]["max r_hat"], diagnostics[engine]["divergences"]
        ess = min(diagnostics[engine]["min bulk ESS"], diagnostics[engine]["min tail ESS"])
        converged = None if not np.isfinite(rhat) else bool(rhat <= RHAT_MAX and ess >= ESS_MIN and divergences == 0)
        claims.append(Claim(
            f"exact posterior converged ({engine}: max r_hat {rhat:.3f} <= {RHAT_MAX}, min ESS {ess:.0f} >= "
            f"{ESS_MIN}, {divergences} divergences)",
            converged,
            "one chain: no r_hat (run more chains)." if converged is None else
            f"over every source of every held-out point: max r_hat {rhat:.4f} (threshold {RHAT_MAX}), min bulk ESS "
            f"{diagnostics[engine]['min bulk ESS']:.0f} and tail ESS {diagnostics[engine]['min tail ESS']:.0f} "
            f"(threshold {ESS_MIN}); {divergences} divergent transitions (0 needed).",
            GAP_SECTION,
        ))
        difference = abs(gap["mcc_encoder"] - gap["mcc_mcmc"])
        unconverged = "" if converged else (" The MCMC number comes from chains that have not converged "
                                            f"(max r_hat {rhat:.3f}).")
        claims.append(Claim(
            f"encoder agrees with the exact posterior ({engine}: MCC of the posterior means {gap['mcc_encoder']:.3f} "
            f"vs {gap['mcc_mcmc']:.3f}, difference < {MCC_AGREEMENT})",
            bool(difference < MCC_AGREEMENT),
            f"|MCC encoder - MCC {engine}| = {difference:.3f} on {gap['num_points']} held-out points; W2 "
            f"{gap['w2_gaussian']:.3f}, encoder sd / MCMC sd {gap['sd_ratio']:.2f}." + unconverged,
            GAP_SECTION,
        ))
    return claims


def _collapse_section(ivae_fit: Any, vae_fit: Any, train: dict, seed: int) -> Section:
    """Posterior collapse of the iVAE's and the VAE's encoders on the training points (seed ``seed``).

    The iVAE's KL per dimension is against its own conditional prior p(z | u) (learned variances per segment,
    zero means unless ``prior_mean``), the VAE's against N(0, I)."""
    mean, sd = encode(ivae_fit.model, ivae_fit.params, train["x"], train["u"])
    scale = 1.0
    if not ivae_fit.model.config.prior_mean:
        log_var = prior_log_variance(ivae_fit.model, ivae_fit.params, num_sources=train["x"].shape[1])
        scale = np.exp(0.5 * log_var)[np.asarray(train["u"])]
    checks = [posterior_collapse(mean, sd, label="iVAE", prior_scale=scale),
              posterior_collapse(*encode(vae_fit.model, vae_fit.params, train["x"], train["u"]), label="VAE")]
    section = closed_loop_section(checks, title="Posterior collapse: active latent dimensions")
    section.text = (
        f"<p>Encoders on the {len(train['x'])} training points of seed {seed}: a latent dimension is active when the "
        "variance over the points of its encoder mean exceeds 0.01 (Burda et al. 2016); KL per dimension "
        "averaged over the points, against the iVAE's "
        + ("learned conditional prior p(z | u)" if not ivae_fit.model.config.prior_mean else "N(0, 1) (prior_mean=True: "
           "the learned prior means are not read here)")
        + " and the VAE's N(0, 1). FAIL when no dimension is active (the encoder ignores the data).</p>" + section.text
    )
    return section


def run(args: argparse.Namespace) -> Path:
    """Fit everything, write the report, and return the report folder."""
    s: Settings = args.settings
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[nonlinear_ica {time.perf_counter() - started:6.0f} s] {message}", flush=True)

    # 1. The main setting, every method, every seed.
    rows, keep = [], {}
    for seed in s.seeds:
        train, test, ds = _load(s, num_segments=s.num_segments, num_layers=s.num_layers, seed=seed)
        log(f"main setting, seed {seed}: {len(train['x'])} training / {len(test['x'])} held-out points")
        scores, fits = fit_methods(s, train, test, num_segments=s.num_segments, seed=seed)
        for method, score in scores.items():
            rows.append({"method": method, "seed": seed, "segments": s.num_segments, "layers": s.num_layers, **score})
            log(f"  {method}: MCC held-out {score['pearson_out']:.3f} (in-sample {score['pearson_in']:.3f})")
        keep[seed] = (train, test, ds, fits)
    main_rows = list(rows)

    # 2. Sweeps over segments and layers (iVAE, VAE, FastICA).
    sweep_rows: list[dict] = []
    if s.sweeps:
        grid = [(m, s.num_layers) for m in s.segment_grid] + [(s.num_segments, l) for l in s.layer_grid]
        for num_segments, num_layers in dict.fromkeys(grid):
            for seed in s.seeds:
                if (num_segments, num_layers) == (s.num_segments, s.num_layers):
                    sweep_rows += [r for r in main_rows if r["seed"] == seed
                                   and (r["method"] != "linear ICA" or num_layers == 1)]
                    continue
                train, test, _ = _load(s, num_segments=num_segments, num_layers=num_layers, seed=seed)
                # Linear ICA only where it is the right model (one layer: linear mixing); it costs a compile.
                methods = ("iVAE", "VAE", "FastICA") + (("linear ICA",) if num_layers == 1 else ())
                scores, _ = fit_methods(s, train, test, num_segments=num_segments, seed=seed, methods=methods)
                for method, score in scores.items():
                    sweep_rows.append({"method": method, "seed": seed, "segments": num_segments,
                                       "layers": num_layers, **score})
                log(f"sweep segments={num_segments} layers={num_layers} seed={seed}: "
                    + ", ".join(f"{m} {sc['pearson_out']:.3f}" for m, sc in scores.items()))

    # 3. The exact posterior of held-out sources under the first seed's iVAE.
    seed0 = s.seeds[0]
    train, test, ds, fits = keep[seed0]
    ivae_fit, vae_fit = fits["iVAE"], fits["VAE"]
    rng = np.random.default_rng(seed0)
    chosen = np.sort(rng.choice(len(test["x"]), size=min(s.nuts_points, len(test["x"])), replace=False))
    held = {"x": test["x"][chosen], "u": test["u"][chosen]}
    enc_mean, enc_sd = encode(ivae_fit.model, ivae_fit.params, held["x"], held["u"])
    exact_model = ivae_fit.model.with_config(batch_size=None)
    mcmc_fits, gaps, diagnostics = {}, {}, {}
    for engine in s.mcmc_engines:
        log(f"exact posterior of {len(chosen)} held-out points by {engine}")
        mcmc = ppzoo.fit(exact_model, held, engine=engine, seed=seed0, params=ivae_fit.params,
                         num_warmup=s.nuts_warmup, num_samples=s.nuts_samples, num_chains=s.nuts_chains)
        mcmc_fits[engine] = mcmc
        gaps[engine] = amortization_gap(enc_mean, enc_sd, mcmc.samples["z"], true=test["z"][chosen])
        rhat, ess_bulk, ess_tail = convergence_diagnostics(mcmc.samples["z"])
        diagnostics[engine] = {
            "max r_hat": float(np.max(rhat)) if np.isfinite(rhat).any() else float("nan"),
            "min bulk ESS": float(np.min(ess_bulk)),
            "min tail ESS": float(np.min(ess_tail)),
            "divergences": int(np.asarray(mcmc.sample_stats["diverging"]).sum()),
            "run s": mcmc.timings["run_s"],
            "compile s": mcmc.timings["compile_s"],
        }
        log(f"  max r_hat {diagnostics[engine]['max r_hat']:.4f}, min bulk / tail ESS "
            f"{diagnostics[engine]['min bulk ESS']:.0f} / {diagnostics[engine]['min tail ESS']:.0f}; MCC encoder {gaps[engine]['mcc_encoder']:.3f}, "
            f"MCMC {gaps[engine]['mcc_mcmc']:.3f}; W2 {gaps[engine]['w2_gaussian']:.3f}")

    # The encoder as an importance proposal for each point's exact posterior (no MCMC: many more points).
    psis_k = encoder_pareto_k(exact_model, ivae_fit.params, {"x": test["x"], "u": test["u"]}, seed=seed0)
    log(f"encoder PSIS k-hat on {psis_k['num_items']} held-out points: median {psis_k['pareto_k_median']:.2f}, "
        f"share above 0.7 {psis_k['share_k_above_0_7']:.2f}")

    # 4. Sections.
    log("writing the report")
    sections = []
    text = (
        f"<p>{s.num_sources} sources, {s.num_segments} segments x {s.points_per_segment} training points "
        f"(+{s.heldout_per_segment} held out per segment), {s.num_layers}-layer {html.escape(s.activation)} mixing; "
        f"seeds {', '.join(map(str, s.seeds))}. iVAE and VAE: hidden layers {s.hidden}, decoder noise sd "
        f"{s.observation_noise} (standardized x), {s.steps} SVI steps, Adam {s.learning_rate}, minibatch "
        f"{ivae_fit.model.config.batch_size or 'all points'}. MCC: mean absolute correlation of the sources "
        "matched by the Hungarian algorithm (1 = perfect up to permutation, sign and, for Spearman, monotone "
        "transforms). 'in' = training points, 'out' = held-out points of the same segments, encoded by the "
        "fitted encoder (no refitting).</p>"
    )
    sections.append(Section(MCC_SECTION, text=text,
                            tables=[("MCC, mean ± sd over seeds", _table(main_rows, "method"), None)]))
    sections.append(_collapse_section(ivae_fit, vae_fit, train, seed0))
    if sweep_rows:
        sweep = pd.DataFrame(sweep_rows)
        by_segments = sweep[sweep["layers"] == s.num_layers]
        by_layers = sweep[sweep["segments"] == s.num_segments]
        by_segments = by_segments[by_segments["method"] != "linear ICA"]
        sections.append(Section(
            "MCC against the number of segments and of mixing layers",
            text="<p>Held-out Pearson MCC; dots are seeds, bars one sd. With one segment the iVAE's prior does "
                 "not depend on u and the model is a VAE (ppzoo warns that it is not identifiable); "
                 "identifiability needs the variances to vary across enough segments (Theorem 1: at least "
                 "2 x sources + 1). One mixing layer is linear, where FastICA is exact.</p>",
            tables=[("Held-out MCC by number of segments: Pearson mean ± sd (Spearman)",
                     _pivot(by_segments.to_dict("records"), "segments"), None),
                    ("Held-out MCC by number of mixing layers: Pearson mean ± sd (Spearman)",
                     _pivot(by_layers.to_dict("records"), "layers"), None)],
            figures=[
                ("MCC against the number of segments", _line_plot(by_segments, "segments", "segments",
                                                                  f"{s.num_layers}-layer mixing")),
                ("MCC against the number of mixing layers", _line_plot(by_layers, "layers", "mixing layers",
                                                                       f"{s.num_segments} segments")),
            ],
        ))

    linear = fits["linear ICA"]
    estimates = {
        "iVAE": encode(ivae_fit.model, ivae_fit.params, test["x"], test["u"])[0],
        "VAE": encode(vae_fit.model, vae_fit.params, test["x"], test["u"])[0],
        "linear ICA": test["x"] @ np.asarray(linear.params["unmixing"]).T + np.asarray(linear.params["source_offset"]),
    }
    learned = prior_log_variance(ivae_fit.model, ivae_fit.params, num_sources=train["x"].shape[1])
    order, _ = match_components(encode(ivae_fit.model, ivae_fit.params, train["x"], train["u"])[0], train["z"])
    true_log_var = 2 * np.log(ds.truth["segment_scales"])
    prior_corr = [np.corrcoef(learned[:, order[j]], true_log_var[:, j])[0, 1] for j in range(s.num_sources)]
    prior_table = pd.DataFrame({"corr(learned, true) of the segment log-variances": prior_corr})
    prior_table.index.name = "true source"
    sections.append(Section(
        "Recovered sources",
        text=f"<p>Held-out points, seed {seed0}: each true source against the estimate matched to it (sign "
             "flipped to agree). The iVAE's prior network should also have learned each source's variance per "
             "segment, up to an additive constant (the scale of an identified source is arbitrary).</p>",
        tables=[("iVAE's learned per-segment prior log-variances against the truth", prior_table, None)],
        figures=[("Each true source against its matched recovered source (held-out)",
                  _scatter_figure(estimates, test["z"]))],
    ))

    curves = {m: [keep[sd_][3][m].losses for sd_ in s.seeds] for m in ("iVAE", "VAE")}
    sections.append(Section(
        "ELBO curves",
        text="<p>Minibatch estimates of the ELBO per step (scaled to the whole training set), smoothed.</p>",
        figures=[("ELBO per SVI step of the iVAE and the VAE, every seed", _elbo_figure(curves))],
    ))

    enc_all_mean, enc_all_sd = encode(ivae_fit.model, ivae_fit.params, test["x"], test["u"])
    z_all = enc_all_mean[None] + enc_all_sd[None] * np.random.default_rng(2).standard_normal((10,) + enc_all_mean.shape)
    replicated = {
        "iVAE: x ~ p(x | z), z ~ q(z | x, u)": _predictive(ivae_fit, test["u"], 3, z=z_all.astype(np.float32)),
        "iVAE: generated, z ~ p(z | u)": _predictive(ivae_fit, test["u"], 4, num_draws=10),
        "VAE: generated, z ~ N(0, I)": _predictive(vae_fit, test["u"], 5, num_draws=10),
    }
    sections.append(Section(
        "Posterior predictive checks on held-out observations",
        text="<p>Held-out observations (grey) against replications: reconstructions through the encoder, and "
             "fresh data generated from each model's prior given the held-out points' segments. Agreement of the "
             "generated data says the model learned the data distribution, which by itself does not identify "
             "the sources (the VAE can match it too).</p>",
        figures=[("Held-out x against replicated x, per observed dimension", _ppc_figure(test["x"], replicated))],
    ))

    gap_rows, latent_tables = {}, []
    for engine, gap in gaps.items():
        gap_rows[engine] = {
            "points": gap["num_points"],
            "MCC encoder mean": gap["mcc_encoder"],
            "MCC MCMC mean": gap["mcc_mcmc"],
            "MCC encoder (Spearman)": gap["mcc_encoder_spearman"],
            "MCC MCMC (Spearman)": gap["mcc_mcmc_spearman"],
            "W2 (full-cov Gaussian)": gap["w2_gaussian"],
            "W2 marginal (1-D)": gap["w2_marginal"],
            "|mean shift| / MCMC sd": gap["mean_shift"],
            "encoder sd / MCMC sd (median)": gap["sd_ratio"],
            "MCMC mass in encoder's 90% interval": gap["interval_coverage"],
            "max |posterior corr|": gap["max_abs_correlation"],
            f"encoder PSIS k-hat, median over {psis_k['num_items']} points": psis_k["pareto_k_median"],
            "share of those points with k-hat > 0.7": psis_k["share_k_above_0_7"],
            **diagnostics[engine],
        }
        per = pd.DataFrame(gap["per_latent"])
        per.index.name = "latent"
        latent_tables.append((f"{engine}: per latent (medians over points of the sds)", per, None))
    gap_frame = pd.DataFrame(gap_rows)  # one column per engine keeps the table narrow
    gap_frame.columns = [mark_unconverged(engine, mcmc_fits[engine]) for engine in gap_frame.columns]
    gap_frame.index.name = "encoder vs exact posterior"
    figures = []
    if gaps:
        first = next(iter(gaps))
        figures.append((f"Encoder vs exact posterior ({first}): mean and 90% interval of each latent, first points",
                        _interval_figure(enc_mean, enc_sd, gaps[first], test["z"][chosen])))
    sections.append(Section(
        GAP_SECTION,
        text=f"<p>{len(chosen)} held-out points; decoder and prior network fixed at the iVAE's SVI values; "
             f"{s.nuts_chains} chains x ({s.nuts_warmup} warmup + {s.nuts_samples} draws). W2 (full-cov Gaussian): "
             "mean over points of the 2-Wasserstein distance between the encoder's Gaussian, taken with its marginal sds "
             "(ppzoo.amortization reads means and sds only, so the full encoder's correlations are dropped), and a Gaussian "
             "with the mean and covariance of the MCMC draws; W2 marginal: per latent, between the encoder's 1-D "
             "Gaussian and the empirical MCMC marginal (see ppzoo.amortization). Units: the latents'. The PSIS rows "
             "need no MCMC and use more held-out points (the same for every engine column): per point, 1000 encoder "
             "draws weighted by p(x, z | u) / q(z | x, u) give a Pareto k-hat (ppzoo.amortization.encoder_pareto_k; "
             "Yao et al. 2018); above 0.7 the encoder is an unreliable proposal for that point's exact posterior.</p>",
        tables=[("Encoder vs MCMC", gap_frame, None), *latent_tables],
        figures=figures,
    ))

    report_fits = {}
    if ivae_fit.model.config.batch_size is None:
        # With minibatches the SVI engine's draws (fit.samples) cover one random minibatch, not the training
        # set, so those fits get no engine section; everything above is computed from their networks instead.
        report_fits.update({"iVAE (SVI)": ivae_fit, "VAE (SVI)": vae_fit})
    report_fits.update({f"iVAE exact posterior, held-out ({e})": f for e, f in mcmc_fits.items()})
    if not report_fits:
        raise SystemExit("nonlinear_ica: no fit to report (SVI on minibatches and no MCMC engine); rerun with "
                         "--batch-size 0 or --mcmc-engines nuts.")
    elapsed = time.perf_counter() - started
    description = (
        "<p>" + rst_to_html(__doc__.split("\n\n")[1]) + "</p>"
        f"<p class='small'>Total run time {elapsed:.0f} s. The 'Engine' sections below show each fit on the "
        "points it was fit to: the MCMC fits on the held-out points"
        + (", the SVI fits on the training points" if "iVAE (SVI)" in report_fits else
           " (the SVI fits, trained on minibatches, are shown by the study's own sections after them)")
        + ". PSIS-LOO flags most points there: each observation has its own latent z_n, informed by that "
        "observation alone, so leaving it out moves its posterior far (high Pareto k is expected for such "
        "models and says nothing about convergence; r_hat and divergences do).</p>"
    )
    out = ppzoo.report(
        report_fits,
        args.out,
        truth={"z": test["z"][chosen]},  # scores the exact posteriors' means (the SVI fits are scored above)
        title="ppzoo case study: identifiable nonlinear ICA (iVAE vs VAE, linear ICA, FastICA)",
        description=description,
        sections=sections,
        data_info=ds.info["settings"],
        claims=_claims(main_rows, gaps, diagnostics),
    )
    all_rows = pd.DataFrame(main_rows + [r for r in sweep_rows if r not in main_rows])
    all_rows.to_csv(Path(out) / "mcc.csv", index=False)
    write_results(out, "nonlinear_ica", _headline(s, main_rows, gaps, diagnostics, elapsed), settings={
        "sources": s.num_sources, "segments": s.num_segments, "layers": s.num_layers,
        "points_per_segment": s.points_per_segment, "seeds": len(s.seeds), "steps": s.steps,
        "nuts_points": len(chosen), "nuts_chains": s.nuts_chains, "nuts_warmup": s.nuts_warmup,
        "nuts_samples": s.nuts_samples,
    })
    log("done")
    return Path(out)


main = main_for(parse_args, run)


if __name__ == "__main__":
    main()
