"""What the two VAE-family case studies share: training the six models, figures, the amortization gap.

Only the public API is used: ``ppzoo.fit``, the zoo models and their helpers in ``ppzoo.models.vae``,
``ppzoo.amortization.amortization_gap``, ``ppzoo.report.Section`` and the checks in ``ppzoo.checks``
(posterior collapse, convergence).
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

import ppzoo
from ppzoo.amortization import amortization_gap
from ppzoo.checks import closed_loop_section, convergence_check, posterior_collapse, unconverged_note
from ppzoo.models.vae import decoder_function, encode, posterior_model
from ppzoo.report import Claim, Section

__all__ = [
    "MODELS",
    "TrainedModel",
    "train_family",
    "loss_figure",
    "reconstruction_figure",
    "traversal_figure",
    "amortization",
    "amortization_table",
    "grid_image",
    "describe",
    "collapse_checks",
    "collapse_section",
    "amortization_checks",
    "collapse_claim",
    "COLLAPSE_SECTION",
]

#: Title of the posterior-collapse section (claims link to it).
COLLAPSE_SECTION = "Posterior collapse: active latent dimensions"

#: The six registry names, in the order of the reports.
MODELS: tuple[str, ...] = ("vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")


@dataclasses.dataclass
class TrainedModel:
    """One SVI fit of a family member and what the reports need from it."""

    name: str
    model: Any
    fit: Any
    seconds: float
    mean: np.ndarray  # encoder means of the training images
    sd: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(np.shape(self.fit.data["x"])[1:])


def train_family(
    x: np.ndarray,
    *,
    names: Sequence[str],
    common: Mapping[str, Any],
    specific: Mapping[str, Mapping[str, Any]],
    seed: int,
    steps: int,
    learning_rate: float,
    tag: str,
) -> dict[str, TrainedModel]:
    """Fit every model by SVI on the same images with the same seed; encode all images afterwards."""
    out = {}
    for name in names:
        model = ppzoo.models.get(name, **common, **specific.get(name, {}))
        print(f"[{tag}] {name}: {steps} SVI steps ...", flush=True)
        start = time.perf_counter()
        fit = ppzoo.fit(model, {"x": x}, engine="svi", seed=seed, steps=steps, learning_rate=learning_rate, num_draws=20)
        seconds = time.perf_counter() - start
        mean, sd = encode(fit, x)
        print(
            f"[{tag}]   {seconds:.0f} s ({steps / max(fit.timings['run_s'], 1e-9):.0f} steps/s after compiling); "
            f"final loss per image {np.mean(fit.losses[-100:]) / len(x):.2f}",
            flush=True,
        )
        out[name] = TrainedModel(name, model, fit, seconds, mean, sd)
    return out


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    if len(values) < width:
        return values
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="valid")


def loss_figure(trained: Mapping[str, TrainedModel], num_data: int):
    """The training loss per image (negative ELBO plus the model's penalty), one panel per model.

    Each panel has its own scale: the penalties (and beta-TCVAE's constant (K - 1) log(NM) offset of the
    minibatch-weighted TC estimate) make the objectives of different models incomparable.
    """
    import matplotlib.pyplot as plt

    names = list(trained)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        per_image = np.asarray(trained[name].fit.losses) / num_data
        width = max(1, len(per_image) // 50)
        smooth = _moving_average(per_image, width)
        ax.plot(np.arange(len(smooth)) + width // 2, smooth, lw=1.0)
        finite = smooth[np.isfinite(smooth)]
        if finite.size:
            low, high = finite.min(), np.quantile(finite, 0.95)
            ax.set_ylim(low - 0.05 * (high - low + 1e-9), high + 0.05 * (high - low + 1e-9))
        ax.set_title(f"{name} (final {np.mean(per_image[-100:]):.1f})", fontsize=9)
        ax.set_xlabel("SVI step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("loss per image (nats)", fontsize=8)
    fig.suptitle("Training objective per image (moving average of the SVI loss / N)", fontsize=10)
    fig.tight_layout()
    return fig


def describe(docstring: str) -> str:
    """The docstring's second paragraph as HTML (``code`` spans rendered)."""
    from ppzoo.report import rst_to_html

    return "<p>" + rst_to_html(docstring.split("\n\n")[1]) + "</p>"


def grid_image(images: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile ``(rows, cols, H, W)`` images into one array with a grey border between cells."""
    rows, cols, h, w = images.shape
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 0.5, dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            top, left = pad + r * (h + pad), pad + c * (w + pad)
            canvas[top : top + h, left : left + w] = images[r, c]
    return canvas


def reconstruction_figure(t: TrainedModel, images: np.ndarray):
    """Originals (top) and the decoder's pixel probabilities at the encoder mean (bottom)."""
    import matplotlib.pyplot as plt

    mean, _ = encode(t.fit, images)
    decode = decoder_function(t.model, t.fit.params, t.image_shape)
    recon = np.asarray(decode(mean))
    canvas = grid_image(np.stack([images, recon]))
    fig, ax = plt.subplots(figsize=(min(1.0 * len(images), 10), 2.4))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([canvas.shape[0] * 0.25, canvas.shape[0] * 0.75], ["data", "reconstruction"])
    ax.set_xticks([])
    ax.set_title(f"{t.name}: reconstructions")
    return fig


def traversal_figure(t: TrainedModel, image: np.ndarray, *, span: float = 2.0, steps: int = 9):
    """One row per latent dimension: the decoded image as that dimension goes from -span to +span.

    The other dimensions stay at the encoder mean of ``image``. Rows are labelled with the dimension's
    average encoder sd over the training images: near 1 means the dimension is unused (it matches the
    prior and the decoder ignores it).
    """
    import matplotlib.pyplot as plt

    mean, _ = encode(t.fit, image[None])
    k = mean.shape[1]
    values = np.linspace(-span, span, steps)
    codes = np.repeat(np.repeat(mean, k, axis=0)[:, None, :], steps, axis=1)  # (k, steps, k)
    for dim in range(k):
        codes[dim, :, dim] = values
    decode = decoder_function(t.model, t.fit.params, t.image_shape)
    frames = np.asarray(decode(codes.reshape(-1, k))).reshape(k, steps, *t.image_shape)
    canvas = grid_image(frames)
    fig, ax = plt.subplots(figsize=(0.75 * steps + 1.5, 0.75 * k + 0.6))
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    cell = canvas.shape[0] / k
    sd = t.sd.mean(0)
    ax.set_yticks([cell * (i + 0.5) for i in range(k)], [f"z{i} (sd {sd[i]:.2f})" for i in range(k)], fontsize=7)
    cell_w = canvas.shape[1] / steps
    ax.set_xticks([cell_w * (j + 0.5) for j in range(steps)], [f"{v:+.1f}" for v in values], fontsize=7)
    ax.set_title(f"{t.name}: latent traversals (one row per dimension)")
    return fig


def amortization(
    t: TrainedModel,
    images: np.ndarray,
    *,
    seed: int,
    engine: str,
    num_warmup: int,
    num_samples: int,
    num_chains: int,
    true: np.ndarray | None = None,
) -> tuple[Any, dict[str, Any]]:
    """NUTS (or BlackJAX) on the latents of ``images`` with the learned decoder fixed, against the encoder.

    The exact posterior is that of the plain generative model (:func:`ppzoo.models.vae.posterior_model`:
    no beta scaling, no penalty, no subsampling); ``ppzoo.amortization.amortization_gap`` compares it with
    the encoder on the same images.
    """
    exact = posterior_model(t.model)
    fit = ppzoo.fit(
        exact,
        {"x": images},
        engine=engine,
        seed=seed,
        params=t.fit.params,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
    )
    mean, sd = encode(t.fit, images)
    gap = amortization_gap(mean, sd, fit.samples["z"], true=true)
    return fit, gap


AMORTIZATION_COLUMNS = {
    "w2_gaussian": "W2 (Gaussian fit)",
    "w2_marginal": "W2 (marginals)",
    "mean_shift": "|mean shift| / posterior sd",
    "sd_ratio": "encoder sd / posterior sd",
    "interval_coverage": "posterior mass in encoder 90% interval",
    "max_abs_correlation": "max |posterior corr|",
    "mcc_encoder": "MCC encoder",
    "mcc_mcmc": "MCC NUTS",
}


def amortization_table(gaps: Mapping[str, dict[str, Any]], fits: Mapping[str, Any],
                       collapse: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """One row per model: the gap's scalars and the NUTS diagnostics.

    A row whose NUTS fit has not converged (r_hat above 1.01) is labelled so ("vae (unconverged: r_hat 1.05)"):
    its gap numbers compare the encoder with chains that do not yet describe the posterior. A model whose
    encoder has collapsed (``collapse[name].passed is False``) is labelled "collapsed": with no active latent
    dimension its encoder and exact posterior are both the prior, so they agree trivially.
    """
    rows = {}
    for name, gap in gaps.items():
        row = {label: gap[key] for key, label in AMORTIZATION_COLUMNS.items() if key in gap}
        check = convergence_check(fits[name], name)
        table = check.tables[0][1] if check.tables else None
        if table is not None:
            row["max r_hat"] = float(table["max r_hat"].max())
            row["min ESS"] = float(table[["min ESS bulk", "min ESS tail"]].min().min())
        stats = fits[name].sample_stats
        row["divergences"] = int(np.asarray(stats["diverging"]).sum())
        row["NUTS s"] = round(fits[name].timings["total_s"], 1)
        marks = [note for note in (unconverged_note(fits[name]),) if note]
        if collapse is not None and name in collapse and collapse[name].passed is False:
            marks.append("collapsed: 0 active dims")
        rows[name + (f" ({'; '.join(marks)})" if marks else "")] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "model"
    return frame


def amortization_checks(fits: Mapping[str, Any], engine: str, *, skip: Sequence[str] = ()) -> list:
    """The convergence verdict of each model's MCMC fit on the held-out images (``skip``: those the page's own
    engine section already judges), for the verdict strip."""
    return [convergence_check(fit, f"{name} {engine}, held-out") for name, fit in fits.items() if name not in skip]


def collapse_checks(trained: Mapping[str, TrainedModel]) -> dict[str, Any]:
    """Posterior collapse of each model's encoder on its training images (:func:`ppzoo.checks.posterior_collapse`)."""
    return {name: posterior_collapse(t.mean, t.sd, label=name) for name, t in trained.items()}


def collapse_section(checks: Mapping[str, Any], num_images: int) -> Section:
    """One section: a verdict line per model, then its active dimensions and KL per dimension side by side."""
    section = closed_loop_section(list(checks.values()), title=COLLAPSE_SECTION)
    activity, kl = {}, {}
    for name, check in checks.items():
        per_dim = check.tables[0][1]
        activity[name] = per_dim["activity Var_x(E_q[z|x])"]
        kl[name] = per_dim["KL to prior (nats)"]
    activity_frame, kl_frame = pd.DataFrame(activity).T, pd.DataFrame(kl).T
    for frame in (activity_frame, kl_frame):
        frame.index.name = "model"
    active = (activity_frame > 0.01).sum(axis=1)
    kl_frame.insert(0, "active dims", active)
    kl_frame.insert(1, "total KL", kl_frame.drop(columns="active dims").sum(axis=1))
    collapsed = pd.Series([c.passed is False for c in checks.values()], index=kl_frame.index)
    section.text = (
        f"<p>On the {num_images} training images: a latent dimension is <b>active</b> when the variance over the "
        "images of its encoder mean exceeds 0.01 (Burda, Grosse &amp; Salakhutdinov 2016); the KL of each "
        "dimension is KL(q(z_j | x) || N(0, 1)) averaged over the images, in nats. A model with no active dimension "
        "has collapsed: its encoder ignores the image, every reconstruction is the same mean image, and numbers that "
        "reward closeness to the prior (predictive coverage, agreement with the exact posterior) flatter it. "
        "Collapsed rows are red.</p>" + section.text
    )
    section.tables = [
        ("Active dimensions, total KL and KL per latent dimension (nats per image)", kl_frame, collapsed),
        ("Activity per latent dimension: variance over the images of the encoder mean (active above 0.01)",
         activity_frame, collapsed),
    ]
    return section


def collapse_claim(checks: Mapping[str, Any]) -> Claim:
    """The claim "no model collapsed": FAIL naming each model whose encoder has no active latent dimension."""
    collapsed = [name for name, check in checks.items() if check.passed is False]
    active = {name: int(check.tables[0][1]["active"].sum()) for name, check in checks.items()}
    return Claim(
        f"no model collapsed: every encoder keeps an active latent dimension ({len(checks) - len(collapsed)} of "
        f"{len(checks)})",
        not collapsed,
        "active dimensions: " + ", ".join(f"{n} {k}" for n, k in active.items())
        + (f"; collapsed (encoder ignores the image): {', '.join(collapsed)}." if collapsed else "."),
        COLLAPSE_SECTION,
    )


def amortization_text(num_images: int, engine: str, settings: Mapping[str, Any]) -> str:
    return (
        f"<p>For {num_images} held-out images, {html.escape(engine)} sampled the exact posterior p(z | x) of each "
        "model's generative part (standard normal prior, learned Bernoulli decoder held fixed; "
        f"{html.escape(', '.join(f'{k}={v}' for k, v in settings.items()))}). It is compared with the amortized "
        "encoder q(z | x) on the same images by <code>ppzoo.amortization.amortization_gap</code>: 2-Wasserstein "
        "distances (latent units), the encoder's mean error in posterior standard deviations, its width relative "
        "to the posterior, and the share of posterior draws inside the encoder's 90% interval (0.9 if they agree). "
        "For beta-VAE the encoder is trained to approximate a tempered posterior (likelihood to the power 1/beta), "
        "and the penalised models trade posterior accuracy for their regularizer, so part of the gap is by "
        "design. The MCC columns (when the true factors are known) say how well the posterior means of the "
        "encoder and of NUTS line up with the true factors (Hungarian matching of latents to factors).</p>"
    )
