r"""CausalGAN on the pendulum: fit the controller, train the generator adversarially, score do() and conditioning.

Training (:func:`fit_controller`, :func:`train_generator`; the model is ``ppzoo.models.causal_gan``):

1. The causal controller by maximum likelihood on the concept labels (NumPyro's SVI with an empty guide: every
   site of the controller is observed, so the ELBO is the log likelihood and the fit is its maximum).
2. The generator with the controller held fixed, on the adversarial engine's pieces
   (:mod:`ppzoo.inference.adversarial`: ``generate`` runs the program with the image site unobserved, the
   logistic ``discriminator_loss`` and non-saturating ``generator_loss``, ``GANState`` and the chunked, donated,
   NaN-guarded ``train``). What the engine's own step does not have, and this step adds, are CausalGAN's labeler
   (reads the labels off *real* images) and anti-labeler (reads them off *generated* images); the generator
   minimises ``-log sigmoid(D) + labeler_weight * l(L(G), u) - anti_labeler_weight * l(A(G), u)``, ``l`` half
   the squared error summed over concepts (Kocaoglu et al. 2018, Sec. 5).

Scoring (:func:`pendulum_study`), all in standard deviations of the training factors, factors read back off the
images by ``ppzoo.metrics.readout.FactorReader`` (ridge on pixels, trained on simulator images, half of them with
every factor drawn independently, as the pendulum case study does, so that it reads each factor off its own
pixels). The simulator (true SCM and renderer) is scored the same way: its scores are the reader's floor.

* ``do_target_mae``: |read target - value asked| under do() on each concept at its 10/30/50/70/90% quantiles;
* ``non_descendant_shift``: |read - read without do()| (same noise) of the concepts that are neither the target
  nor its descendants;
* ``effect_move``: how far the descendants move under do() on an angle (mean |read - read without|), beside the
  simulator's;
* ``label_tv``: total variation between the joint law of the labels read off generated images and the true
  labels' law, each concept split at its training median (2^4 cells: the paper's binary labels, Sec. 8); the
  simulator's row is its sampling floor at the same sample size;
* do() versus conditioning on ``shadow_length`` (its 90% quantile): the angles read off the images, the model's
  against the simulator's (do: the simulator's own intervention; conditioning: the training units whose shadow
  length is nearest to the value).

Measured (2026-12-07, seed 0, :func:`pendulum_study` defaults: 5482 training images at 32 px, controller 2000
full-batch steps, generator 3000 steps of batch 64, labeler weight 1, anti-labeler weight 0.1, 500 units; one
run on the shared 2-core machine at load average ~25, 1065 s to train, 1215 s in all): do-target MAE 0.56 sd
against the simulator's 0.10 (5.7x; the issue's target is 2x: not met), non-descendant shift 0.20 against 0.03
(6x: not met), descendants' movement under do() on an angle 0.68 against the simulator's 0.80 (the shadow law
follows the controller's learned mechanism), label TV 0.60 against the sampling floor 0.04, while the
controller's own labels reach 0.04: the controller is right, the generated images are not read back as their
labels by the ridge reader (the MLP labeler reads them: its loss on generated images 0.07). do(shadow_length =
1.59 sd) moves the angles' law by 0.04 / 0.08 sd (Wasserstein; simulator 0.00 / 0.00), conditioning on it by
0.10 / 0.23 (simulator 0.25 / 0.41): the right operation moves the law, the wrong one hardly, with the
conditional shift understated. One seed only; longer training and a convolutional generator are untried.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO

from ppzoo import nn
from ppzoo.buffers import fresh_buffers
from ppzoo.data.scaling import Standardiser
from ppzoo.inference.adversarial import (
    AdversarialOptions, GANState, discriminator_loss, generate, generator_loss, minibatch, train,
)
from ppzoo.inference.svi import all_finite
from ppzoo.metrics.readout import FactorReader
from ppzoo.models import ZooModel
from ppzoo.models.causal_gan import (
    PENDULUM_CONCEPTS, PENDULUM_EDGES, CausalGANConfig, check_do, condition_labels, controller,
)

__all__ = [
    "fit_controller", "train_generator", "CausalGANFit", "generate_images", "CausalGANModel", "pendulum_study",
    "label_tv", "LOSS_NAMES", "QUANTILES",
]

#: Fields of ``CausalGANFit.losses``.
LOSS_NAMES = ("generator", "discriminator", "labeler", "anti_labeler", "labeler_on_generated", "anti_labeler_on_generated")
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


def _unobserved_empty_guide(*args: Any, **kwargs: Any) -> None:
    """No latent sites to guide: every controller site is observed."""


def fit_controller(key: jax.Array, config: CausalGANConfig, u: np.ndarray, *, steps: int = 2000,
                   learning_rate: float = 1e-2) -> tuple[dict[str, Any], np.ndarray]:
    """The controller's maximum-likelihood params on labels ``u`` ``(N, D)``, and the loss (-log lik) per step."""
    u = jnp.asarray(u, jnp.float32)
    svi = SVI(functools.partial(controller, config=config), _unobserved_empty_guide, optax.adam(learning_rate),
              Trace_ELBO())
    result = svi.run(key, steps, u=u, progress_bar=False, stable_update=True)
    return jax.device_get(result.params), np.asarray(result.losses)


class CausalGANFit(NamedTuple):
    """A trained CausalGAN: the zoo model, its params (controller and generator), the labelers, the losses."""

    model: ZooModel
    params: dict[str, Any]
    labelers: dict[str, Any]
    losses: np.ndarray
    controller_losses: np.ndarray
    seconds: float
    warnings: list[str]


def _program(model: ZooModel):
    return functools.partial(model.model, config=model.config)


def _mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return 0.5 * jnp.mean(jnp.sum((pred - target) ** 2, axis=-1))


def train_generator(key: jax.Array, model: ZooModel, controller_params: Mapping[str, Any], x: np.ndarray,
                    u: np.ndarray, *, steps: int = 3000, batch_size: int = 64, learning_rate: float = 2e-4,
                    labeler_weight: float = 1.0, anti_labeler_weight: float = 0.1, hidden: Sequence[int] = (256,),
                    chunk_size: int = 250) -> tuple[dict[str, Any], dict[str, Any], np.ndarray, list[str]]:
    """Train the generator adversarially with labeler and anti-labeler (module docstring); controller fixed.

    Returns the generator's params, the labelers' weights, the losses ``(steps, 6)`` (:data:`LOSS_NAMES`) and
    the training warnings.

    Raises
    ------
    ValueError
        Weights negative, or ``x`` / ``u`` of the wrong shape (before anything compiles).
    """
    config = model.config
    if not (labeler_weight >= 0 and anti_labeler_weight >= 0):
        raise ValueError(f"labeler_weight and anti_labeler_weight must be >= 0; got {labeler_weight!r}, {anti_labeler_weight!r}.")
    x, u = np.asarray(x, np.float32), np.asarray(u, np.float32)
    if x.shape[1:] != config.image_shape or u.shape != (len(x), len(config.concepts)):
        raise ValueError(f"train_generator: x must be (N, {config.image_shape}) and u (N, {len(config.concepts)}); "
                         f"got {x.shape} and {u.shape}.")
    options = AdversarialOptions(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                                 chunk_size=min(chunk_size, steps))
    init_key, net_key, step_key = jax.random.split(key, 3)
    program = _program(model)
    trace = handlers.trace(handlers.seed(handlers.substitute(program, data=dict(controller_params)), init_key)).get_trace(
        num_data=2)
    generator0 = {"decoder$params": trace["decoder$params"]["value"]}
    width, d = int(np.prod(config.image_shape)), len(config.concepts)
    seeds = [int(s) for s in jax.random.randint(net_key, (3,), 0, 2**31 - 1)]
    nets = {
        "discriminator": nn.MLP(width, (*hidden, 1), activation="leaky_relu", rngs=nnx.Rngs(seeds[0])),
        "labeler": nn.MLP(width, (*hidden, d), activation="leaky_relu", rngs=nnx.Rngs(seeds[1])),
        "anti_labeler": nn.MLP(width, (*hidden, d), activation="leaky_relu", rngs=nnx.Rngs(seeds[2])),
    }
    graphs, states = {}, {}
    for name, net in nets.items():
        graphs[name], states[name] = nnx.split(net)
    opt = optax.adam(learning_rate, b1=0.5)

    def apply(name, state, images):
        return nnx.merge(graphs[name], state)(images.reshape(images.shape[0], -1))

    def generated(generator, k):
        images, codes = generate(program, "x", {**controller_params, **generator}, k, {"num_data": batch_size},
                                 config.concepts)
        return images, jnp.stack([codes[c] for c in config.concepts], -1)

    def step(state: GANState, index: jax.Array, arrays):
        k = jax.random.fold_in(step_key, index)
        batch_key, d_key, g_key = jax.random.split(k, 3)
        batch = minibatch(arrays, len(x), batch_size, batch_key)
        fake, fake_u = jax.lax.stop_gradient(generated(state.generator, d_key))
        d_loss, d_grads = jax.value_and_grad(lambda w: discriminator_loss(
            apply("discriminator", w, batch["x"]).reshape(-1), apply("discriminator", w, fake).reshape(-1)))(state.discriminator)
        d_up, d_opt = opt.update(d_grads, state.discriminator_opt, state.discriminator)
        disc = optax.apply_updates(state.discriminator, d_up)
        labs = state.guide
        l_loss, l_grads = jax.value_and_grad(lambda p: _mse(apply("labeler", p, batch["x"]), batch["u"]))(labs["labeler"])
        a_loss, a_grads = jax.value_and_grad(lambda p: _mse(apply("anti_labeler", p, fake), fake_u))(labs["anti_labeler"])
        grads = {"labeler": l_grads, "anti_labeler": a_grads}
        q_up, q_opt = opt.update(grads, state.guide_opt, labs)
        labs = optax.apply_updates(labs, q_up)

        def g_loss_fn(generator):
            images, codes = generated(generator, g_key)
            adv = generator_loss(apply("discriminator", disc, images).reshape(-1))
            on_l = _mse(apply("labeler", labs["labeler"], images), codes)
            on_a = _mse(apply("anti_labeler", labs["anti_labeler"], images), codes)
            return adv + labeler_weight * on_l - anti_labeler_weight * on_a, (adv, on_l, on_a)

        grads, (adv, on_l, on_a) = jax.grad(g_loss_fn, has_aux=True)(state.generator)
        g_up, g_opt = opt.update(grads, state.generator_opt, state.generator)
        new = GANState(optax.apply_updates(state.generator, g_up), g_opt, disc, d_opt, labs, q_opt)
        return new, jnp.stack([adv, d_loss, l_loss, a_loss, on_l, on_a]), all_finite(new)

    labelers0 = {"labeler": states["labeler"], "anti_labeler": states["anti_labeler"]}
    state = fresh_buffers(GANState(generator0, opt.init(generator0), states["discriminator"], opt.init(states["discriminator"]),
                     labelers0, opt.init(labelers0)))
    arrays = {"x": jnp.asarray(x), "u": jnp.asarray(u)}
    state, losses, warnings = train(step, state, arrays, options)
    labelers = jax.device_get({"labeler": state.guide["labeler"], "anti_labeler": state.guide["anti_labeler"],
                               "discriminator": state.discriminator})
    return jax.device_get(state.generator), labelers, losses, warnings


def fit(key: jax.Array, model: ZooModel, x: np.ndarray, u: np.ndarray, *, controller_steps: int = 2000,
        **generator_settings: Any) -> CausalGANFit:
    """Both stages: :func:`fit_controller` then :func:`train_generator`."""
    start = time.perf_counter()
    c_key, g_key = jax.random.split(key)
    controller_params, c_losses = fit_controller(c_key, model.config, u, steps=controller_steps)
    generator, labelers, losses, warnings = train_generator(g_key, model, controller_params, x, u, **generator_settings)
    structured = np.zeros(len(losses), dtype=[(n, np.float32) for n in LOSS_NAMES])
    for i, n in enumerate(LOSS_NAMES):
        structured[n] = losses[:, i]
    return CausalGANFit(model, {**controller_params, **generator}, labelers, structured, c_losses,
                        time.perf_counter() - start, warnings)


__all__ += ["fit"]


@functools.partial(jax.jit, static_argnums=(0, 3))
def _images(model: ZooModel, params: Mapping[str, Any], key: jax.Array, num: int, do: Mapping[str, jax.Array],
            u: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    program = handlers.do(_program(model), data=dict(do)) if do else _program(model)
    trace = handlers.trace(handlers.seed(handlers.substitute(program, data=dict(params)), key)).get_trace(
        num_data=num, u=u)
    # Under handlers.do the trace keeps, under the concept's name, the value it would have drawn; the program used
    # the intervened value.
    labels = jnp.stack([do[c] if c in do else trace[c]["value"] for c in model.config.concepts], -1)
    return trace["x_mean"]["value"], labels


def generate_images(fit: CausalGANFit, key: jax.Array, num: int, *, do: Mapping[str, float] | None = None,
                    labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images (generator means) and their labels: from the controller, under ``do`` (an intervention), or from
    given ``labels`` ``(num, D)`` (e.g. :func:`condition_labels`' draws: conditioning).

    The same ``key`` gives the same exogenous draws with or without ``do`` (``handlers.do`` keeps the stream).

    Raises
    ------
    ValueError
        If ``do`` names an unknown concept (before anything compiles), or both ``do`` and ``labels`` are given.
    """
    do = check_do(fit.model.config, do)
    if do and labels is not None:
        raise ValueError("generate_images: give `do` (an intervention) or `labels` (fixed labels), not both.")
    do = {k: jnp.full((num,), float(v), jnp.float32) for k, v in do.items()}
    u = None if labels is None else jnp.asarray(labels, jnp.float32)
    images, out = _images(fit.model, fit.params, key, num, do, u)
    return np.asarray(images), np.asarray(out)


class CausalGANModel:
    """The pendulum case study's model interface (``prior``, ``generate``) over a :class:`CausalGANFit`.

    A unit's randomness is a seed: ``prior(rng, n)`` returns ``(n, 1)`` copies of one seed, and ``generate``
    draws all ``n`` rows from that seed, so the same noise gives the same exogenous draws under any do().
    """

    def __init__(self, fit: CausalGANFit, name: str = "causal_gan") -> None:
        self.name, self.fit, self.seconds = name, fit, fit.seconds

    def prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full((n, 1), rng.integers(0, 2**31 - 1), dtype=np.int64)

    def generate(self, noise: np.ndarray, do: Mapping[str, float] | None = None) -> np.ndarray:
        return generate_images(self.fit, jax.random.key(int(noise[0, 0])), len(noise), do=do)[0]


def pendulum_model(x: np.ndarray, u: np.ndarray, *, seed: int, steps: int, controller_steps: int = 2000,
                   batch_size: int = 64, hidden: Sequence[int] = (256, 256)) -> CausalGANModel:
    """CausalGAN trained on the pendulum case study's training images ``x`` and standardised factors ``u``, behind
    the case study's model interface: the hook for ``case_studies/pendulum.py``.

    In its model loop, ``model = pendulum_model(x, u, seed=seed, steps=args.steps)`` gives an object whose
    ``prior`` / ``generate(noise, do)`` its ``intervention_scores`` and ``holdout_scores`` take like the causal
    VAEs' (do() values in training sd units, as there).
    """
    import ppzoo.models

    model = ppzoo.models.get("causal_gan", concepts=PENDULUM_CONCEPTS, edges=PENDULUM_EDGES, image_shape=tuple(np.shape(x)[1:]),
                             init_seed=seed, hidden=tuple(hidden))
    return CausalGANModel(fit(jax.random.key(seed), model, x, u, controller_steps=controller_steps, steps=steps,
                              batch_size=batch_size))


__all__ += ["pendulum_model"]


def label_tv(read: np.ndarray, truth: np.ndarray, medians: np.ndarray) -> float:
    """Total variation between the joint laws of two label samples, each concept split at ``medians``.

    The labels become binary (above the median or not), as the paper's are, and the 2^D cells' frequencies are
    compared: ``0.5 * sum |p - q|``.
    """
    weights = 2 ** np.arange(read.shape[1])
    cells = 2 ** read.shape[1]
    p = np.bincount(((read > medians) * weights).sum(1), minlength=cells) / len(read)
    q = np.bincount(((truth > medians) * weights).sum(1), minlength=cells) / len(truth)
    return float(0.5 * np.abs(p - q).sum())


def _scores(generate, reader: FactorReader, names: Sequence[str], config: CausalGANConfig, values: np.ndarray) -> dict[str, float]:
    """do() on every concept at each value: target error, non-descendant shift, descendants' movement."""
    base = reader(generate({}))
    target, still, moves = [], [], []
    for i, name in enumerate(names):
        kids = [names.index(k) for k in config.descendants(name)]
        others = [k for k in range(len(names)) if k != i and k not in kids]
        for v in values[:, i]:
            read = reader(generate({name: float(v)}))
            target.append(np.abs(read[:, i] - v).mean())
            if others:
                still.append(np.abs(read[:, others] - base[:, others]).mean())
            if kids:
                moves.append(np.abs(read[:, kids] - base[:, kids]).mean())
    return {"do_target_mae": float(np.mean(target)), "non_descendant_shift": float(np.mean(still)),
            "effect_move": float(np.mean(moves))}


def pendulum_study(seed: int = 0, *, steps: int = 3000, controller_steps: int = 2000, num_train: int | None = None,
                   num: int = 500, batch_size: int = 64, labeler_weight: float = 1.0,
                   anti_labeler_weight: float = 0.1, hidden: Sequence[int] = (256, 256),
                   discriminator_hidden: Sequence[int] = (256,)) -> dict[str, Any]:
    """Train CausalGAN on the 32-pixel pendulum and score it against the simulator (module docstring).

    Returns
    -------
    dict
        ``"scores"``: ``{"causal_gan": {...}, "simulator": {...}}`` with ``do_target_mae``,
        ``non_descendant_shift``, ``effect_move`` and ``label_tv``; ``"controller_tv"``: TV of the controller's
        own labels; ``"do_vs_condition"``: how far do() and conditioning on shadow_length move the law of each angle
        read off the images (1-D Wasserstein distance from the reading without intervention, sd), model and
        simulator; ``"figure"``: the side-by-side histograms; ``"fit"``, ``"seconds"``, ``"settings"``.
    """
    from ppzoo.data.pendulum import load as load_pendulum
    import ppzoo.models

    rng = np.random.default_rng(seed)
    ds = load_pendulum(image_size=32, split="train")
    test = load_pendulum(image_size=32, split="test")
    names = list(ds.factor_names)
    pick = rng.permutation(len(ds.data["x"]))[: num_train or len(ds.data["x"])]
    x, factors = ds.data["x"][pick], ds.truth["factors"][pick]
    scaler = Standardiser(factors)
    u = scaler.to_std(factors).astype(np.float32)
    pool = np.concatenate([factors, test.truth["factors"]])
    shuffled = np.stack([rng.permutation(pool[:, j])[: len(factors)] for j in range(4)], axis=1)
    reader = FactorReader(np.concatenate([x, ds.observations_from_factors(shuffled)]),
                          np.concatenate([u, scaler.to_std(shuffled)]))
    values = np.quantile(u, QUANTILES, axis=0)
    medians = np.median(u, axis=0)

    model = ppzoo.models.get("causal_gan", concepts=tuple(names), edges=ds.graph, image_shape=x.shape[1:],
                             init_seed=seed, hidden=tuple(hidden))
    trained = fit(jax.random.key(seed), model, x, u, controller_steps=controller_steps, steps=steps,
                  batch_size=batch_size, labeler_weight=labeler_weight, anti_labeler_weight=anti_labeler_weight,
                  hidden=tuple(discriminator_hidden))
    eval_key = jax.random.key(seed + 1000)
    units = factors[rng.integers(0, len(factors), num)]

    def model_images(do):
        return generate_images(trained, eval_key, num, do=do)[0]

    def simulator_images(do):
        units_do = {n: scaler.value_to_units(names.index(n), v) for n, v in do.items()}
        return ds.observations_from_factors(ds.intervene(units, units_do) if units_do else units)

    scores = {"causal_gan": _scores(model_images, reader, names, model.config, values),
              "simulator": _scores(simulator_images, reader, names, model.config, values)}
    gen_images, gen_labels = generate_images(trained, eval_key, num)
    scores["causal_gan"]["label_tv"] = label_tv(reader(gen_images), u, medians)
    scores["simulator"]["label_tv"] = label_tv(reader(ds.observations_from_factors(units)), u, medians)
    controller_tv = label_tv(gen_labels, u, medians)

    # do() versus conditioning on shadow_length at its 90% quantile.
    s = names.index("shadow_length")
    v = float(values[-1, s])
    read_do = reader(model_images({"shadow_length": v}))
    labels = np.asarray(condition_labels(jax.random.key(seed + 2000), model.config, trained.params,
                                         {"shadow_length": v}, num_samples=num))
    read_cond = reader(generate_images(trained, eval_key, num, labels=labels)[0])
    sim_do = reader(simulator_images({"shadow_length": v}))
    nearest = np.argsort(np.abs(u[:, s] - v))[:num]
    sim_cond = reader(ds.observations_from_factors(factors[nearest]))
    readings = {("causal_gan", "do"): read_do, ("causal_gan", "condition"): read_cond,
                ("simulator", "do"): sim_do, ("simulator", "condition"): sim_cond}
    # How far each operation moves the angles' law: 1-D Wasserstein distance of the read angles from those read
    # off the same generator's (or the simulator's) images without intervention.
    from scipy.stats import wasserstein_distance

    base = {"causal_gan": reader(gen_images), "simulator": reader(simulator_images({}))}
    shifts = {f"{who} {how}": {n: float(wasserstein_distance(r[:, i], base[who][:, i])) for i, n in enumerate(names[:2])}
              for (who, how), r in readings.items()}
    figure = do_vs_condition_figure(readings, names, v)
    return {"scores": scores, "controller_tv": controller_tv, "do_vs_condition": shifts, "figure": figure,
            "value": v, "fit": trained, "seconds": trained.seconds,
            "settings": dict(seed=seed, steps=steps, controller_steps=controller_steps, num_train=len(x), num=num,
                             batch_size=batch_size, labeler_weight=labeler_weight,
                             anti_labeler_weight=anti_labeler_weight, hidden=tuple(hidden),
                             discriminator_hidden=tuple(discriminator_hidden))}


def do_vs_condition_figure(readings: Mapping[tuple[str, str], np.ndarray], names: Sequence[str], value: float):
    """Histograms of the angles read off the images: do(shadow_length) beside conditioning on it, model vs simulator."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(8, 5.5), sharex="row", constrained_layout=True)
    bins = np.linspace(-2.5, 2.5, 31)
    for col, how in enumerate(("do", "condition")):
        for row in range(2):
            ax = axes[row, col]
            for who, style in (("simulator", dict(color="0.6", alpha=0.6)), ("causal_gan", dict(histtype="step", color="C3", lw=2))):
                ax.hist(readings[(who, how)][:, row], bins=bins, density=True, label=who, **style)
            ax.set_xlabel(f"{names[row]} read off the images (sd)")
            title = "do(shadow_length = %.2f)" if how == "do" else "conditioned on shadow_length = %.2f"
            ax.set_title(title % value, fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("do() leaves the angles' law unchanged; conditioning on the shadow moves it", fontsize=10)
    return fig
