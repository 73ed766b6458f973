"""What the two VAE-family case studies share: training the six models, figures, the amortization gap.

Only public APIs are used: the zoo models and their helpers in ``ppzoo.models.vae``, the SVI engine's step
(``ppzoo.inference.svi``) with each model's own guide and its ``svi_extension`` (FactorVAE's
discriminator), ``ppzoo.fit`` for NUTS, ``ppzoo.amortization.amortization_gap``, ``ppzoo.report.Section``
and the checks in ``ppzoo.checks`` (posterior collapse, convergence).

Training several seeds of one model together: the seeds' parameters and optimizer states are stacked along
a leading axis and one jitted ``lax.scan`` runs ``jax.vmap`` of the SVI engine's step over them (the step
``ppzoo.fit(engine="svi")`` takes, built from ``ppzoo.inference.svi``'s public pieces). It compiles once
per model instead of once per seed, and the batched matrix products keep both cores busy where one seed's
small ones do not. Measured on the shapes MLPs, three seeds x 3000 steps: VAE 25 s against 43 s for three
``ppzoo.fit`` runs one after another (412 seed-steps/s after compiling against 360-378), FactorVAE 44 s
against 67 s (238 against 200-203) on a nearly idle machine; with other processes on the two cores, three
seeds together ran 1.6-3.6 times as many seed-steps per second as one seed alone. Each seed's numbers are
those of an independent run: its own initial weights, minibatches and noise (seed 1 trained beside seed 0
equals seed 1 trained alone to float32 rounding).
"""

from __future__ import annotations

import dataclasses
import functools
import html
import os
import pickle
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from numpyro.infer import init_to_uniform

import ppzoo
from ppzoo.amortization import amortization_gap, encoder_pareto_k
from ppzoo.checks import closed_loop_section, convergence_check, posterior_collapse, unconverged_note
from ppzoo.inference import svi as svi_engine
from ppzoo.models import infogan
from ppzoo.models.vae import decoder_function, encoder_function, posterior_model
from ppzoo.report import Claim, Section
from ppzoo.results import key as results_key

__all__ = [
    "MODELS",
    "TrainedModel",
    "ModelCache",
    "Checkpoint",
    "cache_settings",
    "train_seeds",
    "train_family",
    "loss_figure",
    "reconstruction_figure",
    "traversal_figure",
    "amortization",
    "encoder_psis_results",
    "init_to_encoder",
    "amortization_table",
    "grid_image",
    "describe",
    "collapse_checks",
    "collapse_section",
    "amortization_checks",
    "collapse_claim",
    "COLLAPSE_SECTION",
    "TrainedInfoGAN",
    "train_infogan_seeds",
]

#: Title of the posterior-collapse section (claims link to it).
COLLAPSE_SECTION = "Posterior collapse: active latent dimensions"

#: The six registry names, in the order of the reports.
MODELS: tuple[str, ...] = ("vae", "beta_vae", "beta_tcvae", "factor_vae", "dip_vae_i", "dip_vae_ii")

#: Bumped whenever training changes what a cached model would hold; older cache files are then retrained.
CACHE_VERSION = 1


@dataclasses.dataclass
class TrainedModel:
    """One SVI fit of a family member on one seed, and what the reports need from it.

    Attributes
    ----------
    name, seed : str, int
        Registry name and training seed (initial weights ``init_seed=seed``, minibatches, noise).
    model : ZooModel
        The fitted model (its config holds the hyperparameters).
    params : dict
        Learned parameters (``encoder$params``, ``decoder$params``, FactorVAE's ``discriminator$state``).
    losses : numpy.ndarray
        Training objective per step (negative ELBO plus the model's penalty, summed over the data).
    warnings : list of str
        Training problems (a step that went NaN stops that seed; its last good parameters are kept).
    seconds : float
        Wall time of the training run; seeds trained together share one run and this number.
    steps_per_second : float
        Steps per second of that run after compiling (each step advances every seed of the run).
    together : int
        How many seeds that run trained together.
    mean, sd : numpy.ndarray
        Encoder means and sds of the training images, ``(num_data, latent_dim)``.
    """

    name: str
    seed: int
    model: Any
    params: dict
    losses: np.ndarray
    warnings: list[str]
    seconds: float
    steps_per_second: float
    image_shape: tuple[int, int]
    together: int = 1
    mean: np.ndarray | None = None
    sd: np.ndarray | None = None
    cached: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"

    def encode(self, images: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Encoder means and sds of ``images`` ``(n, H, W)``."""
        run = encoder_function(self.model, self.params, self.image_shape)
        images = np.asarray(images, dtype=np.float32)
        parts = [run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate([np.asarray(m) for m, _ in parts]), np.concatenate([np.asarray(s) for _, s in parts])

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Pixel probabilities of latents ``z`` ``(n, K)``."""
        return np.asarray(decoder_function(self.model, self.params, self.image_shape)(z))


class ModelCache:
    """A folder of finished models, one file per model and seed, so that a long run can be resumed.

    While a model trains, its :class:`Checkpoint` in the same folder is rewritten every
    ``checkpoint_every_s`` seconds (default ten minutes), so that a run stopped mid-model resumes there.

    Each file holds the parameters, losses, warnings and timings of a trained model, the settings that
    produced it, and any scores computed from it (with their own settings). :meth:`load` returns an entry
    only when its settings equal the ones asked for; a file is written to a temporary name and renamed, so
    it is whole or absent. The files are pickles written by this code: load only caches you made.
    """

    def __init__(self, folder: str | os.PathLike[str], checkpoint_every_s: float = 600.0):
        self.folder = Path(folder)
        self.checkpoint_every_s = float(checkpoint_every_s)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str, seed: int) -> Path:
        return self.folder / f"{name}-seed{seed}.pkl"

    def load(self, name: str, seed: int, settings: Mapping[str, Any]) -> dict | None:
        path = self.path(name, seed)
        if not path.exists():
            return None
        with open(path, "rb") as fh:
            entry = pickle.load(fh)
        if entry.get("settings") != dict(settings):
            print(f"[cache] {path.name}: made with other settings; training again", flush=True)
            return None
        return entry

    def save(self, name: str, seed: int, entry: Mapping[str, Any]) -> Path:
        return self._write(self.path(name, seed), entry)

    def checkpoint(self, name: str, seeds: Sequence[int], settings: Sequence[Mapping[str, Any]]) -> Checkpoint:
        """The mid-training checkpoint of ``name`` trained on ``seeds`` together (see :func:`train_seeds`)."""
        path = self.folder / f"{name}-seeds{'_'.join(str(int(s)) for s in seeds)}.partial.pkl"
        return Checkpoint(self, path, [dict(s) for s in settings], self.checkpoint_every_s)

    def _write(self, path: Path, entry: Mapping[str, Any]) -> Path:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.folder)
        try:
            with os.fdopen(handle, "wb") as fh:
                pickle.dump(dict(entry), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path


@dataclasses.dataclass
class Checkpoint:
    """Where :func:`train_seeds` keeps the state of an unfinished run: every ``every_s`` seconds of training
    it writes the optimizer state of all seeds, the losses so far and the next step (whole or absent, as the
    cache's files), and a rerun with the same settings continues from there; :func:`train_family` removes it
    once the finished models are saved."""

    cache: ModelCache
    path: Path
    settings: list[dict]
    every_s: float = 600.0

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        with open(self.path, "rb") as fh:
            entry = pickle.load(fh)
        if entry.get("settings") != self.settings:
            print(f"[cache] {self.path.name}: a checkpoint made with other settings; starting from step 0", flush=True)
            return None
        return entry

    def save(self, entry: Mapping[str, Any]) -> None:
        self.cache._write(self.path, {**entry, "settings": self.settings})

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


def _chunk_size(steps: int, most: int = 200) -> int:
    """The largest divisor of ``steps`` up to ``most``: every compiled chunk then has the same length."""
    return max(d for d in range(1, min(steps, most) + 1) if steps % d == 0)


def train_seeds(
    x: np.ndarray,
    name: str,
    *,
    seeds: Sequence[int],
    config: Mapping[str, Any],
    steps: int,
    learning_rate: float,
    tag: str = "",
    checkpoint: Checkpoint | None = None,
) -> list[TrainedModel]:
    """Train one model of the family by SVI (Adam) on the same images once per seed, all seeds together.

    Parameters
    ----------
    x : numpy.ndarray
        Training images ``(N, H, W)``.
    name : str
        Registry name (one of :data:`MODELS`).
    seeds : sequence of int
        One independent fit per seed: initial weights ``init_seed=seed``, minibatch, noise and (FactorVAE)
        discriminator keys from ``jax.random.PRNGKey(seed)``.
    config : mapping
        The model's settings (network, batch size, latent dimension, hyperparameters); ``init_seed`` is set
        per seed.
    steps, learning_rate : int, float
        Adam steps and learning rate.
    tag : str
        Prefix of the progress lines.
    checkpoint : Checkpoint, optional
        Resume from it when it holds a run with the same settings, and write it every ``checkpoint.every_s``
        seconds of training (at the end of a chunk), so that a stopped run loses at most that much. A resumed
        run continues with the saved optimizer state, random keys and step count, so it ends where an
        uninterrupted run ends.

    Returns
    -------
    list of TrainedModel
        One per seed, in the order of ``seeds``; ``seconds`` counts the training time of every run that
        contributed.

    Notes
    -----
    Built from the SVI engine's public pieces (``ppzoo.inference.svi``: ``make_svi``, ``init_state``,
    ``make_step``, ``guarded_step``, ``unguarded_step``), so each seed takes exactly the step
    ``ppzoo.fit(engine="svi")`` takes, with its NaN handling: chunks of up to 200 steps run unguarded; a chunk
    in which a seed's loss or state went non-finite is rerun from its start with the guard, which stops that
    seed at its last good state (a warning says where). Convolutional networks loop over jitted steps in
    Python rather than inside ``lax.scan`` (XLA's CPU convolutions are far slower inside a loop body,
    jax-ml/jax#12868).
    """
    seeds = [int(s) for s in seeds]
    models = [ppzoo.models.get(name, **{**config, "init_seed": seed}) for seed in seeds]
    options = svi_engine.SVIOptions(steps=steps, learning_rate=learning_rate)
    data = {"x": jnp.asarray(x, dtype=jnp.float32)}
    print(f"[{tag}] {name}: {steps} SVI steps x seeds {', '.join(map(str, seeds))} ...", flush=True)
    start_time = time.perf_counter()
    states, keys = [], []
    for model, seed in zip(models, seeds):
        guide = svi_engine.make_guide(model, None)  # the model's own amortized encoder
        svi = svi_engine.make_svi(model, guide, options)
        extension = svi_engine.extension_of(options, guide)
        state, key = svi_engine.init_state(svi, extension, jax.random.PRNGKey(seed), data)
        states.append(state)
        keys.append(key if key is not None else jax.random.PRNGKey(0))
    # One seed's program serves all: the update reads every weight from the state it is given.
    state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    keys = jnp.stack(keys)
    has_extension = extension is not None

    def per_seed(wrap):
        def one(carry, key, index):
            step = svi_engine.make_step(svi, extension, {}, key if has_extension else None)
            return wrap(step)(carry, index, data)

        return jax.vmap(one, in_axes=(0, 0, None))

    fast_step = per_seed(svi_engine.unguarded_step)
    guarded_step = per_seed(lambda step: svi_engine.guarded_step(step, steps))
    state_finite = jax.vmap(lambda st: svi_engine.state_finite(svi, st))
    chunk = _chunk_size(steps)

    def scan(body, carry, start):
        return jax.lax.scan(lambda c, i: body(c, keys, i), carry, start + jnp.arange(chunk))

    if config.get("network") == "conv":
        fast_one, guarded_one = jax.jit(fast_step), jax.jit(guarded_step)

        def loop(body, carry, start):
            losses = []
            for index in range(start, start + chunk):
                carry, loss = body(carry, keys, jnp.int32(index))
                losses.append(loss)
            return carry, jnp.stack(losses)

        def fast_chunk(carry, start):
            return loop(fast_one, carry, start)

        def guarded_chunk(carry, start):
            return loop(guarded_one, carry, start)
    else:
        fast_chunk = jax.jit(lambda carry, start: scan(fast_step, carry, start))
        guarded_chunk = jax.jit(lambda carry, start: scan(guarded_step, carry, start))

    failed = jnp.zeros(len(seeds), dtype=bool)
    losses: list[np.ndarray] = []
    begin, earlier_s = 0, 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        leaves, treedef = jax.tree.flatten((state, failed))
        stored = saved["leaves"]
        if len(stored) != len(leaves) or any(np.shape(a) != np.shape(b) for a, b in zip(stored, leaves)):
            raise ValueError(f"checkpoint {checkpoint.path} does not fit this model's state although its settings "
                             f"match; delete it to train {name} from step 0.")
        state, failed = jax.tree.unflatten(treedef, [jnp.asarray(a, dtype=b.dtype) for a, b in zip(stored, leaves)])
        begin, earlier_s, losses = int(saved["next_step"]), float(saved["seconds"]), [saved["losses"]]
        print(f"[{tag}] {name}: resumed from {checkpoint.path.name} at step {begin} of {steps}", flush=True)
    last_save = time.perf_counter()
    first_chunk_s = None
    for start in range(begin, steps, chunk):
        began = time.perf_counter()
        chunk_losses = None
        if not bool(failed.any()):
            (new_state, finite), fast_losses = fast_chunk((state, jnp.ones(len(seeds), dtype=bool)), start)
            if bool(jnp.all(finite & state_finite(new_state))):
                state, chunk_losses = new_state, fast_losses
        if chunk_losses is None:  # rerun from the chunk's start with the guard (stopped seeds stay stopped)
            carry, chunk_losses = guarded_chunk(svi_engine.GuardCarry(state, state, failed), start)
            state, failed = carry.state, carry.failed
        losses.append(np.asarray(chunk_losses))
        if first_chunk_s is None:
            first_chunk_s = time.perf_counter() - began
        now = time.perf_counter()
        if checkpoint is not None and start + chunk < steps and now - last_save >= checkpoint.every_s:
            checkpoint.save({"next_step": start + chunk, "seconds": earlier_s + now - start_time,
                             "leaves": [np.asarray(leaf) for leaf in jax.tree.leaves((state, failed))],
                             "losses": np.concatenate(losses)})
            last_save = now
    seconds = time.perf_counter() - start_time
    ran = steps - begin
    after_compile = (ran - chunk) / max(seconds - first_chunk_s, 1e-9) if ran > chunk else ran / max(seconds, 1e-9)
    seconds += earlier_s
    all_losses = np.concatenate(losses)  # (steps, seeds); a stopped seed's later steps repeat its last state
    params = jax.device_get(jax.vmap(svi.get_params)(state.svi))
    ext_final = jax.device_get(state.extension) if has_extension else None
    out = []
    for i, (seed, model) in enumerate(zip(seeds, models)):
        own = jax.tree.map(lambda a: np.asarray(a[i]), params)
        if has_extension:
            own[f"{extension.name}$state"] = jax.tree.map(lambda a: np.asarray(a[i]), ext_final)
        seed_losses, warnings = all_losses[:, i], []
        if bool(failed[i]):
            bad = np.flatnonzero(~np.isfinite(seed_losses))
            stop = int(bad[0]) if bad.size else steps - 1
            warnings.append(svi_engine.stop_warning(seed_losses[: stop + 1], stop))
            seed_losses = seed_losses[: stop + 1]
        out.append(TrainedModel(name, seed, model, own, seed_losses, warnings, seconds, after_compile,
                                tuple(int(s) for s in x.shape[1:]), together=len(seeds)))
    final = ", ".join(f"{np.mean(t.losses[-100:]) / len(x):.2f}" for t in out)
    print(f"[{tag}]   {seconds:.0f} s ({after_compile:.0f} steps/s x {len(seeds)} seeds after compiling); final loss "
          f"per image {final}", flush=True)
    return out


def cache_settings(name: str, seed: int, config: Mapping[str, Any], steps: int, learning_rate: float,
                   data: Mapping[str, Any]) -> dict[str, Any]:
    """What a cached model was made with: a cache entry is used only when all of this is equal."""
    return {"version": CACHE_VERSION, "model": name, "seed": int(seed), "config": repr(sorted(config.items())),
            "steps": int(steps), "learning_rate": float(learning_rate), "data": dict(data)}


def train_family(
    x: np.ndarray,
    *,
    names: Sequence[str],
    common: Mapping[str, Any],
    specific: Mapping[str, Mapping[str, Any]],
    seeds: Sequence[int],
    steps: int,
    learning_rate: float,
    tag: str,
    cache: ModelCache | None = None,
    data_settings: Mapping[str, Any] | None = None,
) -> dict[str, list[TrainedModel]]:
    """Fit every model on the same images, each on every seed (seeds of one model trained together); encode
    all images afterwards.

    With ``cache``, a model and seed already in the cache with the same settings (model config, steps,
    learning rate, ``data_settings``) is loaded instead of trained, and each newly trained one is saved as
    soon as its model finishes.

    Returns
    -------
    dict
        Model name -> list of :class:`TrainedModel`, one per seed in the order of ``seeds``.
    """
    out = {}
    for name in names:
        config = {**common, **specific.get(name, {})}
        settings = {seed: cache_settings(name, seed, config, steps, learning_rate, data_settings or {})
                    for seed in seeds}
        found = {seed: cache.load(name, seed, settings[seed]) for seed in seeds} if cache is not None else {}
        todo = [seed for seed in seeds if found.get(seed) is None]
        checkpoint = cache.checkpoint(name, todo, [settings[s] for s in todo]) if cache is not None and todo else None
        trained = dict(zip(todo, train_seeds(x, name, seeds=todo, config=config, steps=steps,
                                             learning_rate=learning_rate, tag=tag,
                                             checkpoint=checkpoint))) if todo else {}
        models = []
        for seed in seeds:
            if seed in trained:
                t = trained[seed]
                if cache is not None:
                    cache.save(name, seed, {"settings": settings[seed], "params": t.params, "losses": t.losses,
                                            "warnings": t.warnings, "seconds": t.seconds,
                                            "steps_per_second": t.steps_per_second, "together": t.together,
                                            "scores": {}})
            else:
                e = found[seed]
                model = ppzoo.models.get(name, **{**config, "init_seed": seed})
                t = TrainedModel(name, seed, model, e["params"], e["losses"], e["warnings"], e["seconds"],
                                 e["steps_per_second"], tuple(int(s) for s in x.shape[1:]), together=e["together"],
                                 cached=True)
                print(f"[{tag}] {name} seed {seed}: loaded from {cache.path(name, seed)}", flush=True)
            t.mean, t.sd = t.encode(x)
            models.append(t)
        if checkpoint is not None:  # every seed it held is in the cache now
            checkpoint.drop()
        out[name] = models
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
        per_image = np.asarray(trained[name].losses) / num_data
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

    mean, _ = t.encode(images)
    recon = t.decode(mean)
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

    mean, _ = t.encode(image[None])
    k = mean.shape[1]
    values = np.linspace(-span, span, steps)
    codes = np.repeat(np.repeat(mean, k, axis=0)[:, None, :], steps, axis=1)  # (k, steps, k)
    for dim in range(k):
        codes[dim, :, dim] = values
    frames = t.decode(codes.reshape(-1, k)).reshape(k, steps, *t.image_shape)
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


def init_to_encoder(site: dict | None = None, *, mean: Any, sd: Any):
    """NumPyro init strategy: every chain starts ``z`` at its own draw from the encoder N(mean, sd^2).

    Other latent sites start as ``init_to_uniform`` starts them. Pass it as
    ``functools.partial(init_to_encoder, mean=m, sd=s)`` (NumPyro needs a partial).
    """
    if site is None:
        return functools.partial(init_to_encoder, mean=mean, sd=sd)
    if site["type"] == "sample" and site["name"] == "z" and not site["is_observed"]:
        key = site["kwargs"]["rng_key"]
        return jnp.asarray(mean) + jnp.asarray(sd) * jax.random.normal(key, jnp.shape(mean))
    return init_to_uniform(site)


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
    the encoder on the same images. Each chain starts at its own draw from the encoder
    (:func:`init_to_encoder`), so the chains describe the posterior around the code the encoder gives.

    Why these settings (measured on the default runs): with 2 chains x 200 draws every fit failed
    (r_hat up to 1.04, bulk ESS 90-350 on a 160-scalar posterior: too few draws for ESS >= 400 and a max
    r_hat over that many scalars below 1.01); no chain diverged and the chains agreed within 0.3 posterior
    sds. With more draws the digits fits converge. On shapes, chains started from the prior's (-2, 2) box
    (NumPyro's default) also found, for one of 16 held-out images of the plain VAE (the smallest square), a
    second, distant mode (z8 near 3.8 against 1.4 for the encoder's mode: r_hat 1.66 on 9 scalars); NUTS
    cannot cross between such modes, so started from the encoder the chains report the mode the encoder
    chose, and the gap is measured within it. A dense mass matrix did not help (100-190 leapfrog steps per
    draw instead of 30: 80-160 dimensions are too many to estimate from a few hundred warmup draws).
    """
    mean, sd = t.encode(images)
    fit = ppzoo.fit(
        posterior_model(t.model),
        {"x": images},
        engine=engine,
        seed=seed,
        params=t.params,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        init_strategy=functools.partial(init_to_encoder, mean=mean, sd=sd),
    )
    gap = amortization_gap(mean, sd, fit.samples["z"], true=true)
    # The encoder as an importance proposal for the same exact posterior, per image (no MCMC needed).
    gap.update(encoder_pareto_k(posterior_model(t.model), t.params, {"x": images}, seed=seed))
    return fit, gap


def encoder_psis_results(gaps: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The results-file values of each model's per-image encoder PSIS (the gap tables' two k-hat columns)."""
    values = {}
    for name, gap in gaps.items():
        values[results_key(name, "encoder_share_k_above_0_7")] = gap["share_k_above_0_7"]
        values[results_key(name, "encoder_pareto_k_median")] = gap["pareto_k_median"]
    return values


AMORTIZATION_COLUMNS = {
    "w2_gaussian": "W2 (Gaussian fit)",
    "w2_marginal": "W2 (marginals)",
    "mean_shift": "|mean shift| / posterior sd",
    "sd_ratio": "encoder sd / posterior sd",
    "interval_coverage": "posterior mass in encoder 90% interval",
    "pareto_k_median": "median PSIS k-hat",
    "share_k_above_0_7": "share of images with k-hat > 0.7",
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
        f"{html.escape(', '.join(f'{k}={v}' for k, v in settings.items()))}; each chain starts at its own draw "
        "from the encoder, so the chains describe the posterior mode the encoder chose: NUTS cannot cross to a "
        "distant second mode, which chains started from the prior found for one held-out image of the plain VAE "
        "on shapes). It is compared with the amortized "
        "encoder q(z | x) on the same images by <code>ppzoo.amortization.amortization_gap</code>: 2-Wasserstein "
        "distances (latent units), the encoder's mean error in posterior standard deviations, its width relative "
        "to the posterior, and the share of posterior draws inside the encoder's 90% interval (0.9 if they agree). "
        "The PSIS columns need no MCMC: per image, 1000 encoder draws weighted by p(x, z) / q(z | x) under the same "
        "plain model give a Pareto k-hat (<code>ppzoo.amortization.encoder_pareto_k</code>; Yao et al. 2018): above "
        "0.7 the encoder is an unreliable importance proposal for that image's exact posterior. "
        "For beta-VAE the encoder is trained to approximate a tempered posterior (likelihood to the power 1/beta), "
        "and the penalised models trade posterior accuracy for their regularizer, so part of the gap is by "
        "design. The MCC columns (when the true factors are known) say how well the posterior means of the "
        "encoder and of NUTS line up with the true factors (Hungarian matching of latents to factors).</p>"
    )


# ------------------------------------------------------------------------ InfoGAN, scored beside the family
# (here, not in case_studies/infogan.py, so that shapes and infogan share it without importing each other)


class TrainedInfoGAN:
    """One adversarial fit of InfoGAN on one seed, shaped like the VAE family's trained models for scoring.

    ``mean`` is the Q network's code matrix of the training images (most probable category, then code means).
    """

    def __init__(self, seed: int, model: Any, fit: Any, seconds: float, image_shape: tuple[int, int]):
        self.name, self.seed, self.model, self.fit = "infogan", int(seed), model, fit
        self.params, self.losses, self.warnings = fit.params, fit.losses, list(fit.warnings)
        self.seconds = seconds
        self.steps_per_second = len(fit.losses) / seconds
        self.together, self.cached, self.image_shape = 1, False, image_shape
        self.mean: np.ndarray | None = None

    @property
    def label(self) -> str:
        return f"{self.name} seed {self.seed}"

    def codes(self, images: np.ndarray) -> infogan.Codes:
        return infogan.encode(self.model, self.params, images)

    def encode(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        """The code matrix of ``images`` (what the metrics score); no sd (Q's is per code, see :meth:`codes`)."""
        return self.codes(images).matrix(), None


def _infogan_chunk(steps: int, most: int = 250) -> int:
    return max(d for d in range(1, min(steps, most) + 1) if steps % d == 0)


def train_infogan_seeds(x: np.ndarray, *, seeds: Sequence[int], config: Mapping[str, Any], steps: int,
                        batch_size: int, generator_lr: float, discriminator_lr: float,
                        tag: str = "infogan") -> list[TrainedInfoGAN]:
    """Train InfoGAN (``ppzoo.models.infogan``) on ``x`` once per seed (``ppzoo.fit(engine="adversarial")``, one seed after another).

    Generator and Q head learn with Adam at ``generator_lr``, the discriminator (trunk, logit and Q head) at
    ``discriminator_lr``, both with beta1 = 0.5 (Chen et al.: 1e-3 and 2e-4).
    """
    image_shape = (int(x.shape[1]), int(x.shape[2]))
    out = []
    for seed in seeds:
        model = ppzoo.models.get("infogan", **{**config, "init_seed": int(seed)})
        print(f"[{tag}] infogan seed {seed}: {steps} adversarial steps ...", flush=True)
        began = time.perf_counter()
        fit = ppzoo.fit(model, {"x": x}, engine="adversarial", seed=int(seed), steps=steps, batch_size=batch_size,
                        chunk_size=_infogan_chunk(steps), num_draws=1, optimizer=optax.adam(generator_lr, b1=0.5),
                        guide_optimizer=optax.adam(generator_lr, b1=0.5),
                        discriminator_optimizer=optax.adam(discriminator_lr, b1=0.5),
                        **infogan.adversarial_options(model, image_shape))
        seconds = time.perf_counter() - began
        t = TrainedInfoGAN(seed, model, fit, seconds, image_shape)
        t.mean = t.encode(x)[0]
        print(f"[{tag}]   {seconds:.0f} s ({t.steps_per_second:.1f} steps/s with compiling)", flush=True)
        out.append(t)
    return out
