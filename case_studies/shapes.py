"""Case study: six disentangling VAEs on dSprites-style shapes, over three seeds, scored by the standard metrics.

Binary images of a square, an ellipse or a heart at one of 6 scales, 40 orientations and 32 x 32 positions
(``ppzoo.data.load("shapes")``, a procedural version of dSprites whose factors are known) are modelled by
six NumPyro programs that share one generative story, a standard normal prior on ten latents and a
Bernoulli decoder, and differ in one handler or one named factor: the VAE, beta-VAE (KL weighted by beta),
beta-TCVAE (total correlation weighted by beta, minibatch-weighted sampling), FactorVAE (total
correlation estimated by a discriminator trained inside the SVI loop), and DIP-VAE-I/II (the covariance of
the encoder means or of the aggregate posterior pushed to the identity). Each is trained by SVI on the same
images once per seed (three seeds by default, trained together in one compiled program) and scored with
disentanglement_lib's metrics: the beta-VAE and FactorVAE scores (which draw fresh images from the data
set's oracle), MIG, DCI, SAP, modularity and explicitness, and the Gaussian total correlation of the
codes. The comparison table gives each model's mean and spread over the seeds, and the study's claim, that
each regularised model beats the plain VAE on the FactorVAE score and on MIG, is judged on the mean and
on every seed. Per model the report shows the training objective, reconstructions and latent traversals
(one row per latent dimension). Finally NUTS samples the exact posterior of the latents of a few held-out
images with each learned decoder held fixed (the first seed's models), which measures how far each
amortized encoder is from the posterior it approximates.

The default run is sized for two CPU cores (32 x 32 images, 10,000 of them, MLP networks, seeds 0, 1 and
2, 5000 Adam steps at learning rate 1e-3 per model and seed, reduced metric sample sizes). 5000 steps is
what the ten-minute budget affords with three seeds, and it is enough for the regularisers to act: in a
measured learning curve (seeds 0-2, 2500 to 15,000 steps) beta-VAE and beta-TCVAE had halved the encoder's
KL to the prior (12-14 to 6-7 nats per image) and kept two to four fewer latent dimensions active than
the VAE by step 2500, and training on to 15,000 steps did not reverse the VAE's lead on the FactorVAE score
(beta-VAE fell from 0.43 to 0.35 on the mean, the VAE stayed at 0.47-0.48). ``--full`` keeps the MLPs at
32 x 32 and uses disentanglement_lib's schedule and sample sizes (100,000 images, 300,000 steps of Adam
at 1e-4, the metrics' standard sizes); pass ``--cache DIR`` to keep each finished model and seed and, every
ten minutes, the training state of the model in progress, so that an interrupted run resumes where it
stopped. Locatello et al. (2019) found that random seeds and
hyperparameters matter more than the choice of model; the spread over seeds on the page says how much
they matter here.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import ppzoo
from ppzoo.claims import all_of, ordering_claim
from ppzoo.metrics import (
    beta_vae_score,
    dci,
    factor_vae_score,
    gaussian_total_correlation,
    metric_versions,
    mig,
    modularity_explicitness,
    sap,
)
from ppzoo.report import Claim, Section
from ppzoo.results import key, write_results

from ppzoo.case_studies.command import main_for, parse_seeds
from ppzoo.case_studies._vae_common import (
    MODELS,
    ModelCache,
    TrainedModel,
    amortization,
    amortization_checks,
    amortization_table,
    amortization_text,
    cache_settings,
    collapse_checks,
    collapse_claim,
    collapse_section,
    describe,
    encoder_psis_results,
    loss_figure,
    reconstruction_figure,
    train_family,
    train_infogan_seeds,
    traversal_figure,
)

__all__ = ["main", "parse_args", "run", "METRIC_COLUMNS", "MECHANISM_COLUMNS", "ALL_MODELS", "model_claims", "summary_table",
           "RenderedOnce", "PUBLISHED_SOURCE", "PUBLISHED_RANGES"]

#: The columns of the comparison table (the seven metrics, DCI and modularity/explicitness split).
METRIC_COLUMNS = (
    "beta_vae_score",
    "factor_vae_score",
    "mig",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "sap",
    "modularity",
    "explicitness",
    "gaussian_tc",
)

#: What shows each regulariser acting, beside the metrics: active dimensions (variance of the encoder mean over
#: the images above 0.01, as in the posterior-collapse check), the encoder's KL to the prior (nats per image;
#: beta-VAE and beta-TCVAE press it down), and the final loss.
MECHANISM_COLUMNS = ("active_dims", "total_kl", "final_loss_per_image")

COMPARISON_SECTION = "Comparison of the six models"

#: The six VAEs and InfoGAN (trained by ``_vae_common.train_infogan_seeds`` on the same images, seeds and
#: step budget, and scored by the same metrics on its Q network's codes; no encoder sd, so no collapse check
#: or amortization gap here: ``ppzoo run infogan`` inverts its generator by NUTS).
ALL_MODELS: tuple[str, ...] = (*MODELS, "infogan")

#: The reference the ``--full`` run's README table is set beside.
PUBLISHED_SOURCE = (
    "Locatello et al. (2019, 'Challenging common assumptions in the unsupervised learning of disentangled "
    "representations', ICML; disentanglement_lib) trained more than 12,000 models of these methods on seven "
    "data sets, among them the real dSprites at 64 x 64 with convolutional networks"
)

#: Reference ranges for dSprites from that study, quoted beside the ``--full`` run's table: metric -> (low, high,
#: where it is read). Filled from the cited source only; the study shows its scores as figures (violin plots)
#: and no tabulated range was found, so it is empty.
PUBLISHED_RANGES: dict[str, tuple[float, float, str]] = {}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ppzoo run shapes", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="report folder (default reports/shapes; --full reports/shapes_full)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2],
                        help="training seeds, comma-separated (default 0,1,2: an ordering of models needs three)")
    parser.add_argument("--data-seed", type=int, default=0,
                        help="seed of the images, the held-out images and the oracle metrics' draws (default 0)")
    parser.add_argument("--full", action="store_true",
                        help="disentanglement_lib's schedule and metric sizes with MLPs at 32 x 32 (hours; use --cache)")
    parser.add_argument("--cache", default=None,
                        help="folder that keeps each finished model and seed (parameters, losses, scores) and, "
                             "every ten minutes, the state of the model in training; a rerun with the same settings "
                             "loads them instead of training, and continues an unfinished model where it stopped")
    parser.add_argument("--image-size", type=int, choices=(32, 64), default=32)
    parser.add_argument("--num-data", type=int, default=None, help="training images (default 10000; --full 100000)")
    parser.add_argument("--network", choices=("mlp", "conv"), default="mlp",
                        help="mlp (default) or conv (disentanglement_lib's; slow on a CPU)")
    parser.add_argument("--steps", type=int, default=None, help="SVI steps per model and seed (default 5000; --full 300000)")
    parser.add_argument("--learning-rate", type=float, default=None, help="Adam (default 1e-3; --full 1e-4)")
    parser.add_argument("--batch-size", type=int, default=64)
    # InfoGAN is not in the default list: at the default budget its generator collapses (ppzoo run infogan,
    # 2026-12-07: FactorVAE score 0.367 against the plain VAE's 0.469, chance-level Q) and it adds ~4 min a seed.
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of " + ",".join(ALL_MODELS) + " (default: the six VAEs; infogan: "
                             "engine='adversarial', scored on the Q network's codes; see ppzoo run infogan)")
    parser.add_argument("--metric-points", type=int, default=None,
                        help="training points of the oracle metrics, half as many to evaluate (default 1000; --full 10000)")
    parser.add_argument("--metric-rows", type=int, default=None,
                        help="codes for DCI, SAP, modularity/explicitness, 2/3 to train (default 3000; --full 15000)")
    parser.add_argument("--posterior-images", type=int, default=None, help="held-out images for the amortization gap (default 8; --full 16)")
    parser.add_argument("--num-warmup", type=int, default=None, help="NUTS warmup per chain (default 300; --full 1000)")
    parser.add_argument("--num-samples", type=int, default=None, help="NUTS draws per chain (default 700 on 8 images; --full 2000 on 16, as digits needs for 160 latents)")
    parser.add_argument("--num-chains", type=int, default=3)
    parser.add_argument("--engine", choices=("nuts", "blackjax"), default="nuts", help="MCMC engine for the gap")
    args = parser.parse_args(argv)
    full = args.full
    args.out = args.out or ("reports/shapes_full" if full else "reports/shapes")
    args.num_data = args.num_data or (100_000 if full else 10_000)
    args.steps = args.steps or (300_000 if full else 5000)
    args.learning_rate = args.learning_rate or (1e-4 if full else 1e-3)
    args.metric_points = args.metric_points or (10_000 if full else 1000)
    args.metric_rows = min(args.metric_rows or (15_000 if full else 3000), args.num_data)
    args.posterior_images = args.posterior_images or (16 if full else 8)
    args.num_warmup = args.num_warmup or (1000 if full else 300)
    args.num_samples = args.num_samples or (2000 if full else 700)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; valid: {', '.join(ALL_MODELS)}")
    for name in ("num_data", "steps", "batch_size", "metric_points", "metric_rows", "posterior_images", "num_samples",
                 "num_chains"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}")
    if args.num_data < args.batch_size:
        parser.error(f"--num-data {args.num_data} is below --batch-size {args.batch_size}; use more images")
    return args


def hyperparameters(full: bool) -> dict[str, dict]:
    """Per-model settings: mid-range values of disentanglement_lib's study grid.

    FactorVAE's discriminator is three layers of 256 units in both runs (disentanglement_lib: six of 1000):
    the full-size one made a FactorVAE step 14 times slower than with the small one (6 against 82 seed-steps
    per second, three seeds together on the shared two cores), 42 hours for 300,000 steps. It learns at 1e-3 in
    the default run (5000 steps) and at disentanglement_lib's 1e-4 with ``--full``.
    """
    discriminator = {"discriminator_hidden": (256, 256, 256), "discriminator_learning_rate": 1e-4 if full else 1e-3}
    return {
        "beta_vae": {"beta": 4.0},
        "beta_tcvae": {"beta": 6.0},
        "factor_vae": {"gamma": 20.0, **discriminator},
        "dip_vae_i": {"lambda_od": 10.0, "lambda_d_factor": 10.0},
        "dip_vae_ii": {"lambda_od": 10.0, "lambda_d_factor": 1.0},
    }


class RenderedOnce:
    """The data set's oracle, each batch of images it renders kept (bit-packed) for the next model.

    The oracle metrics draw their factors from the metric seed alone, so every model and training seed asks
    for the same images in the same order; rendering them once (most of the metrics' time) and scoring every
    model on the same draws (a fixed evaluation set) also removes the metric's sampling noise from the
    comparison between models.
    """

    def __init__(self, ds: Any):
        self.ds = ds
        self.factor_sizes = ds.factor_sizes
        self._images: dict[bytes, tuple[np.ndarray, tuple[int, ...]]] = {}

    def sample_factors(self, *args: Any, **kwargs: Any) -> np.ndarray:
        return self.ds.sample_factors(*args, **kwargs)

    def observations_from_factors(self, factor_indices: np.ndarray) -> np.ndarray:
        indices = np.ascontiguousarray(factor_indices, dtype=np.int64)
        name = hashlib.blake2b(indices.tobytes() + str(indices.shape).encode(), digest_size=16).digest()
        if name not in self._images:
            images = self.ds.observations_from_factors(indices)
            if not np.isin(images, (0.0, 1.0)).all():  # only binary images are packed
                return images
            self._images[name] = (np.packbits(images.astype(bool), axis=-1), images.shape)
        packed, shape = self._images[name]
        return np.unpackbits(packed, axis=-1, count=shape[-1]).astype(np.float32)


def score(t: TrainedModel, oracle: RenderedOnce, factors: np.ndarray, *, seed: int, metric_points: int,
          metric_rows: int) -> dict[str, float]:
    """The seven metrics of one model (codes = encoder means); ``seed`` fixes the metrics' own draws."""
    codes = t.mean
    rows = np.random.default_rng(seed).permutation(len(codes))[:metric_rows]
    out: dict[str, float] = {}

    def encode_mean(images):
        return t.encode(images)[0]

    start = time.perf_counter()
    out["beta_vae_score"] = beta_vae_score(
        encode_mean, oracle, seed, num_train=metric_points, num_eval=max(metric_points // 2, 1)
    )["eval_accuracy"]
    factor = factor_vae_score(
        encode_mean, oracle, seed, num_train=metric_points, num_eval=max(metric_points // 2, 1),
        num_variance_estimate=max(metric_points, 5000),
    )
    out["factor_vae_score"] = factor["eval_accuracy"]
    out["mig"] = mig(codes, factors)
    d = dci(codes[rows], factors[rows], seed=seed)
    out["dci_disentanglement"] = d["disentanglement"]
    out["dci_completeness"] = d["completeness"]
    out["dci_informativeness"] = d["informativeness"]
    out["sap"] = sap(codes[rows], factors[rows], seed=seed)
    me = modularity_explicitness(codes[rows], factors[rows], seed=seed)
    out["modularity"] = me["modularity"]
    out["explicitness"] = me["explicitness"]
    out["gaussian_tc"] = gaussian_total_correlation(codes)
    out["metrics_s"] = time.perf_counter() - start
    return out


def _mi_figure(t: TrainedModel, factors: np.ndarray, names: Sequence[str]):
    """Mutual information between each discretised code and each factor, normalised by the factor's entropy."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import mutual_info_score

    from ppzoo.metrics.disentanglement import discretize

    codes = discretize(t.mean, 20)
    mi = np.array(
        [[mutual_info_score(factors[:, k], codes[:, j]) / mutual_info_score(factors[:, k], factors[:, k])
          for k in range(factors.shape[1])] for j in range(codes.shape[1])]
    )
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    image = ax.imshow(mi, cmap="viridis", vmin=0, vmax=max(mi.max(), 1e-6), aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(mi.shape[0]), [f"z{j}" for j in range(mi.shape[0])], fontsize=7)
    ax.set_title(f"{t.label}: I(z_j; v_k) / H(v_k)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    return fig


def _bar_chart(per_seed: pd.DataFrame, seeds: Sequence[int]):
    """Each metric's mean over seeds per model, with a bar from the lowest to the highest seed."""
    import matplotlib.pyplot as plt

    columns = [c for c in METRIC_COLUMNS if c != "gaussian_tc"]
    grouped = per_seed.groupby(level="model", sort=False)[columns]
    mean, low, high = grouped.mean(), grouped.min(), grouped.max()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    width = 0.8 / len(mean)
    positions = np.arange(len(columns))
    for i, name in enumerate(mean.index):
        ax.bar(positions + i * width, mean.loc[name], width, label=name,
               yerr=np.clip([mean.loc[name] - low.loc[name], high.loc[name] - mean.loc[name]], 0, None), capsize=1.5,
               error_kw={"lw": 0.7})
    ax.set_xticks(positions + 0.4 - width / 2, columns, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(f"Disentanglement metrics by model: mean over seeds {', '.join(map(str, seeds))} "
                 "(bars: lowest to highest seed)", fontsize=10)
    ax.legend(fontsize=7, ncol=6, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    fig.tight_layout()
    return fig


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric: ``"mean ± sd"`` over the seeds (sd with ddof=1; just the value for one seed)."""
    columns = [*METRIC_COLUMNS, *MECHANISM_COLUMNS]
    grouped = per_seed.groupby(level="model", sort=False)[columns]
    mean, sd, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    text = mean.copy().astype(object)
    for column in columns:
        digits = 1 if column in MECHANISM_COLUMNS else 3
        text[column] = [f"{m:.{digits}f}" + (f"\u00a0±\u00a0{s:.{digits}f}" if n > 1 else "")  # no line breaks
                        for m, s, n in zip(mean[column], sd[column], count[column])]
    text.insert(0, "seeds", count[columns[0]].astype(int))
    return text


def model_claims(per_seed: pd.DataFrame, seeds: Sequence[int]) -> list[Claim]:
    """The study's claim, from this run's numbers: each regularised model beats the plain VAE on the FactorVAE
    score and on MIG, on the mean over seeds and on every seed (seed s against the VAE of seed s). An ordering
    of trained models needs at least three seeds; with fewer it is n/a and the numbers are still shown."""
    models = list(dict.fromkeys(per_seed.index.get_level_values("model")))
    if "vae" not in models:
        return []

    def values(name: str, column: str) -> np.ndarray:
        return per_seed.xs(name, level="model").loc[list(seeds), column].to_numpy(float)

    out = []
    for name in (n for n in models if n != "vae"):
        parts = [
            ordering_claim({name: values(name, column), "VAE": values("vae", column)}, winner=name, metric=label,
                           section=COMPARISON_SECTION,
                           more_seeds=f"this run trained seed{'s' if len(seeds) > 1 else ''} "
                                      f"{', '.join(map(str, seeds))}; run --seeds 0,1,2")
            for column, label in (("factor_vae_score", "FactorVAE score"), ("mig", "MIG"))
        ]
        mean = {c: (values(name, c).mean(), values("vae", c).mean()) for c in ("factor_vae_score", "mig")}
        over = "one seed" if len(seeds) == 1 else f"means over {len(seeds)} seeds"
        claim = all_of(
            f"{name} beats the plain VAE on the FactorVAE score ({mean['factor_vae_score'][0]:.3f} vs "
            f"{mean['factor_vae_score'][1]:.3f}) and MIG ({mean['mig'][0]:.3f} vs {mean['mig'][1]:.3f}; {over})",
            parts, section=COMPARISON_SECTION)
        if all(p.passed is None for p in parts):  # the same reason twice: say it once
            claim = Claim(claim.name, None, parts[0].detail, COMPARISON_SECTION)
        out.append(claim)
    return out


def _scores(trained: Mapping[str, list[TrainedModel]], ds: Any, args: argparse.Namespace,
            cache: ModelCache | None, train_settings: Mapping[str, dict]) -> dict[tuple[str, int], dict]:
    """Every model and seed scored (or its scores read from the cache when they were made with these settings)."""
    oracle = RenderedOnce(ds)
    factors = ds.truth["factor_indices"]
    settings = {"metric_points": args.metric_points, "metric_rows": args.metric_rows, "seed": args.data_seed}
    out = {}
    for name, models in trained.items():
        for t in models:
            entry = cache.load(name, t.seed, train_settings[name, t.seed]) if cache is not None else None
            cached = entry is not None and entry.get("scores", {}).get("settings") == settings
            if cached:
                out[name, t.seed] = entry["scores"]["values"]
                continue
            print(f"[shapes] {t.label}: metrics ...", flush=True)
            out[name, t.seed] = score(t, oracle, factors, seed=args.data_seed, metric_points=args.metric_points,
                                      metric_rows=args.metric_rows)
            if entry is not None:
                cache.save(name, t.seed, {**entry, "scores": {"settings": settings, "values": out[name, t.seed]}})
    return out


def _results(per_seed: pd.DataFrame, claims: Sequence[Claim], collapse: Mapping[str, Any],
             trained: Mapping[str, list[TrainedModel]], mcmc: Mapping[str, Any], gaps: Mapping[str, Mapping[str, Any]],
             elapsed: float) -> dict[str, Any]:
    """The headline numbers for results.json: per model and seed, per model mean and sd, verdicts, timings."""
    from ppzoo.checks import max_r_hat

    values: dict[str, Any] = {}
    columns = [*METRIC_COLUMNS, *MECHANISM_COLUMNS]
    for (name, seed), row in per_seed[columns].iterrows():  # InfoGAN's mechanism columns are NaN (stored as null)
        values.update({key(name, "seed", seed, c): row[c] for c in columns})
    grouped = per_seed.groupby(level="model", sort=False)[columns]
    for stat, frame in (("mean", grouped.mean()), ("sd", grouped.std(ddof=1)), ("min", grouped.min()),
                        ("max", grouped.max())):
        for name, row in frame.iterrows():
            values.update({key(name, c, stat): row[c] for c in columns})
    word = {True: "PASS", False: "FAIL", None: "n/a"}
    regularised = [n for n in dict.fromkeys(per_seed.index.get_level_values("model")) if n != "vae"]
    for name, claim in zip(regularised, claims):
        values[key(name, "beats_vae")] = word[claim.passed]
    for name, models in trained.items():
        if all(t.label in collapse for t in models):  # InfoGAN has no encoder to collapse
            values[key(name, "collapsed_seeds")] = sum(collapse[t.label].passed is False for t in models)
        values[key(name, "train_s")] = models[-1].seconds
        values[key(name, "seed_steps_per_s")] = models[-1].steps_per_second * models[-1].together
    for name, fit in mcmc.items():
        values[key(name, "nuts_max_r_hat")] = max_r_hat(fit)
        values[key(name, "nuts_s")] = fit.timings["total_s"]
    values.update(encoder_psis_results(gaps))  # the encoder as an importance proposal, per held-out image
    values["metrics_s"] = float(per_seed["metrics_s"].sum())
    values["published_source"] = PUBLISHED_SOURCE
    values["wall_s"] = round(elapsed)
    if PUBLISHED_RANGES:
        for metric, (low, high, _) in PUBLISHED_RANGES.items():
            values[key("published", metric, "low")], values[key("published", metric, "high")] = low, high
    return values


def run(args: argparse.Namespace) -> Path:
    """Train, score, sample, report; returns the report folder."""
    import matplotlib

    matplotlib.use("Agg")
    total_start = time.perf_counter()
    ds = ppzoo.data.load("shapes", image_size=args.image_size, num_data=args.num_data, seed=args.data_seed)
    x = ds.data["x"]
    factors = ds.truth["factor_indices"]
    held_out = ds.sample_factors(args.data_seed + 1, args.posterior_images)
    held_images = ds.observations_from_factors(held_out)
    cache = ModelCache(args.cache) if args.cache else None
    common = {"network": args.network, "batch_size": args.batch_size, "latent_dim": 10}
    specific = hyperparameters(args.full)
    data_settings = {"case": "shapes", "image_size": args.image_size, "num_data": args.num_data, "seed": args.data_seed}
    family = [name for name in args.models if name != "infogan"]
    trained = train_family(
        x, names=family, common=common, specific=specific, seeds=args.seeds, steps=args.steps,
        learning_rate=args.learning_rate, tag="shapes", cache=cache, data_settings=data_settings,
    )
    train_settings = {(name, seed): cache_settings(name, seed, {**common, **specific.get(name, {})}, args.steps,
                                                   args.learning_rate, data_settings)
                      for name in args.models for seed in args.seeds}
    scored = dict(trained)
    if "infogan" in args.models:
        scored["infogan"] = train_infogan_seeds(x, seeds=args.seeds, config={"network": args.network}, steps=args.steps,
                                          batch_size=args.batch_size, generator_lr=1e-3, discriminator_lr=2e-4,
                                          tag="shapes")
    scores = _scores(scored, ds, args, cache, train_settings)
    collapse = collapse_checks({t.label: t for models in trained.values() for t in models})
    rows = {}
    for name, models in scored.items():
        for t in models:
            if t.label not in collapse:  # InfoGAN: no encoder sd, no KL to a prior, a GAN's losses
                rows[name, t.seed] = {**scores[name, t.seed], **{c: np.nan for c in MECHANISM_COLUMNS}}
                continue
            per_dim = collapse[t.label].tables[0][1]
            rows[name, t.seed] = {**scores[name, t.seed], "active_dims": int(per_dim["active"].sum()),
                                  "total_kl": float(per_dim["KL to prior (nats)"].sum()),
                                  "final_loss_per_image": float(np.nanmean(t.losses[-100:]) / len(x))}
    per_seed = pd.DataFrame(rows).T
    per_seed.index.names = ["model", "seed"]
    per_seed = per_seed[[*METRIC_COLUMNS, *MECHANISM_COLUMNS, "metrics_s"]].astype(float)
    summary = summary_table(per_seed)
    first_seed = args.seeds[0]
    firsts = {name: models[0] for name, models in trained.items()}
    settings = {"num_warmup": args.num_warmup, "num_samples": args.num_samples, "num_chains": args.num_chains}
    gaps, mcmc, sections = {}, {}, []
    for name, t in firsts.items():
        print(f"[shapes] {t.label}: {args.engine} on {args.posterior_images} held-out images ...", flush=True)
        mcmc[name], gaps[name] = amortization(
            t, held_images, seed=first_seed, engine=args.engine, true=ds.factors_from_indices(held_out), **settings
        )
        metrics_text = "; ".join(f"{c} {summary.loc[name, c]}" for c in METRIC_COLUMNS)
        sections.append(
            Section(
                f"Model: {name}",
                text=f"<p><b>Config (seed {first_seed}):</b> {html.escape(repr(t.model.config))}</p>"
                f"<p><b>Metrics over seeds {', '.join(map(str, args.seeds))} (mean ± sd):</b> {metrics_text}. "
                f"The figures are seed {first_seed}'s.</p>"
                + "".join(f"<p class='warn'>{html.escape(m.label)}: {html.escape(' | '.join(m.warnings))}</p>"
                          for m in trained[name] if m.warnings),
                figures=[
                    (f"{t.label}: reconstructions of held-out images", reconstruction_figure(t, held_images[:8])),
                    (f"{t.label}: latent traversals around the first held-out image",
                     traversal_figure(t, held_images[0])),
                    (f"{t.label}: which code carries which factor", _mi_figure(t, factors, ds.factor_names)),
                ],
            )
        )

    claims = model_claims(per_seed, args.seeds)
    versions = metric_versions()
    timing = pd.DataFrame({
        "seeds trained together": {n: ms[-1].together for n, ms in scored.items()},
        "loaded from the cache": {n: sum(m.cached for m in ms) for n, ms in scored.items()},
        "train s (those seeds)": {n: round(ms[-1].seconds, 1) for n, ms in scored.items()},
        "seed-steps/s after compiling": {n: round(ms[-1].steps_per_second * ms[-1].together, 1)
                                         for n, ms in scored.items()},
        "metrics s (all seeds)": per_seed["metrics_s"].groupby(level="model", sort=False).sum().round(1),
    })
    timing.index.name = "model"
    spread = len(args.seeds) > 1
    comparison = Section(
        COMPARISON_SECTION,
        text=(
            f"<p>Each model was trained on seeds {', '.join(map(str, args.seeds))} (initial weights, minibatches and "
            "noise differ; the images are the same). Codes are the encoder means. beta_vae_score and "
            "factor_vae_score are evaluation accuracies on fresh images from the oracle "
            f"({args.metric_points} training points, batch 64; the same draws for every model and seed); MIG on "
            f"all {len(x)} training images; DCI (gradient-boosted trees), SAP and modularity/explicitness on "
            f"{args.metric_rows} of them with a 2/3 train split; gaussian_tc (nats, lower = more independent codes) "
            "on all. Factors are the grid indices. "
            f"Metric library versions: {html.escape(', '.join(f'{k} {v}' for k, v in versions.items()))}.</p>"
            + ("<p>The first table gives each metric's mean ± sd over the seeds (sd with n - 1); the second every "
               "seed's numbers. The claims at the top of the page compare each regularised model with the VAE on "
               "the mean and seed by seed. Locatello et al. (2019) report that seeds and hyperparameters move these "
               "metrics as much as the choice of model does; the spread over seeds here shows how much.</p>"
               if spread else
               "<p>One seed: the ranking of the models is not judged (the claims say n/a).</p>")
        ),
        tables=[
            ("Disentanglement metrics per model, mean ± sd over seeds (higher is better)",
             summary[["seeds", *(c for c in METRIC_COLUMNS if c != "gaussian_tc")]], None),
            ("What shows the regularisers acting, mean ± sd over seeds: the Gaussian total correlation of the codes "
             "(nats, lower = more independent), active dimensions (variance of the encoder mean above 0.01, as in "
             "'Posterior collapse'), the encoder's KL to the prior (nats per image) and the final training loss per "
             "image (each model's own objective)",
             summary[["seeds", "gaussian_tc", *MECHANISM_COLUMNS]], None),
            ("Every model and seed", per_seed.set_axis([f"{m} seed {s}" for m, s in per_seed.index], axis=0)
             .rename_axis("model"), None),
            ("Timings (seeds of one model trained together in one compiled program)", timing, None),
        ],
        figures=[("Metrics by model", _bar_chart(per_seed, args.seeds)),
                 (f"Training objective of each model (seed {first_seed})", loss_figure(firsts, len(x)))],
    )
    first = next(iter(mcmc))
    gap_section = Section(
        "Amortization gap: encoder vs exact posterior (NUTS)",
        text=amortization_text(args.posterior_images, args.engine, settings)
        + f"<p>The models of seed {first_seed}.</p>",
        tables=[("Encoder vs NUTS on held-out images", amortization_table(gaps, mcmc, collapse_of(collapse, firsts)),
                 None)],
        checks=amortization_checks(mcmc, args.engine, skip=[first]),
    )
    elapsed = time.perf_counter() - total_start
    print(f"[shapes] writing the report ({elapsed:.0f} s so far) ...", flush=True)
    info = {k: v for k, v in ds.info.items() if k not in ("factor_values",)}
    shown = {k: v for k, v in vars(args).items() if k != "out"}
    out = ppzoo.report(
        {f"{first}_seed{first_seed}_{args.engine}_held_out": mcmc[first]},
        args.out,
        title="ppzoo case study: six disentangling VAEs on dSprites-style shapes",
        description=describe(__doc__) +
        f"<p>Run settings: {html.escape(', '.join(f'{k}={v}' for k, v in shown.items()))}; total time "
        f"{elapsed / 60:.1f} min before the report.</p>"
        f"<p>The 'Engine' section below is the {html.escape(first)} model's (seed {first_seed}) NUTS fit on the "
        "held-out images (ppzoo.report describes one model's fits); the six models are compared in the sections "
        "after it.</p>",
        sections=[collapse_section(collapse, len(x)), comparison, gap_section, *sections],
        data_info=info,
        claims=[*claims, collapse_claim(collapse)],
    )
    per_seed.to_csv(Path(out) / "comparison.csv")
    headline = _results(per_seed, claims, collapse, scored, mcmc, gaps, elapsed)
    recorded = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, bool)) and k not in ("out", "cache")}
    recorded["seeds"] = ",".join(map(str, args.seeds))
    recorded["num_seeds"] = len(args.seeds)
    write_results(out, "shapes_full" if args.full else "shapes", headline, settings=recorded)
    return out


def collapse_of(checks: Mapping[str, Any], models: Mapping[str, TrainedModel]) -> dict[str, Any]:
    """The collapse checks of ``models`` (name -> TrainedModel), keyed by model name."""
    return {name: checks[t.label] for name, t in models.items()}


#: ``main(argv=None) -> Path``: parse, run, print the report's path last (shared by every case study).
main = main_for(parse_args, run)


if __name__ == "__main__":
    main()
