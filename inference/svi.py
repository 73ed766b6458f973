"""NumPyro SVI with optax: a jitted, state-donating update run in compiled chunks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide
from numpyro.primitives import Messenger, _subsample_fn
from numpyro.infer.util import log_density
from numpyro.optim import optax_to_numpyro

from ppzoo.inference._base import EngineResult, Options, split_data, validate_positive

__all__ = ["SVIOptions", "run_svi", "GUIDES", "make_guide", "SVIExtension", "shard_data", "floyd_subsample"]

GuideName = Literal["auto_normal", "auto_mvn", "auto_delta", "auto_lowrank"]
StepLoop = Literal["auto", "scan", "python"]

#: Autoguides by name.
GUIDES: dict[str, Callable[..., Any]] = {
    "auto_normal": autoguide.AutoNormal,
    "auto_mvn": autoguide.AutoMultivariateNormal,
    "auto_delta": autoguide.AutoDelta,
    "auto_lowrank": autoguide.AutoLowRankMultivariateNormal,
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class SVIExtension:
    """Extension point: extra trainable state updated alternately with the ELBO step, inside the compiled loop.

    FactorVAE's discriminator, for instance, is trained between SVI steps with its own optimizer: the ELBO
    must not move its weights (the VAE minimises the total correlation the discriminator estimates), so they
    live here rather than in NumPyro's param store. Each step of :func:`run_svi` does

    1. ``svi.update(svi_state, **data, **model_kwargs(state))``: the ELBO step, the model reading the state
       through keyword arguments;
    2. ``state, aux_loss = update(state, params, data, key)`` with the *new* SVI params: the extension's step.

    Both are undone together when the ELBO loss, the new params, ``aux_loss`` or the new state is not
    finite (training then stops with the usual warning, the last good params and state kept).

    Attributes
    ----------
    init : callable
        ``init(key, params, data) -> state``, a pytree of arrays; ``params`` are the initial SVI params
        (constrained), ``data`` the model's keyword arguments.
    update : callable
        ``update(state, params, data, key) -> (state, aux_loss)``; traced once inside the compiled chunk.
    model_kwargs : callable
        ``model_kwargs(state) -> dict`` of extra keyword arguments for model and guide during training.
        The model must also run without them (they are absent when the fit's draws and ArviZ groups are
        computed), e.g. by skipping the term that needs them.
    name : str
        The final state is returned in ``fit.params[f"{name}$state"]`` (not a NumPyro param: nothing else
        reads it), so that it can be inspected or reused.

    Notes
    -----
    How a model supplies one: pass ``ppzoo.fit(..., engine="svi", extension=ext)``, or give the model's own
    guide (``ZooModel.guide``) an attribute ``svi_extension``; the engine uses it whenever that guide is the
    one being fit (``guide=None``). Models without an extension run exactly as before.
    """

    init: Callable[..., Any]
    update: Callable[..., tuple[Any, jax.Array]]
    model_kwargs: Callable[[Any], dict[str, Any]]
    name: str = "extension"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SVIOptions(Options):
    """Settings of the ``"svi"`` engine.

    Parameters
    ----------
    steps : int
        Optimisation steps.
    learning_rate : float
        Adam's learning rate (ignored when ``optimizer`` is given).
    optimizer : optax.GradientTransformation or None
        Any optax optimizer, e.g. ``optax.adam(optax.cosine_decay_schedule(1e-2, 20_000))`` for a
        learning-rate schedule. ``None`` (default): ``optax.adam(learning_rate)``.
    guide : str, callable or None
        ``"auto_normal"``, ``"auto_mvn"``, ``"auto_delta"``, ``"auto_lowrank"``, or a guide function.
        ``None``: the zoo model's own (amortized) guide, else ``"auto_normal"``.
    num_particles : int
        Monte Carlo samples per ELBO estimate.
    num_draws : int
        Posterior draws taken from the fitted guide.
    progress_bar : bool
        Show a progress bar over training chunks.
    chunk_size : int
        Steps per compiled call (one compile whatever ``steps`` is; NaN checks happen per step).
    extension : SVIExtension or None
        Extra state trained alternately with the ELBO (:class:`SVIExtension`). ``None``: the guide's own
        ``svi_extension`` attribute if it has one (e.g. FactorVAE's discriminator), else none.
    data_devices : int or None
        Data parallel training: every data array is sharded along its first (data) axis over this many
        devices (``jax.sharding``), parameters and optimizer state replicated; XLA inserts the reductions.
        The same program runs on one device (``None``, the default). On CPU, ppzoo creates
        ``max(4, cores)`` host devices at import. Across hosts, call ``jax.distributed.initialize()`` first;
        the mesh then spans ``jax.devices()``.
    step_loop : {"auto", "scan", "python"}
        How the steps of a chunk are looped: ``"scan"`` compiles the whole chunk as one ``lax.scan``
        (no per-step dispatch: fastest for MLPs); ``"python"`` compiles one step and calls it
        ``chunk_size`` times from Python (dispatch is asynchronous, so the steps still queue back to
        back). ``"auto"`` (default) picks ``"python"`` on CPU when the step contains a convolution and
        ``"scan"`` otherwise: XLA's CPU convolutions inside a loop body run far slower than the same
        convolutions at the top level of a program (jax-ml/jax#12868; 25x for the disentanglement_lib
        conv VAE here, ``benchmarks/vae_speed.py``). NaN handling and results are the same either way.
    """

    steps: int = 2000
    learning_rate: float = 1e-2
    guide: str | Callable[..., Any] | None = None
    num_particles: int = 1
    num_draws: int = 1000
    progress_bar: bool = False
    chunk_size: int = 200
    extension: SVIExtension | None = None
    data_devices: int | None = None
    step_loop: StepLoop = "auto"
    optimizer: optax.GradientTransformation | None = None

    def __post_init__(self) -> None:
        validate_positive(
            "SVI",
            steps=self.steps,
            learning_rate=self.learning_rate,
            num_particles=self.num_particles,
            num_draws=self.num_draws,
            chunk_size=self.chunk_size,
        )
        for name in ("steps", "num_particles", "num_draws", "chunk_size"):
            if not isinstance(getattr(self, name), (int, np.integer)):
                raise TypeError(f"SVI option `{name}` must be an integer; got {getattr(self, name)!r}.")
        if isinstance(self.guide, str) and self.guide not in GUIDES:
            raise ValueError(
                f"SVI option `guide` must be one of {', '.join(map(repr, GUIDES))} or a guide function; "
                f"got {self.guide!r}."
            )
        if self.data_devices is not None:
            if isinstance(self.data_devices, bool) or not isinstance(self.data_devices, (int, np.integer)) or self.data_devices < 1:
                raise ValueError(f"SVI option `data_devices` must be a positive integer or None; got {self.data_devices!r}.")
            if self.data_devices > len(jax.devices()):
                raise ValueError(
                    f"SVI option `data_devices`={self.data_devices} but only {len(jax.devices())} device(s) exist. "
                    "On CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts (ppzoo does "
                    "this at import for max(4, cores))."
                )
        if self.extension is not None and not isinstance(self.extension, SVIExtension):
            raise TypeError(
                f"SVI option `extension` must be a ppzoo.inference.SVIExtension or None; got {self.extension!r}."
            )
        if self.step_loop not in ("auto", "scan", "python"):
            raise ValueError(f"SVI option `step_loop` must be 'auto', 'scan' or 'python'; got {self.step_loop!r}.")
        if self.optimizer is not None and not isinstance(self.optimizer, optax.GradientTransformation):
            raise TypeError(
                "SVI option `optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)) or None; "
                f"got {self.optimizer!r}."
            )
        if self.guide is not None and not isinstance(self.guide, str) and not callable(self.guide):
            raise TypeError(f"SVI option `guide` must be a name or a callable; got {self.guide!r}.")


def floyd_subsample(size: int, subsample_size: int, rng_key: jax.Array | None = None) -> jax.Array:
    """``subsample_size`` distinct indices drawn uniformly from ``range(size)`` by Floyd's algorithm.

    Every subset of that size is equally likely (the order within it is not uniform, which a minibatch sum
    does not see). Work and memory are ``O(subsample_size**2)`` and nothing of size ``size`` is built.
    NumPyro's CPU default, a partial Fisher-Yates shuffle of ``arange(size)``, copies the whole index array
    at each of its ``subsample_size`` steps: 0.53 ms per draw of 64 out of 40,000 here, more than the rest
    of an iVAE training step (benchmarks/vae_speed.py).
    """
    if rng_key is None:
        raise ValueError("Missing random key to generate subsample indices (run the model under a seed handler).")
    keys = jax.random.split(rng_key, subsample_size)

    def add(chosen, j):
        top = size - subsample_size + j
        candidate = jax.random.randint(keys[j], (), 0, top + 1)
        return chosen.at[j].set(jnp.where(jnp.any(chosen == candidate), top, candidate)), None

    chosen, _ = jax.lax.scan(add, jnp.full((subsample_size,), -1, jnp.int32), jnp.arange(subsample_size))
    return chosen


class _FloydSubsample(Messenger):
    """Draw the indices of subsampled plates with :func:`floyd_subsample` instead of NumPyro's default."""

    def process_message(self, msg):
        if msg["type"] == "plate" and msg["fn"] is _subsample_fn and msg["value"] is None:
            msg["fn"] = floyd_subsample


def _copied(tree):
    """Fresh buffers for every array in ``tree``, so that donating them cannot delete the caller's."""
    return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, tree)


def _contains_convolution(fn: Callable[..., Any], *args: Any) -> bool:
    """Whether ``fn(*args)`` traces to a program with a convolution, in any nested (loop, cond) body."""

    def search(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                return True
            for param in eqn.params.values():
                for sub in param if isinstance(param, (tuple, list)) else (param,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns") and search(inner):
                        return True
        return False

    return search(jax.make_jaxpr(fn)(*args).jaxpr)


def make_guide(model: Callable[..., Any], guide: str | Callable[..., Any] | None, default: Callable | None):
    """Resolve the guide option to a guide callable."""
    if guide is None:
        return default if default is not None else GUIDES["auto_normal"](model)
    if isinstance(guide, str):
        return GUIDES[guide](model)
    return guide


def shard_data(arrays: Mapping[str, Any], num_devices: int) -> tuple[dict[str, jax.Array], Any]:
    """Shard each array along its first axis over ``num_devices`` devices; return it and a replicated sharding.

    Raises
    ------
    ValueError
        If an array's first axis is not divisible by ``num_devices`` (name, length and the fix in the message).
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:num_devices]), ("data",))
    out = {}
    for name, value in arrays.items():
        length = np.shape(value)[0] if np.ndim(value) else None
        if length is None or length % num_devices:
            raise ValueError(
                f"SVI option data_devices={num_devices}: data `{name}` has {length} rows along its first axis, not a "
                f"multiple of {num_devices}. Drop or pad rows, or choose data_devices dividing {length}."
            )
        out[name] = jax.device_put(jnp.asarray(value), NamedSharding(mesh, PartitionSpec("data")))
    return out, NamedSharding(mesh, PartitionSpec())


def run_svi(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: SVIOptions,
    *,
    default_guide: Callable[..., Any] | None = None,
    latent_sites: list[str],
    deterministic_sites: list[str],
    progress: Callable[[int], None] | None = None,
) -> EngineResult:
    """Fit ``model(**data)`` by SVI with Adam and draw from the fitted guide.

    The update is ``jax.jit``-compiled once for a chunk of ``options.chunk_size`` steps (a
    ``lax.scan``) with the SVI state donated. A step whose loss or new parameters are not finite is
    not applied: training stops there, the last good parameters are kept, and a warning names the
    step and the last finite loss.
    """
    init_key, run_key, draw_key = jax.random.split(key, 3)
    guide = make_guide(model, options.guide, default_guide)
    extension = options.extension if options.extension is not None else getattr(guide, "svi_extension", None)
    optimizer = optax_to_numpyro(options.optimizer or optax.adam(options.learning_rate))
    # Training only: minibatch indices by Floyd's algorithm on CPU (NumPyro's CPU shuffle costs O(N) per step).
    fast = _FloydSubsample if jax.default_backend() == "cpu" else (lambda fn: fn)
    svi = SVI(fast(model), fast(guide), optimizer, loss=Trace_ELBO(num_particles=options.num_particles))
    arrays, static = split_data(data)
    replicate = None
    if options.data_devices is not None and options.data_devices > 1:
        arrays, replicate = shard_data(arrays, options.data_devices)
    state = svi.init(init_key, **arrays, **static)
    if extension is not None:
        ext_init_key, ext_key = jax.random.split(init_key)
        ext_state = extension.init(ext_init_key, svi.get_params(state), dict(data))
    else:
        ext_key, ext_state = None, None
    # Copy before donating: initial values may share buffers with objects the caller keeps (e.g. the
    # weights of a cached network module), which donation would delete.
    state, ext_state = _copied((state, ext_state))
    if replicate is not None:
        state, ext_state = jax.device_put((state, ext_state), replicate)
    chunk = min(options.chunk_size, options.steps)
    total = options.steps

    def all_finite(tree) -> jax.Array:
        finite = jnp.array(True)
        for leaf in jax.tree.leaves(tree):
            finite = finite & jnp.all(jnp.isfinite(leaf))
        return finite

    def step(state, ext_state, index, arrays):
        extra = extension.model_kwargs(ext_state) if extension is not None else {}
        new_state, loss = svi.update(state, **arrays, **static, **extra)
        finite = all_finite(svi.optim.get_params(new_state.optim_state))
        new_ext, aux_finite = ext_state, jnp.array(True)
        if extension is not None:
            new_ext, aux_loss = extension.update(
                ext_state, svi.get_params(new_state), {**arrays, **static}, jax.random.fold_in(ext_key, index)
            )
            aux_finite = jnp.isfinite(aux_loss) & all_finite(new_ext)
        return new_state, new_ext, loss, finite & aux_finite

    def guarded_step(carry, index, arrays):
        state, ext_state, previous, failed = carry
        new_state, new_ext, loss, new_finite = step(state, ext_state, index, arrays)
        live = (index < total) & ~failed
        loss_finite = jnp.isfinite(loss)
        # The loss is that of `state`: if it is not finite, `state` itself is bad and `previous` is the
        # last good one; if only the new parameters are not finite, `state` is the last good one.
        state, ext_state, previous = jax.lax.cond(
            live & loss_finite & new_finite,
            lambda: (new_state, new_ext, state),
            lambda: jax.lax.cond(
                live & ~loss_finite,
                lambda: (previous, ext_state, previous),
                lambda: (state, ext_state, previous),
            ),
        )
        return (state, ext_state, previous, failed | (live & ~(loss_finite & new_finite))), loss

    def fast_step(carry, index, arrays):
        # The same step without the per-step guard (two lax.conds and a finiteness check of every
        # parameter, about a third of an MLP VAE's step on CPU: benchmarks/vae_speed.py). Only whether
        # everything stayed finite is tracked; a chunk that did not is rerun from its start with the guard.
        state, ext_state, finite = carry
        state, ext_state, loss, _ = step(state, ext_state, index, arrays)
        return (state, ext_state, finite & jnp.isfinite(loss)), loss

    def chunk_finite(state, ext_state, finite):
        return finite & all_finite(svi.optim.get_params(state.optim_state)) & all_finite(ext_state)

    loop = options.step_loop
    if loop == "auto":
        on_cpu = jax.default_backend() == "cpu"
        loop = "python" if on_cpu and _contains_convolution(step, state, ext_state, np.int32(0), arrays) else "scan"

    if loop == "scan":

        def run_chunk(state, ext_state, failed, start, arrays):
            (state, ext_state, _, failed), losses = jax.lax.scan(
                lambda carry, index: guarded_step(carry, index, arrays),
                (state, ext_state, state, failed),
                start + jnp.arange(chunk),
            )
            return state, ext_state, failed, losses

        def run_fast_chunk(state, ext_state, start, arrays):
            (state, ext_state, finite), losses = jax.lax.scan(
                lambda carry, index: fast_step(carry, index, arrays),
                (state, ext_state, jnp.array(True)),
                start + jnp.arange(chunk),
            )
            return state, ext_state, chunk_finite(state, ext_state, finite), losses

        jit_guarded = jax.jit(run_chunk, donate_argnums=(0, 1))
        # Not donated: the chunk's starting state must survive for the guarded rerun. Whole chunks only
        # (the guard also masks the steps of a last, partial chunk past `total`).
        jit_fast = jax.jit(run_fast_chunk) if total % chunk == 0 else None

        def guarded_chunk(state, ext_state, failed, start, arrays):
            return jit_guarded(state, ext_state, failed, jnp.asarray(start), arrays)

        def fast_chunk(state, ext_state, start, arrays):
            return jit_fast(state, ext_state, jnp.asarray(start), arrays)

        if jit_fast is None:
            fast_chunk = None
    else:
        one_guarded = jax.jit(guarded_step, donate_argnums=0)
        one_fast = jax.jit(fast_step, donate_argnums=0)
        jit_chunk_finite = jax.jit(chunk_finite)

        def guarded_chunk(state, ext_state, failed, start, arrays):
            carry, losses = (state, ext_state, _copied(state), failed), []
            for index in range(start, min(start + chunk, total)):
                carry, loss = one_guarded(carry, np.int32(index), arrays)
                losses.append(loss)
            state, ext_state, _, failed = carry
            return state, ext_state, failed, jnp.stack(losses)

        def fast_chunk(state, ext_state, start, arrays):
            # A copy is donated step after step; the chunk's starting state survives for the guarded rerun.
            carry, losses = (_copied(state), _copied(ext_state), jnp.array(True)), []
            for index in range(start, min(start + chunk, total)):
                carry, loss = one_fast(carry, np.int32(index), arrays)
                losses.append(loss)
            state, ext_state, finite = carry
            return state, ext_state, jit_chunk_finite(state, ext_state, finite), jnp.stack(losses)

    failed = jnp.array(False)
    losses = []
    warnings: list[str] = []
    for start in range(0, total, chunk):
        chunk_losses = None
        if fast_chunk is not None:
            new_state, new_ext, finite, fast_losses = fast_chunk(state, ext_state, start, arrays)
            if bool(finite):
                state, ext_state, chunk_losses = new_state, new_ext, fast_losses
            del new_state, new_ext
        if chunk_losses is None:
            state, ext_state, failed, chunk_losses = guarded_chunk(state, ext_state, failed, start, arrays)
        chunk_losses = np.asarray(chunk_losses)[: total - start]
        losses.append(chunk_losses)
        if progress is not None:
            progress(len(chunk_losses))
        if bool(failed):
            bad = np.flatnonzero(~np.isfinite(chunk_losses))
            step_index = start + (int(bad[0]) if bad.size else len(chunk_losses))
            history = np.concatenate(losses)
            finite_losses = history[np.isfinite(history)]
            last = f"{finite_losses[-1]:.6g}" if finite_losses.size else "none"
            warnings.append(
                f"SVI stopped at step {step_index}: the loss or parameters became NaN/inf (last finite loss {last}). "
                "The last good parameters are kept; lower learning_rate or check the model's scales."
            )
            losses[-1] = chunk_losses[: step_index - start + 1]
            break
    losses_arr = np.concatenate(losses)
    params = svi.get_params(state)
    sites = list(latent_sites) + [s for s in deterministic_sites if s not in latent_sites]
    predictive = Predictive(model, guide=guide, params=params, num_samples=options.num_draws, return_sites=sites)
    draws = predictive(draw_key, **data)
    flat = {k: v for k, v in draws.items()}
    samples = {k: np.asarray(v)[None] for k, v in flat.items()}
    latent_draws = {k: flat[k] for k in latent_sites if k in flat}

    def log_joint(values):
        # Seeded so that a model that subsamples its data plate (minibatch VAEs) can draw its indices.
        seeded = handlers.seed(handlers.substitute(model, data=params), rng_seed=draw_key)
        return log_density(seeded, (), dict(data), values)[0]

    lp = np.asarray(jax.lax.map(log_joint, latent_draws, batch_size=min(options.num_draws, 256)))
    stats = {"lp": lp[None]}
    out_params = jax.device_get(params)
    if extension is not None:
        out_params = {**out_params, f"{extension.name}$state": jax.device_get(ext_state)}
    return EngineResult(samples, stats, out_params, losses_arr, warnings)
