r"""The ``"adversarial"`` engine: a NumPyro program trained as a GAN's generator, with an optional sleep-phase guide.

What a model must provide
-------------------------
* One **observed site** (``obs=`` one of the model's keyword arguments, e.g. ``x``) whose distribution is the
  generator's output: a ``Delta`` at the decoder's output or a small-noise likelihood around it
  (``Normal(decoder(z), 0.01)``). Its value must be reparameterised (a Delta or a location-scale family), so
  that generated data carry gradients to the generator's parameters. With several observed sites name the
  one with the ``observed`` option.
* Its **codes** as latent sample sites drawn from their priors (continuous codes reparameterised; discrete
  codes are fine, no gradient passes through them), inside the datum plate (``"data"``) whose size follows
  the observed array's first axis.
* Its **generator parameters** as ``numpyro.param`` sites, e.g. a network from ``ppzoo.nn.mlp("decoder",
  ...)`` (``"decoder$params"``) or scalar params with constraints (trained on the unconstrained scale).
* Optionally a **sleep-phase guide** (option ``guide``): a NumPyro program taking the same keyword
  arguments as the model, with sample sites that are code sites of the model and its own ``numpyro.param``
  sites (e.g. an encoder network ``"encoder$params"``).

What a step does
----------------
``n_critic`` discriminator steps, then one generator step, compiled in chunks of ``chunk_size`` steps
(one ``lax.scan``, state donated, like the ``"svi"`` engine):

1. real data: a minibatch of ``batch_size`` rows of every data array whose first axis has the observed
   array's length (Floyd's sampling without replacement); generated data: the model run on that minibatch
   with the observed site *not* conditioned, so its codes come from their priors and the observed site is
   drawn from the generator (:func:`generate`);
2. discriminator :math:`D_\psi` (a ``ppzoo.nn.MLP`` with one logit by default, or any Flax NNX module given
   as ``discriminator``) minimises the logistic loss
   :math:`E_{real}[\mathrm{softplus}(-D)] + E_{gen}[\mathrm{softplus}(D)]`, plus with ``gradient_penalty``
   :math:`\gamma` the R1 penalty :math:`\frac{\gamma}{2} E_{real}\|\nabla_x D(x)\|^2` (Mescheder et al.
   2018, Eq. 9);
3. generator minimises the non-saturating loss :math:`E_{gen}[\mathrm{softplus}(-D)]` (Goodfellow et al.
   2014, Sec. 3), minus ``info_weight`` :math:`\lambda` times :math:`E[\log q(c \mid x)]` on its own samples
   when a guide is given (InfoGAN's mutual-information bound, Chen et al. 2016, Eq. 5);
4. the guide (sleep phase; Hinton et al. 1995) maximises :math:`E_{c \sim p(c),\, x \sim p(x \mid c)}[\log
   q(c \mid x)]` on the same generated batch: it learns to invert the generator, an amortized inference
   network.

A step whose losses or new parameters are not finite is not applied (the ``"svi"`` engine's guard,
:func:`ppzoo.inference.svi.guarded_step`): training stops there with a warning, the last good state kept.

Results
-------
``fit.params``: the generator's params (constrained, the model's param names), the guide's params, and
``"discriminator$state"`` (its weights as a pure dict). ``fit.losses``: a structured array with one field
per loss (``"generator"``, ``"discriminator"`` and, with a guide, ``"sleep"``: the guide's
:math:`-E\log q` per datum); ``ppzoo.report`` plots each. ``fit.samples``: with a guide, draws of the codes
from the guide given the real data (the amortized answer); without one, draws of the codes from their
priors under the trained generator (a GAN has no posterior: invert it with ``engine="nuts"`` and
``params=fit.params`` for one). SBC is refused (:func:`adversarial_core`).

References
----------
Goodfellow, I. et al. (2014). Generative adversarial nets. NeurIPS. Sec. 3 (non-saturating loss).
Mescheder, L., Geiger, A. & Nowozin, S. (2018). Which training methods for GANs do actually converge? ICML.
Eq. 9 (R1 penalty).
Chen, X. et al. (2016). InfoGAN. NeurIPS. Eq. 5 (the variational mutual-information bound).
Hinton, G. E., Dayan, P., Frey, B. J. & Neal, R. M. (1995). The wake-sleep algorithm. Science 268.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from numpyro import handlers
from numpyro.distributions import biject_to, constraints
from numpyro.infer.util import log_density
from numpyro.primitives import Messenger

from ppzoo import nn
from ppzoo.buffers import fresh_buffers
from ppzoo.inference._base import Engine, EngineResult, Options, split_data, validate_positive
from ppzoo.inference.svi import GuardCarry, all_finite, floyd_subsample, guarded_step, guide_draws, unguarded_step

__all__ = [
    "AdversarialOptions",
    "ENGINE",
    "run_adversarial",
    "adversarial_core",
    "Unobserve",
    "Setup",
    "setup",
    "generate",
    "minibatch",
    "discriminator_loss",
    "generator_loss",
    "sleep_log_prob",
    "guide_with",
    "GANState",
    "make_step",
    "train",
    "LOSS_NAMES",
]

#: The fields of ``fit.losses`` (``"sleep"`` only with a guide).
LOSS_NAMES = ("generator", "discriminator", "sleep")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AdversarialOptions(Options):
    """Settings of the ``"adversarial"`` engine.

    Parameters
    ----------
    steps : int
        Generator steps.
    batch_size : int
        Real and generated rows per minibatch (at most the number of data rows).
    n_critic : int
        Discriminator steps per generator step, each on a fresh minibatch (>= 1).
    learning_rate : float
        Adam's learning rate (beta1 = 0.5, as DCGAN) for generator, discriminator and guide, unless their
        own optimizer is given.
    optimizer, discriminator_optimizer, guide_optimizer : optax.GradientTransformation or None
        Optax optimizers of the generator, the discriminator and the guide; ``None``:
        ``optax.adam(learning_rate, b1=0.5)``.
    discriminator : flax.nnx.Module or None
        Maps a batch of observed values ``(B, *event)`` to one logit per row (``(B,)`` or ``(B, 1)``);
        ``None``: an MLP on the flattened rows with ``discriminator_hidden`` leaky-ReLU layers.
    discriminator_hidden : tuple of int
        Hidden widths of the default discriminator.
    gradient_penalty : float
        Weight of the R1 penalty on real data (0: none; 1-10 are usual).
    guide : callable or None
        Sleep-phase guide: a NumPyro program over code sites of the model, trained on generated data.
    info_weight : float
        InfoGAN's lambda: the generator also maximises ``info_weight * E log q(code | x)`` (needs ``guide``).
    guide_shares_discriminator : bool
        InfoGAN's Q network on the discriminator's trunk (Chen et al. 2016, Sec. 6): the guide is called with
        the keyword argument ``discriminator`` (the current discriminator module, e.g. one with a second head
        for the codes), and ``info_weight`` times its ``-E log q(code | x)`` on generated rows is added to the
        discriminator's loss, so trunk and head learn from it. Needs ``guide`` and ``info_weight > 0``.
    observed : str or None
        The observed site the generator draws (``None``: the model's only observed site).
    num_draws : int
        Draws of the codes in ``fit.samples`` (from the guide given the data, else from the prior).
    chunk_size : int
        Steps per compiled call.
    progress_bar : bool
        Show a progress bar over chunks.
    """

    steps: int = 2000
    batch_size: int = 64
    n_critic: int = 1
    learning_rate: float = 2e-4
    optimizer: optax.GradientTransformation | None = None
    discriminator_optimizer: optax.GradientTransformation | None = None
    guide_optimizer: optax.GradientTransformation | None = None
    discriminator: nnx.Module | None = None
    discriminator_hidden: tuple[int, ...] = (64, 64)
    gradient_penalty: float = 0.0
    guide: Callable[..., Any] | None = None
    info_weight: float = 0.0
    guide_shares_discriminator: bool = False
    observed: str | None = None
    num_draws: int = 200
    chunk_size: int = 200
    progress_bar: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_draws", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"Adversarial option `{name}` must be an integer; got {value!r}.")
        validate_positive("Adversarial", steps=self.steps, batch_size=self.batch_size, num_draws=self.num_draws,
                          chunk_size=self.chunk_size, learning_rate=self.learning_rate)
        if isinstance(self.n_critic, bool) or not isinstance(self.n_critic, (int, np.integer)) or self.n_critic < 1:
            raise ValueError(
                f"Adversarial option `n_critic` must be an integer >= 1 (discriminator steps per generator step); "
                f"got {self.n_critic!r}. Example: n_critic=1 (non-saturating GAN) or n_critic=5 (WGAN-style)."
            )
        for name in ("gradient_penalty", "info_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 0:
                raise ValueError(f"Adversarial option `{name}` must be a number >= 0; got {value!r}.")
        if self.info_weight > 0 and self.guide is None:
            raise ValueError(
                f"Adversarial option `info_weight`={self.info_weight} needs a `guide` (the q(code | x) whose log "
                "density the generator maximises); pass guide=... or info_weight=0."
            )
        if not isinstance(self.guide_shares_discriminator, (bool, np.bool_)):
            raise TypeError(f"Adversarial option `guide_shares_discriminator` must be True or False; got "
                            f"{self.guide_shares_discriminator!r}.")
        if self.guide_shares_discriminator and (self.guide is None or not self.info_weight > 0):
            raise ValueError(
                "Adversarial option `guide_shares_discriminator`=True needs a `guide` (called with discriminator=...) "
                f"and `info_weight` > 0 (the weight of its loss on the shared trunk); got guide={self.guide!r}, "
                f"info_weight={self.info_weight}. Example: guide=q, info_weight=1.0 (InfoGAN's lambda)."
            )
        for name in ("optimizer", "discriminator_optimizer", "guide_optimizer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, optax.GradientTransformation):
                raise TypeError(
                    f"Adversarial option `{name}` must be an optax.GradientTransformation (e.g. optax.adam(2e-4, "
                    f"b1=0.5)) or None; got {value!r}."
                )
        if self.discriminator is not None and not isinstance(self.discriminator, nnx.Module):
            raise TypeError(
                "Adversarial option `discriminator` must be a flax.nnx.Module mapping (B, *event) to one logit per "
                f"row (e.g. ppzoo.nn.MLP(d, (64, 1), rngs=nnx.Rngs(0))) or None; got {self.discriminator!r}."
            )
        hidden = self.discriminator_hidden
        if isinstance(hidden, list):
            object.__setattr__(self, "discriminator_hidden", hidden := tuple(hidden))
        if not isinstance(hidden, tuple) or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                                                for h in hidden):
            raise ValueError(
                f"Adversarial option `discriminator_hidden` must be a tuple of positive integers, e.g. (64, 64); "
                f"got {self.discriminator_hidden!r}."
            )
        if self.guide is not None and not callable(self.guide):
            raise TypeError(f"Adversarial option `guide` must be a NumPyro guide function or None; got {self.guide!r}.")
        if self.observed is not None and not isinstance(self.observed, str):
            raise TypeError(f"Adversarial option `observed` must be a site name or None; got {self.observed!r}.")

    def adam(self, given: optax.GradientTransformation | None) -> optax.GradientTransformation:
        return given if given is not None else optax.adam(self.learning_rate, b1=0.5)


# ----------------------------------------------------------------------------------------- the pieces


class Unobserve(Messenger):
    """Draw the site ``name`` from its distribution even where the model passes ``obs=``: generated data.

    Must be the innermost handler (applied first), so that ``seed`` then gives the site a key.
    """

    def __init__(self, fn: Callable[..., Any] | None = None, *, name: str):
        self.name = name
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.name:
            msg["value"], msg["is_observed"] = None, False


def _trace(fn: Callable[..., Any], key: jax.Array, params: Mapping[str, Any], data: Mapping[str, Any]):
    return handlers.trace(handlers.seed(handlers.substitute(fn, data=dict(params)), key)).get_trace(**data)


class Setup(NamedTuple):
    """What one eager run of model and guide says: names, initial values and the networks' structure."""

    observed: str
    length: int
    codes: tuple[str, ...]
    guide_sites: tuple[str, ...]
    generator_init: dict[str, jax.Array]  # unconstrained
    transforms: dict[str, Any]
    guide_init: dict[str, jax.Array]
    discriminator_graph: Any
    discriminator_init: Any


def _param_sites(trace) -> dict[str, dict]:
    return {k: s for k, s in trace.items() if s["type"] == "param"}


def setup(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array, options: AdversarialOptions,
          sites: Any) -> Setup:
    """Check model, guide and discriminator against the options and the data, eagerly (nothing compiles).

    Raises
    ------
    ValueError
        No observed site (or ``observed`` names none, or several and none named); the observed array has
        fewer rows than ``batch_size``; the model has no ``numpyro.param`` site; the guide names no code
        site of the model, or a site the model does not have; the discriminator does not map to one logit.
    """
    observed = list(sites.observed)
    if options.observed is not None:
        if options.observed not in observed:
            raise ValueError(
                f"Adversarial option `observed`={options.observed!r} is not an observed site of the model; observed "
                f"sites: {observed or 'none'}."
            )
        name = options.observed
    elif len(observed) == 1:
        name = observed[0]
    elif not observed:
        raise ValueError(
            "The adversarial engine needs an observed site drawn from the generator (e.g. "
            "numpyro.sample('x', dist.Delta(decoder(z)).to_event(1), obs=x)); the model has none with these data. "
            "Pass the real data under the argument the model uses for obs=."
        )
    else:
        raise ValueError(
            f"The model has several observed sites ({', '.join(observed)}); name the one the generator draws "
            "with the option observed='x'."
        )
    value = np.asarray(sites.values[name])
    if value.ndim < 1:
        raise ValueError(f"The observed site {name!r} is a scalar; the adversarial engine needs rows of data (N, ...).")
    length = value.shape[0]
    if options.batch_size > length:
        raise ValueError(
            f"Adversarial option `batch_size`={options.batch_size} exceeds the {length} rows of {name!r}; "
            f"choose batch_size <= {length}."
        )
    init_key, guide_key, disc_key = jax.random.split(key, 3)
    trace = _trace(model, init_key, {}, data)
    params = _param_sites(trace)
    if not params:
        raise ValueError(
            "The model has no numpyro.param site: the adversarial engine trains a generator's parameters "
            "(e.g. a network from ppzoo.nn.mlp('decoder', ...)); there is nothing to train."
        )
    transforms = {k: biject_to(s["kwargs"].get("constraint", constraints.real)) for k, s in params.items()}
    generator_init = {k: transforms[k].inv(s["value"]) for k, s in params.items()}
    codes = tuple(sites.latent)
    if options.discriminator is not None:
        graph, disc_init = nnx.split(options.discriminator)
    else:
        width = int(np.prod(value.shape[1:], dtype=int))
        net = nn.MLP(width, (*options.discriminator_hidden, 1), activation="leaky_relu",
                     rngs=nnx.Rngs(int(jax.random.randint(disc_key, (), 0, 2**31 - 1))))
        graph, disc_init = nnx.split(net)
    guide_sites, guide_init = (), {}
    if options.guide is not None:
        guide_trace = _trace(guide_with(options, graph, disc_init), guide_key, {}, data)
        guide_sites = tuple(k for k, s in guide_trace.items() if s["type"] == "sample" and not s["is_observed"])
        foreign = [k for k in guide_sites if k not in codes]
        if not guide_sites or foreign:
            raise ValueError(
                f"The sleep-phase `guide` must sample code sites of the model; it samples "
                f"{list(guide_sites) or 'no site'}{f', of which {foreign} are not latent sites of the model' if foreign else ''}. "
                f"Latent sites of the model: {list(codes)}. Name the guide's sites after the model's codes."
            )
        guide_params = _param_sites(guide_trace)
        shared = sorted(set(guide_params) & set(params))
        if shared:
            raise ValueError(
                f"The guide's param site(s) {shared} are also the model's: the sleep phase would train the generator. "
                "Give the guide's networks their own names (e.g. 'encoder')."
            )
        if any(s["kwargs"].get("constraint", constraints.real) is not constraints.real for s in guide_params.values()):
            raise ValueError("The sleep-phase guide's param sites must be unconstrained (real), e.g. network weights.")
        guide_init = {k: s["value"] for k, s in guide_params.items()}
    rows = jax.ShapeDtypeStruct((options.batch_size, *value.shape[1:]), jnp.asarray(value.flat[:1]).dtype)
    try:
        out = jax.eval_shape(lambda s, x: _raw_logits(graph, s, x, options.discriminator is None), disc_init, rows)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"The discriminator fails on a batch of {name!r} rows of shape {rows.shape} (it gets the rows as the "
            f"observed site has them): {error}"
        ) from error
    if out.shape not in ((options.batch_size,), (options.batch_size, 1)):
        raise ValueError(
            f"The discriminator must map a batch of {name!r} rows {rows.shape} to one logit per row, shape "
            f"({options.batch_size},) or ({options.batch_size}, 1); it returns {out.shape}. End it in a layer "
            "with one output."
        )
    return Setup(name, length, codes, guide_sites, generator_init, transforms, guide_init, graph, disc_init)


def guide_with(options: AdversarialOptions, graph: Any, weights: Any) -> Callable[..., Any] | None:
    """The guide as the engine calls it: with ``guide_shares_discriminator``, bound to the discriminator ``weights``."""
    if options.guide is None or not options.guide_shares_discriminator:
        return options.guide
    return functools.partial(options.guide, discriminator=nnx.merge(graph, weights))


def _raw_logits(graph: Any, state: Any, x: jax.Array, flatten: bool) -> jax.Array:
    return nnx.merge(graph, state)(x.reshape(x.shape[0], -1) if flatten else x)


def _logits(graph: Any, state: Any, x: jax.Array, flatten: bool) -> jax.Array:
    """The discriminator's logit per row, ``(B,)`` (its output was checked to be ``(B,)`` or ``(B, 1)``)."""
    return _raw_logits(graph, state, x, flatten).reshape(x.shape[0])


def minibatch(arrays: Mapping[str, Any], length: int, size: int, key: jax.Array) -> dict[str, jax.Array]:
    """``size`` distinct rows (uniform) of every array whose first axis has ``length`` rows; others whole."""
    rows = floyd_subsample(length, size, key)
    return {k: (v[rows] if np.ndim(v) and np.shape(v)[0] == length else v) for k, v in arrays.items()}


def generate(model: Callable[..., Any], observed: str, params: Mapping[str, Any], key: jax.Array,
             data: Mapping[str, Any], codes: tuple[str, ...]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Generated rows of ``observed`` and the codes that made them: ``model(**data)`` with the site unobserved."""
    trace = _trace(Unobserve(model, name=observed), key, params, data)
    return trace[observed]["value"], {k: trace[k]["value"] for k in codes if k in trace}


def discriminator_loss(logits_real: jax.Array, logits_generated: jax.Array) -> jax.Array:
    """The logistic loss of a discriminator calling real rows 1 and generated rows 0."""
    return jnp.mean(jax.nn.softplus(-logits_real)) + jnp.mean(jax.nn.softplus(logits_generated))


def generator_loss(logits_generated: jax.Array) -> jax.Array:
    """The non-saturating generator loss ``E softplus(-D)`` (= ``-E log sigmoid(D)``)."""
    return jnp.mean(jax.nn.softplus(-logits_generated))


def sleep_log_prob(guide: Callable[..., Any], guide_params: Mapping[str, Any], codes: Mapping[str, jax.Array],
                   data: Mapping[str, Any], guide_sites: tuple[str, ...], rows: int) -> jax.Array:
    """``E log q(codes | x)`` per row: the guide's log density at the codes that generated ``data``."""
    values = {**guide_params, **{k: codes[k] for k in guide_sites}}
    return log_density(guide, (), dict(data), values)[0] / rows


class GANState(NamedTuple):
    """The training state: generator (unconstrained), discriminator and guide, each with its optimizer state."""

    generator: Any
    generator_opt: Any
    discriminator: Any
    discriminator_opt: Any
    guide: Any
    guide_opt: Any


def make_step(model: Callable[..., Any], s: Setup, options: AdversarialOptions, static: Mapping[str, Any],
              step_key: jax.Array):
    """One step: ``n_critic`` discriminator steps, one generator step and one guide (sleep) step.

    Returns ``step(state, index, arrays) -> (state, losses (generator, discriminator, sleep), finite)``;
    the losses are those at the state the step started from.
    """
    g_opt, d_opt, q_opt = (options.adam(options.optimizer), options.adam(options.discriminator_optimizer),
                           options.adam(options.guide_optimizer))
    flatten = options.discriminator is None
    guide = options.guide

    def constrained(unconstrained):
        return {k: s.transforms[k](v) for k, v in unconstrained.items()}

    def batch_and_generated(generator, key, arrays):
        batch_key, gen_key = jax.random.split(key)
        batch = minibatch(arrays, s.length, options.batch_size, batch_key)
        x, codes = generate(model, s.observed, constrained(generator), gen_key, {**batch, **static}, s.codes)
        return batch, x, codes

    def d_loss_fn(weights, real, generated):
        loss = discriminator_loss(_logits(s.discriminator_graph, weights, real, flatten),
                                  _logits(s.discriminator_graph, weights, generated, flatten))
        if options.gradient_penalty > 0:
            grad = jax.grad(lambda x: jnp.sum(_logits(s.discriminator_graph, weights, x, flatten)))(real)
            penalty = jnp.mean(jnp.sum(grad.reshape(grad.shape[0], -1) ** 2, axis=1))
            loss = loss + 0.5 * options.gradient_penalty * penalty
        return loss

    def shared_d_loss_fn(weights, real, generated, codes, data, guide_params):
        # InfoGAN: the Q head on the discriminator's trunk; the trunk also minimises lambda * (-E log q).
        info = sleep_log_prob(guide_with(options, s.discriminator_graph, weights), guide_params, codes, data,
                              s.guide_sites, options.batch_size)
        return d_loss_fn(weights, real, generated) - options.info_weight * info, None

    def critic(carry, key, generator, arrays, guide_params):
        weights, opt_state = carry
        batch, generated, codes = batch_and_generated(generator, key, arrays)
        generated = jax.lax.stop_gradient(generated)
        if options.guide_shares_discriminator:
            data = {**batch, **static, s.observed: generated}
            (loss, _), grads = jax.value_and_grad(shared_d_loss_fn, has_aux=True)(
                weights, batch[s.observed], generated, jax.lax.stop_gradient(codes), data, guide_params)
        else:
            loss, grads = jax.value_and_grad(d_loss_fn)(weights, batch[s.observed], generated)
        updates, opt_state = d_opt.update(grads, opt_state, weights)
        return (optax.apply_updates(weights, updates), opt_state), loss

    def g_loss_fn(generator, weights, guide_params, key, arrays):
        batch, generated, codes = batch_and_generated(generator, key, arrays)
        loss = generator_loss(_logits(s.discriminator_graph, weights, generated, flatten))
        info = jnp.zeros(())
        if guide is not None:
            data = {**batch, **static, s.observed: generated}
            info = sleep_log_prob(guide_with(options, s.discriminator_graph, weights), guide_params, codes, data,
                                  s.guide_sites, options.batch_size)
        return loss - options.info_weight * info, (loss, generated, codes, batch)

    def step(state: GANState, index: jax.Array, arrays):
        key = jax.random.fold_in(step_key, index)
        critic_key, gen_key = jax.random.split(key)
        (weights, d_state), d_losses = jax.lax.scan(
            lambda carry, k: critic(carry, k, state.generator, arrays, state.guide),
            (state.discriminator, state.discriminator_opt), jax.random.split(critic_key, options.n_critic),
        )
        grads, (g_loss, generated, codes, batch) = jax.grad(g_loss_fn, has_aux=True)(
            state.generator, weights, state.guide, gen_key, arrays)
        updates, g_state = g_opt.update(grads, state.generator_opt, state.generator)
        generator = optax.apply_updates(state.generator, updates)
        guide_params, q_state, sleep = state.guide, state.guide_opt, jnp.zeros(())
        if guide is not None:
            data = {**batch, **static, s.observed: jax.lax.stop_gradient(generated)}
            codes = jax.lax.stop_gradient(codes)
            sleep, q_grads = jax.value_and_grad(
                lambda p: -sleep_log_prob(guide_with(options, s.discriminator_graph, weights), p, codes, data,
                                          s.guide_sites, options.batch_size))(state.guide)
            q_updates, q_state = q_opt.update(q_grads, state.guide_opt, state.guide)
            guide_params = optax.apply_updates(state.guide, q_updates)
        new = GANState(generator, g_state, weights, d_state, guide_params, q_state)
        losses = jnp.stack([g_loss, jnp.mean(d_losses), sleep])
        return new, losses, all_finite(new)

    def init() -> GANState:
        return GANState(s.generator_init, g_opt.init(s.generator_init), s.discriminator_init,
                        d_opt.init(s.discriminator_init), s.guide_init, q_opt.init(s.guide_init))

    return step, init


def _stop_warning(losses: np.ndarray, step_index: int) -> str:
    return (
        f"Adversarial training stopped at step {step_index}: a loss or the parameters became NaN/inf (last losses "
        f"{np.round(losses[-1], 4).tolist() if len(losses) else 'none'}). The last good state is kept; lower the "
        "learning rates, add a gradient_penalty, or check the generator's scales."
    )


def train(step, state: GANState, arrays, options: AdversarialOptions, *, on_chunk=None):
    """Train in compiled chunks (one ``lax.scan`` each, state donated), as the ``"svi"`` engine does.

    A chunk first runs without the guard; if any loss or the final state is not finite it is rerun from its
    start with :func:`ppzoo.inference.svi.guarded_step`, which stops at the first bad step.
    Returns the final state, the losses ``(steps run, 3)`` and the warnings.
    """
    chunk, total = min(options.chunk_size, options.steps), options.steps
    guarded, unguarded = guarded_step(step, total), unguarded_step(step)

    def run_guarded(state, failed, start, arrays):
        carry, losses = jax.lax.scan(lambda c, i: guarded(c, i, arrays), GuardCarry(state, state, failed),
                                     start + jnp.arange(chunk))
        return carry.state, carry.failed, losses

    def run_fast(state, start, arrays):
        (state, finite), losses = jax.lax.scan(lambda c, i: unguarded(c, i, arrays), (state, jnp.array(True)),
                                               start + jnp.arange(chunk))
        return state, finite & all_finite(state), losses

    jit_guarded = jax.jit(run_guarded, donate_argnums=0)
    jit_fast = jax.jit(run_fast) if total % chunk == 0 else None  # keeps its input: a rerun starts there
    failed, out = jnp.array(False), []
    for start in range(0, total, chunk):
        losses = None
        if jit_fast is not None:
            new, finite, fast_losses = jit_fast(state, jnp.asarray(start), arrays)
            if bool(finite):
                state, losses = new, fast_losses
            del new
        if losses is None:
            state, failed, losses = jit_guarded(state, failed, jnp.asarray(start), arrays)
        losses = np.asarray(losses)[: total - start]
        out.append(losses)
        if on_chunk is not None:
            on_chunk(len(losses))
        if bool(failed):
            bad = np.flatnonzero(~np.isfinite(losses).all(axis=1))
            stop = start + (int(bad[0]) if bad.size else len(losses))
            out[-1] = losses[: stop - start]
            history = np.concatenate(out)
            return state, history, [_stop_warning(history, stop)]
    return state, np.concatenate(out), []


def _structured(losses: np.ndarray, with_guide: bool) -> np.ndarray:
    names = LOSS_NAMES if with_guide else LOSS_NAMES[:2]
    out = np.zeros(len(losses), dtype=[(n, np.float32) for n in names])
    for i, n in enumerate(names):
        out[n] = losses[:, i]
    return out


# ------------------------------------------------------------------------------------------ the engine


def run_adversarial(model: Callable[..., Any], data: Mapping[str, Any], key: jax.Array, options: AdversarialOptions,
                    sites: Any) -> EngineResult:
    """Train ``model``'s generator adversarially on ``data`` (and its sleep-phase guide); see the module docstring."""
    setup_key, step_key, draw_key = jax.random.split(key, 3)
    s = setup(model, data, setup_key, options, sites)
    arrays, static = split_data(data)
    arrays = {k: jnp.asarray(v) for k, v in arrays.items()}
    step, init = make_step(model, s, options, static, step_key)
    state = fresh_buffers(init())  # donated from here on
    bar = None
    if options.progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.steps, desc="GAN", unit="step")
    try:
        state, losses, warnings = train(step, state, arrays, options, on_chunk=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    generator = {k: s.transforms[k](v) for k, v in state.generator.items()}
    params = {**generator, **state.guide}
    latent = list(sites.latent)
    if options.guide is not None:
        names = list(s.guide_sites)
        guide = guide_with(options, s.discriminator_graph, state.discriminator)
        draws = guide_draws(model, guide, params, draw_key, data, names, options.num_draws)
    else:
        names = latent
        draws = guide_draws(model, None, generator, draw_key, data, names, options.num_draws)
    samples = {k: np.asarray(v)[None] for k, v in draws.items() if k in names}
    out_params = jax.device_get({**params, "discriminator$state": nnx.to_pure_dict(state.discriminator)})
    return EngineResult(samples, {}, out_params, _structured(losses, options.guide is not None), warnings)


def adversarial_core(model: Callable[..., Any], options: AdversarialOptions, sites: Any):
    """Refuse SBC: the engine learns a generator, not a posterior over the model's latents.

    Its draws are codes from their priors (or a sleep-phase guide's amortized answer), so ranks of
    prior draws among them would be uniform whatever the fit: a check that cannot fail.
    """
    raise ValueError(
        "SBC does not apply to engine='adversarial': it learns a generator, not a posterior, and its draws of the "
        "codes come from their priors (or from an amortized sleep-phase guide), so ranks would be uniform whatever "
        "the fit. Invert the trained generator with ppzoo.sbc(..., engine='nuts') and params=fit.params instead."
    )


def _num_draws(options: AdversarialOptions) -> int:
    return options.num_draws


ENGINE = Engine(
    name="adversarial",
    options=AdversarialOptions,
    run=run_adversarial,
    core=adversarial_core,
    is_mcmc=False,
    learns_params=True,
    library="numpyro+optax",
    draws_per_run=_num_draws,
    batch_runs="vectorized",
    samples_posterior=False,
    description="Adversarial training of the program's generator (non-saturating GAN) with an optional sleep-phase guide",
)
