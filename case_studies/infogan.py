"""Case study: InfoGAN on dSprites-style shapes, scored beside the plain VAE, then inverted by NUTS.

InfoGAN (Chen et al. 2016) is a NumPyro program here: one categorical code (three categories, for the
three shapes), five continuous codes Uniform(-1, 1) and five dimensions of incompressible noise feed a
neural generator (``ppzoo.models.get("infogan")``). ``engine="adversarial"`` trains it against a
discriminator whose trunk carries a second head, the Q network, which reads the codes back from generated
images; generator and Q maximise the mutual-information bound with lambda = 1 for the category and 0.1 for
the continuous codes (the paper's advice). Each seed is trained on the same images as the VAE family of
``ppzoo run shapes`` (32 x 32, 10,000 images, MLPs, 5000 steps, batch 64, seeds 0, 1 and 2) and scored with
the same disentanglement metrics on the same oracle draws (``ppzoo.case_studies.shapes.score``); the codes
scored are the Q network's answer (most probable category, then the code means). The plain VAE is trained
beside it on the same seeds (``--baseline``), so the page states whether InfoGAN beats it on the FactorVAE
score and MIG. The page shows generated images (one row per category), latent traversals (one code varied
from -1 to 1, the others held), the generator, discriminator and sleep (Q) losses, and the metric tables.

The closed loop: the trained generator is a program, so NUTS samples the posterior of the codes and noise of
a few held-out real images under a Gaussian pixel likelihood (the category summed out), with the generator
held fixed (``ppzoo.models.infogan.posterior_model``). Its r_hat and ESS are checked, and its code estimates
and the Q network's amortized answer are set against the true factors (Hungarian-matched correlations,
``ppzoo.amortization.amortization_gap``), as the iVAE study does for its encoder.

``--full`` is the paper-scale run: 64 x 64 images, the conv networks of disentanglement_lib as generator and
discriminator trunk, 100,000 images and 100,000 steps; on two CPU cores it is a projection, not a run
(the page of a default run gives the measured steps per second).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import html
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer import init_to_uniform

import ppzoo
from ppzoo.amortization import amortization_gap
from ppzoo.case_studies._vae_common import ModelCache, TrainedInfoGAN, describe, grid_image, train_family
from ppzoo.case_studies._vae_common import train_infogan_seeds as train_seeds
from ppzoo.case_studies.command import main_for, parse_seeds
from ppzoo.case_studies.shapes import METRIC_COLUMNS, RenderedOnce, model_claims, score
from ppzoo.results import write_results
from ppzoo.checks import closed_loop_section, convergence_check, convergence_table, max_r_hat
from ppzoo.metrics import metric_versions
from ppzoo.models import infogan
from ppzoo.report import Claim, Section

__all__ = ["main", "parse_args", "run", "TrainedInfoGAN", "train_seeds", "init_to_q", "invert",
           "samples_figure", "traversal_figure", "loss_figure"]

COMPARISON_SECTION = "InfoGAN beside the plain VAE: disentanglement metrics"
INVERSION_SECTION = "Closed loop: NUTS inverts the generator"


# ------------------------------------------------------------------------------------------------- figures


def _smooth(values: np.ndarray, width: int) -> np.ndarray:
    return values if len(values) < width else np.convolve(values, np.ones(width) / width, mode="valid")


def loss_figure(t: TrainedInfoGAN):
    """Generator (non-saturating loss minus lambda E log q), discriminator and sleep (Q's -E log q) per step."""
    import matplotlib.pyplot as plt

    names = t.losses.dtype.names
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.5))
    width = max(1, len(t.losses) // 50)
    for ax, name in zip(np.atleast_1d(axes), names):
        values = _smooth(np.asarray(t.losses[name], float), width)
        ax.plot(np.arange(len(values)) + width // 2, values, lw=1.0)
        ax.set_title(f"{name} (final {np.mean(t.losses[name][-100:]):.3f})", fontsize=9)
        ax.set_xlabel("generator step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{t.label}: losses (moving average)", fontsize=10)
    fig.tight_layout()
    return fig


def _draws(config: Any, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    keys = jax.random.split(jax.random.key(seed), 2)
    code = np.asarray(jax.random.uniform(keys[0], (n, config.num_continuous), minval=-1.0, maxval=1.0))
    z = np.asarray(jax.random.normal(keys[1], (n, config.noise_dim)))
    return code, z


def samples_figure(t: TrainedInfoGAN, *, columns: int = 10, seed: int = 0):
    """Generated images: one row per category, the same continuous codes and noise down each column."""
    import matplotlib.pyplot as plt

    config = t.model.config
    code, z = _draws(config, columns, seed)
    rows = [infogan.generate(t.model, t.params, np.full(columns, k), code, z, t.image_shape)
            for k in range(config.num_categories)]
    canvas = grid_image(np.stack(rows))
    fig, ax = plt.subplots(figsize=(0.8 * columns + 1.2, 0.8 * config.num_categories + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = canvas.shape[0] / config.num_categories
    ax.set_yticks([cell * (k + 0.5) for k in range(config.num_categories)],
                  [f"category {k}" for k in range(config.num_categories)], fontsize=7)
    ax.set_xticks([])
    ax.set_title(f"{t.label}: generated images (rows: category; columns: codes and noise drawn from the prior)", fontsize=9)
    return fig


def traversal_figure(t: TrainedInfoGAN, *, steps: int = 9, seed: int = 0):
    """One row per continuous code, varied from -1 to 1 with the other codes at 0, noise at one draw; one
    block per category."""
    import matplotlib.pyplot as plt

    config = t.model.config
    c, k = config.num_continuous, config.num_categories
    values = np.linspace(-1.0, 1.0, steps)
    _, z = _draws(config, 1, seed)
    frames = []
    for category in range(k):
        codes = np.zeros((c, steps, c), np.float32)
        for j in range(c):
            codes[j, :, j] = values
        images = infogan.generate(t.model, t.params, np.full(c * steps, category), codes.reshape(-1, c),
                                  np.repeat(z, c * steps, axis=0), t.image_shape)
        frames.append(images.reshape(c, steps, *t.image_shape))
    canvas = grid_image(np.concatenate(frames))
    fig, ax = plt.subplots(figsize=(0.7 * steps + 1.6, 0.7 * c * k + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = canvas.shape[0] / (c * k)
    ax.set_yticks([cell * (i + 0.5) for i in range(c * k)],
                  [f"cat {i // c}: code {i % c}" for i in range(c * k)], fontsize=6)
    cell_w = canvas.shape[1] / steps
    ax.set_xticks([cell_w * (j + 0.5) for j in range(steps)], [f"{v:+.2f}" for v in values], fontsize=7)
    ax.set_title(f"{t.label}: latent traversals (one continuous code varied, others 0)", fontsize=9)
    return fig


# ------------------------------------------------------------------------------------------------- inversion


def init_to_q(site: dict | None = None, *, mean: Any, sd: Any):
    """NumPyro init strategy: each chain starts ``code`` at its own draw from Q's answer (clipped into (-0.95,
    0.95)); other sites as ``init_to_uniform``. Pass ``functools.partial(init_to_q, mean=m, sd=s)``."""
    if site is None:
        return functools.partial(init_to_q, mean=mean, sd=sd)
    if site["type"] == "sample" and site["name"] == "code" and not site["is_observed"]:
        draw = jnp.asarray(mean) + jnp.asarray(sd) * jax.random.normal(site["kwargs"]["rng_key"], jnp.shape(mean))
        return jnp.clip(draw, -0.95, 0.95)
    return init_to_uniform(site)


def invert(t: TrainedInfoGAN, images: np.ndarray, true: np.ndarray, *, pixel_scale: float, seed: int,
           num_warmup: int, num_samples: int, num_chains: int) -> tuple[Any, dict[str, Any]]:
    """NUTS on the codes and noise of ``images`` with the generator held fixed, against the Q network.

    ``true``: the images' continuous factors ``(n, k)``; the gap's MCC columns match codes to them.
    """
    q = t.codes(images)
    fit = ppzoo.fit(infogan.posterior_model(t.model, pixel_scale), {"x": images}, engine="nuts", seed=seed,
                    params={"decoder$params": t.params["decoder$params"]}, num_warmup=num_warmup,
                    num_samples=num_samples, num_chains=num_chains,
                    init_strategy=functools.partial(init_to_q, mean=q.code, sd=q.code_scale))
    gap = amortization_gap(q.code, q.code_scale, fit.samples["code"], true=true)
    gap["q_category"] = q.category
    gap["nuts_category"] = np.asarray(fit.samples["category_probs"]).mean(axis=(0, 1)).argmax(axis=1)
    return fit, gap


def _category_accuracy(predicted: np.ndarray, shape: np.ndarray, k: int) -> float:
    """Accuracy of ``predicted`` categories for the true shapes under the best one-to-one relabelling."""
    from scipy.optimize import linear_sum_assignment

    counts = np.zeros((k, k))
    np.add.at(counts, (predicted.astype(int), shape.astype(int)), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(shape))


# ------------------------------------------------------------------------------------------------- the run


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ppzoo run infogan", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="report folder (default reports/infogan; --full reports/infogan_full)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="training seeds (default 0,1,2, as shapes)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the images and the metrics' draws (default 0)")
    parser.add_argument("--full", action="store_true", help="64 x 64, conv networks, 100,000 images and steps (GPU-sized)")
    parser.add_argument("--cache", default=None, help="folder of finished VAE baselines (shared with ppzoo run shapes --cache)")
    parser.add_argument("--num-data", type=int, default=None, help="training images (default 10000; --full 100000)")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per seed (default 5000, the VAE family's; --full 100000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--generator-lr", type=float, default=1e-3, help="Adam for generator and Q (Chen et al.: 1e-3)")
    parser.add_argument("--discriminator-lr", type=float, default=2e-4, help="Adam for the discriminator (Chen et al.: 2e-4)")
    parser.add_argument("--baseline", choices=("vae", "none"), default="vae",
                        help="train the plain VAE on the same seeds, images and budget as ppzoo run shapes (default vae)")
    parser.add_argument("--vae-steps", type=int, default=None, help="SVI steps of the VAE baseline (default 5000, as shapes)")
    parser.add_argument("--hidden", default="256,256", help="hidden widths of the MLPs (default 256,256)")
    parser.add_argument("--metric-points", type=int, default=None, help="oracle metrics' training points (default 1000; --full 10000)")
    parser.add_argument("--metric-rows", type=int, default=None, help="codes for DCI, SAP, modularity (default 3000; --full 15000)")
    parser.add_argument("--posterior-images", type=int, default=4, help="held-out images NUTS inverts (the issue asks >= 4; default 4)")
    parser.add_argument("--pixel-scale", type=float, default=0.1, help="sd of the Gaussian pixel likelihood of the inversion")
    parser.add_argument("--num-warmup", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=1000)
    parser.add_argument("--num-chains", type=int, default=3)
    args = parser.parse_args(argv)
    full = args.full
    args.out = args.out or ("reports/infogan_full" if full else "reports/infogan")
    args.image_size = 64 if full else 32
    args.network = "conv" if full else "mlp"
    args.num_data = args.num_data or (100_000 if full else 10_000)
    args.steps = args.steps or (100_000 if full else 5000)
    args.vae_steps = args.vae_steps or (300_000 if full else 5000)
    args.metric_points = args.metric_points or (10_000 if full else 1000)
    args.metric_rows = min(args.metric_rows or (15_000 if full else 3000), args.num_data)
    try:
        args.hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
    except ValueError:
        parser.error(f"--hidden must be comma-separated positive integers, e.g. 256,256; got {args.hidden!r}")
    for name in ("num_data", "steps", "batch_size", "metric_points", "metric_rows", "num_samples", "num_chains", "vae_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(args, name)}")
    if args.posterior_images < 1:
        parser.error(f"--posterior-images must be a positive integer; got {args.posterior_images}")
    if args.num_data < args.batch_size:
        parser.error(f"--num-data {args.num_data} is below --batch-size {args.batch_size}; use more images")
    if not args.pixel_scale > 0:
        parser.error(f"--pixel-scale must be positive; got {args.pixel_scale}")
    return args


def summary_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Each model's metrics as "mean ± sd" over its seeds (sd with n - 1; the mean alone for one seed)."""
    grouped = per_seed.groupby(level="model", sort=False)[list(METRIC_COLUMNS)]
    mean, sd, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    text = pd.DataFrame(index=mean.index)
    for column in METRIC_COLUMNS:
        text[column] = [f"{m:.3f}" + (f"\u00a0±\u00a0{s:.3f}" if n > 1 else "")
                        for m, s, n in zip(mean[column], sd[column], count[column])]
    text.insert(0, "seeds", count[METRIC_COLUMNS[0]].astype(int))
    return text


def _long(per_seed: pd.DataFrame) -> pd.DataFrame:
    """``metrics.csv``: one row per (model, seed, metric)."""
    frame = per_seed.reset_index().melt(id_vars=["model", "seed"], var_name="metric", value_name="value")
    return frame.sort_values(["model", "seed", "metric"], kind="stable").reset_index(drop=True)


def run(args: argparse.Namespace) -> Path:
    """Train, score, invert, report; returns the report folder."""
    import matplotlib

    matplotlib.use("Agg")
    total_start = time.perf_counter()
    ds = ppzoo.data.load("shapes", image_size=args.image_size, num_data=args.num_data, seed=args.data_seed)
    x = ds.data["x"]
    factors = ds.truth["factor_indices"]
    config = {"network": args.network, "hidden": args.hidden}
    gans = train_seeds(x, seeds=args.seeds, config=config, steps=args.steps, batch_size=args.batch_size,
                       generator_lr=args.generator_lr, discriminator_lr=args.discriminator_lr)
    trained: dict[str, list] = {"infogan": gans}
    if args.baseline == "vae":
        data_settings = {"case": "shapes", "image_size": args.image_size, "num_data": args.num_data, "seed": args.data_seed}
        vaes = train_family(x, names=["vae"], common={"network": args.network, "batch_size": args.batch_size,
                                                      "latent_dim": 10}, specific={}, seeds=args.seeds,
                            steps=args.vae_steps, learning_rate=1e-4 if args.full else 1e-3, tag="infogan",
                            cache=ModelCache(args.cache) if args.cache else None, data_settings=data_settings)
        trained = {"vae": vaes["vae"], **trained}
    oracle = RenderedOnce(ds)
    rows = {}
    for name, models in trained.items():
        for t in models:
            print(f"[infogan] {t.label}: metrics ...", flush=True)
            rows[name, t.seed] = score(t, oracle, factors, seed=args.data_seed, metric_points=args.metric_points,
                                       metric_rows=args.metric_rows)
    per_seed = pd.DataFrame(rows).T
    per_seed.index.names = ["model", "seed"]
    per_seed = per_seed[[*METRIC_COLUMNS, "metrics_s"]].astype(float)
    claims = [dataclasses.replace(c, section=COMPARISON_SECTION)  # shapes' claim, linked to this page's table
              for c in (model_claims(per_seed, args.seeds) if args.baseline == "vae" else [])]

    # Shape accuracy of Q's category on the training images (the category has no metric of its own above).
    k = gans[0].model.config.num_categories
    shape_column = list(ds.factor_names).index("shape") if "shape" in ds.factor_names else 0
    category_accuracy = {t.seed: _category_accuracy(t.mean[:, 0], factors[:, shape_column], k) for t in gans}

    first = gans[0]
    held = ds.sample_factors(args.data_seed + 1, args.posterior_images)
    images = ds.observations_from_factors(held)
    true = ds.factors_from_indices(held)
    continuous = [i for i, n in enumerate(ds.factor_names) if n != "shape"]
    print(f"[infogan] {first.label}: NUTS on {args.posterior_images} held-out images ...", flush=True)
    nuts, gap = invert(first, images, true[:, continuous], pixel_scale=args.pixel_scale, seed=args.seeds[0],
                       num_warmup=args.num_warmup, num_samples=args.num_samples, num_chains=args.num_chains)
    # The sampled sites; category_probs is a function of them, often exactly 0 or 1 (r_hat undefined).
    sampled = ["code", "z"]
    check = convergence_check(nuts, f"infogan seed {first.seed} NUTS inversion, held-out (code, z)",
                              table=convergence_table(nuts, sites=sampled))
    r_hat = max_r_hat(nuts, sites=sampled)
    table = check.tables[0][1] if check.tables else None
    min_ess = float(table[["min ESS bulk", "min ESS tail"]].min().min()) if table is not None else float("nan")
    gap_row = {key: gap[key] for key in ("w2_gaussian", "mean_shift", "sd_ratio", "interval_coverage", "mcc_encoder",
                                         "mcc_mcmc") if key in gap}
    gap_row.update({"max r_hat": r_hat, "min ESS": min_ess, "divergences": int(np.asarray(nuts.sample_stats["diverging"]).sum()),
                    "NUTS s": round(nuts.timings["total_s"], 1),
                    "Q shape accuracy": _category_accuracy(gap["q_category"], held[:, shape_column], k),
                    "NUTS shape accuracy": _category_accuracy(gap["nuts_category"], held[:, shape_column], k)})
    inversion_claims = [
        Claim(f"NUTS inversion converges: max r_hat {r_hat:.3f} <= 1.01 on the codes and noise of {len(images)} "
              "real images", bool(np.isfinite(r_hat) and r_hat <= 1.01 and len(images) >= 4),
              f"{args.num_chains} chains x {args.num_warmup} warmup + {args.num_samples} draws; min ESS {min_ess:.0f}; "
              f"the issue asks >= 4 images.", INVERSION_SECTION),
    ]
    if "mcc_mcmc" in gap and "mcc_encoder" in gap:
        inversion_claims.append(Claim(
            f"NUTS's code estimates are at least as close to the true factors as Q's (MCC {gap['mcc_mcmc']:.3f} vs "
            f"{gap['mcc_encoder']:.3f})", bool(gap["mcc_mcmc"] >= gap["mcc_encoder"]),
            f"Hungarian-matched |correlation| of posterior means (NUTS) and Q means with the {len(continuous)} "
            f"continuous factors over {len(images)} held-out images (few images: a noisy number).", INVERSION_SECTION))

    versions = metric_versions()
    summary = summary_table(per_seed)
    timing = pd.DataFrame({
        "train s per seed": {n: round(float(np.mean([t.seconds for t in ms])), 1) for n, ms in trained.items()},
        "steps/s (per seed, compile included)": {n: round(float(np.mean([t.steps_per_second for t in ms])), 1)
                                                 for n, ms in trained.items()},
        "steps": {"infogan": args.steps, **({"vae": args.vae_steps} if "vae" in trained else {})},
    })
    timing.index.name = "model"
    comparison = Section(
        COMPARISON_SECTION,
        text=(f"<p>Seeds {', '.join(map(str, args.seeds))}; the same images, oracle draws and metric settings as "
              "<code>ppzoo run shapes</code> (" f"{args.metric_points} oracle points, {args.metric_rows} codes for DCI, "
              "SAP and modularity). InfoGAN's codes are the Q network's: the most probable category, then the five "
              "code means. Q's shape accuracy on the training images (best relabelling of categories to shapes): "
              + ", ".join(f"seed {s} {a:.3f}" for s, a in category_accuracy.items())
              + f". Metric library versions: {html.escape(', '.join(f'{k} {v}' for k, v in versions.items()))}.</p>"),
        tables=[("Disentanglement metrics, mean ± sd over seeds", summary[["seeds", *METRIC_COLUMNS]], None),
                ("Every model and seed", per_seed.set_axis([f"{m} seed {s}" for m, s in per_seed.index], axis=0)
                 .rename_axis("model"), None),
                ("Timings (on the machine and load of this run)", timing, None)],
    )
    gan_section = Section(
        f"InfoGAN seed {first.seed}: samples, traversals, losses",
        text=(f"<p>Config: {html.escape(repr(first.model.config))}. Generator Adam {args.generator_lr}, discriminator "
              f"{args.discriminator_lr} (beta1 = 0.5), batch {args.batch_size}, {args.steps} steps; "
              + "".join(f"<span class='warn'>{html.escape(t.label)}: {html.escape(' | '.join(t.warnings))}</span> "
                        for t in gans if t.warnings) + "</p>"),
        figures=[("Generated images", samples_figure(first)), ("Latent traversals", traversal_figure(first)),
                 ("Losses", loss_figure(first))],
    )
    inversion = closed_loop_section([check], title=INVERSION_SECTION)
    inversion.text = (
        f"<p>NUTS ({args.num_chains} chains x {args.num_warmup} warmup + {args.num_samples} draws) sampled the codes and "
        f"noise of {len(images)} held-out images under a Gaussian pixel likelihood (sd {args.pixel_scale}) with "
        f"seed {first.seed}'s generator fixed and the category summed out; each chain starts at a draw from Q's "
        "answer. The amortization gap compares Q's Gaussian for the continuous codes with the posterior; the MCC "
        "columns match the posterior means and Q's means to the true scale, orientation and positions.</p>"
        + inversion.text)
    inversion.tables = [("Q network vs NUTS on held-out images", pd.DataFrame({"infogan": gap_row}).T, None)]
    elapsed = time.perf_counter() - total_start
    print(f"[infogan] writing the report ({elapsed:.0f} s so far) ...", flush=True)
    shown = {k: v for k, v in vars(args).items() if k != "out"}
    out = ppzoo.report(
        {f"infogan_seed{first.seed}_nuts_inversion": nuts}, args.out,
        title="ppzoo case study: InfoGAN on dSprites-style shapes",
        description=describe(__doc__) + f"<p>Run settings: {html.escape(', '.join(f'{k}={v}' for k, v in shown.items()))}; "
        f"{elapsed / 60:.1f} min before the report. The 'Engine' section is the NUTS inversion; metrics.csv holds "
        "the metric table (model, seed, metric, value).</p>",
        sections=[comparison, gan_section, inversion],
        data_info={k: v for k, v in ds.info.items() if k != "factor_values"},
        claims=[*claims, *inversion_claims],
    )
    _long(per_seed).to_csv(Path(out) / "metrics.csv", index=False)  # the format (replaces the report's)
    headline = {"wall_s": round(elapsed), "inversion_max_r_hat": r_hat, "inversion_min_ess": min_ess,
                "inversion_images": len(images)}
    for name in trained:
        for metric in ("factor_vae_score", "mig"):
            headline[f"{name}_{metric}_mean"] = float(per_seed.loc[name, metric].mean())
            headline[f"{name}_{metric}_sd"] = float(per_seed.loc[name, metric].std(ddof=1)) if len(args.seeds) > 1 else 0.0
    for key in ("mcc_mcmc", "mcc_encoder"):
        headline[f"inversion_{key}"] = float(gap.get(key, float("nan")))
    write_results(out, "infogan", headline, settings={"seeds": len(args.seeds), "steps": args.steps,
                                                      "image_size": args.image_size, "network": args.network})
    return out


#: ``main(argv=None) -> Path``: parse, run, print the report's path last.
main = main_for(parse_args, run)


if __name__ == "__main__":
    main()
