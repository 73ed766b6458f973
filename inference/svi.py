"""The ``"svi"`` engine: NumPyro SVI with optax, a guarded step compiled once per chunk with the state donated.

Small named pieces, shared by the two ways the engine runs:

* :func:`run_svi` (what :func:`ppzoo.fit` runs): :func:`make_svi`, :func:`init_state`, then :func:`train`
  (chunks of :func:`make_step` under :func:`guarded_step`, or a faster unguarded chunk that is rerun
  with the guard when it went non-finite), then :func:`draw` from the fitted guide;
* :func:`svi_core` (what :func:`ppzoo.sbc` maps over simulations): the same state, step and guard in one
  ``lax.scan``, then the same draws.

A step is NumPyro's own ``SVI.update``. Its ``stable_update`` is not used: when a step's loss is not finite
it keeps the state that loss was computed at, where the guard here goes back to the last state with a
finite loss (and also refuses new parameters that are not finite).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import SVI, Predictive, Trace_ELBO, autoguide
from numpyro.infer.svi import SVIState
from numpyro.infer.util import log_density
from numpyro.optim import optax_to_numpyro
from numpyro.primitives import Messenger, _subsample_fn

from ppzoo.buffers import fresh_buffers
from ppzoo.extensions import SVIExtension
from ppzoo.inference import psis
from ppzoo.inference._base import Engine, EngineResult, Options, split_data, validate_positive

__all__ = [
    "SVIOptions",
    "SVIExtension",
    "GUIDES",
    "ENGINE",
    "run_svi",
    "svi_core",
    "make_guide",
    "extension_of",
    "make_svi",
    "TrainState",
    "GuardCarry",
    "init_state",
    "all_finite",
    "state_finite",
    "make_step",
    "guarded_step",
    "unguarded_step",
    "Chunks",
    "scan_chunks",
    "python_chunks",
    "step_loop",
    "stop_warning",
    "train",
    "guide_draws",
    "draw",
    "shard_data",
    "floyd_subsample",
]

GuideName = Literal["auto_normal", "auto_mvn", "auto_delta", "auto_lowrank"]
StepLoop = Literal["auto", "scan", "python"]
Arrays = Mapping[str, Any]

#: Autoguides by name.
GUIDES: dict[str, Callable[..., Any]] = {
    "auto_normal": autoguide.AutoNormal,
    "auto_mvn": autoguide.AutoMultivariateNormal,
    "auto_delta": autoguide.AutoDelta,
    "auto_lowrank": autoguide.AutoLowRankMultivariateNormal,
}


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
    psis_draws : int
        Guide draws for the PSIS diagnostic run after training (:mod:`ppzoo.inference.psis`): the fit's
        ``pareto_k``, the ESS of the importance weights and a warning when k-hat > 0.7; for a guide amortized
        per datum, one k-hat per item on ``psis_items`` items. ``0`` turns the diagnostic off.
    psis_items : int
        Items diagnosed when every latent is per datum (VAEs, the iVAE).
    importance_resample : bool
        Return ``num_draws`` draws resampled by the PSIS weights of ``psis_draws`` guide draws (a corrected
        posterior where k-hat allows it) instead of the guide's own draws. Needs a guide with a density and
        global latents.
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
    psis_draws: int = 1000
    psis_items: int = 256
    importance_resample: bool = False

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
        for name in ("psis_draws", "psis_items"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0 or 0 < value < 5:
                raise ValueError(f"SVI option `{name}` must be 0 (off) or an integer of at least 5; got {value!r}. "
                                 "Typical: psis_draws=1000, psis_items=256.")
        if not isinstance(self.importance_resample, bool):
            raise TypeError(f"SVI option `importance_resample` must be True or False; got {self.importance_resample!r}.")
        if self.importance_resample and self.guide == "auto_delta":
            raise ValueError("SVI option importance_resample=True needs a guide with a density, but guide='auto_delta' "
                             "is a point estimate: there are no importance weights. Use guide='auto_normal' or 'auto_mvn'.")
        if self.importance_resample and self.psis_draws == 0:
            raise ValueError("SVI option importance_resample=True resamples the PSIS draws, but psis_draws=0; "
                             "use psis_draws=1000 (or more).")


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


# ------------------------------------------------------------------------------------------ the pieces


def make_guide(model: Callable[..., Any], guide: str | Callable[..., Any] | None) -> Callable[..., Any]:
    """The ``guide`` option as a guide function.

    A name is that autoguide on ``model``; a callable is used as it is; ``None`` is the model's own guide
    when it has one (``model.make_guide()``, e.g. a zoo VAE's amortized encoder), else ``"auto_normal"``.
    """
    if guide is None:
        own = getattr(model, "make_guide", None)
        own = own() if callable(own) else None
        return own if own is not None else GUIDES["auto_normal"](model)
    if isinstance(guide, str):
        return GUIDES[guide](model)
    return guide


def extension_of(options: SVIOptions, guide: Callable[..., Any]) -> SVIExtension | None:
    """The extension to train: the ``extension`` option, else the guide's own ``svi_extension``, else none."""
    return options.extension if options.extension is not None else getattr(guide, "svi_extension", None)


def make_svi(model: Callable[..., Any], guide: Callable[..., Any], options: SVIOptions) -> SVI:
    """NumPyro's ``SVI`` with the options' optimizer and ELBO.

    On CPU, minibatch indices are drawn by Floyd's algorithm during training (:func:`floyd_subsample`;
    NumPyro's CPU shuffle costs O(N) per step); the fit's draws use the model as it is.
    """
    optimizer = optax_to_numpyro(options.optimizer or optax.adam(options.learning_rate))
    fast = _FloydSubsample if jax.default_backend() == "cpu" else (lambda fn: fn)
    return SVI(fast(model), fast(guide), optimizer, loss=Trace_ELBO(num_particles=options.num_particles))


class TrainState(NamedTuple):
    """What training updates: NumPyro's SVI state and the extension's state (``None`` without one)."""

    svi: SVIState
    extension: Any


class GuardCarry(NamedTuple):
    """The guarded loop's carry: the current state, the last state with a finite loss, and whether it stopped."""

    state: TrainState
    previous: TrainState
    failed: jax.Array


#: ``step(state, index, arrays) -> (new_state, loss of state, whether new_state is finite)``.
Step = Callable[[TrainState, jax.Array, Arrays], tuple[TrainState, jax.Array, jax.Array]]


def init_state(
    svi: SVI, extension: SVIExtension | None, key: jax.Array, data: Mapping[str, Any]
) -> tuple[TrainState, jax.Array | None]:
    """The initial :class:`TrainState` from ``key``, and the key the extension's steps fold their index into."""
    state = svi.init(key, **data)
    if extension is None:
        return TrainState(state, None), None
    init_key, step_key = jax.random.split(key)
    return TrainState(state, extension.init(init_key, svi.get_params(state), dict(data))), step_key


def all_finite(tree: Any) -> jax.Array:
    """Whether every array in ``tree`` is finite everywhere (``True`` for an empty tree)."""
    finite = jnp.array(True)
    for leaf in jax.tree.leaves(tree):
        finite = finite & jnp.all(jnp.isfinite(leaf))
    return finite


def state_finite(svi: SVI, state: TrainState) -> jax.Array:
    """Whether the (unconstrained) parameters and the extension's state are finite."""
    return all_finite(svi.optim.get_params(state.svi.optim_state)) & all_finite(state.extension)


def make_step(
    svi: SVI, extension: SVIExtension | None, static: Mapping[str, Any], extension_key: jax.Array | None
) -> Step:
    """One training step: NumPyro's ``SVI.update``, then the extension's update with the new parameters."""

    def step(state: TrainState, index: jax.Array, arrays: Arrays) -> tuple[TrainState, jax.Array, jax.Array]:
        extra = extension.model_kwargs(state.extension) if extension is not None else {}
        svi_state, loss = svi.update(state.svi, **arrays, **static, **extra)
        new = TrainState(svi_state, state.extension)
        finite = all_finite(svi.optim.get_params(svi_state.optim_state))
        if extension is not None:
            params = svi.get_params(svi_state)
            ext_state, aux_loss = extension.update(
                state.extension, params, {**arrays, **static}, jax.random.fold_in(extension_key, index)
            )
            new = TrainState(svi_state, ext_state)
            finite = finite & jnp.isfinite(aux_loss) & all_finite(ext_state)
        return new, loss, finite

    return step


def guarded_step(step: Step, total: int) -> Callable[[GuardCarry, jax.Array, Arrays], tuple[GuardCarry, jax.Array]]:
    """``step`` that keeps the last good state: a non-finite step stops training without being applied.

    The loss a step returns is that of the state it started from: when it is not finite, that state is
    itself bad and the carry goes back to ``previous``; when only the new state is not finite, the current
    state is the last good one. Steps at ``index >= total`` (padding of a last, partial chunk) do nothing.
    """

    def guarded(carry: GuardCarry, index: jax.Array, arrays: Arrays) -> tuple[GuardCarry, jax.Array]:
        state, previous, failed = carry
        new, loss, new_finite = step(state, index, arrays)
        live = (index < total) & ~failed
        loss_finite = jnp.all(jnp.isfinite(loss))  # a step may return several losses (the adversarial engine)
        state, previous = jax.lax.cond(
            live & loss_finite & new_finite,
            lambda: (new, state),
            lambda: jax.lax.cond(live & ~loss_finite, lambda: (previous, previous), lambda: (state, previous)),
        )
        return GuardCarry(state, previous, failed | (live & ~(loss_finite & new_finite))), loss

    return guarded


def unguarded_step(step: Step) -> Callable[[tuple[TrainState, jax.Array], jax.Array, Arrays], tuple[Any, jax.Array]]:
    """``step`` tracking only whether every loss stayed finite, for a chunk rerun with the guard if not.

    The guard (two ``lax.cond`` and a finiteness check of every parameter) is about a third of an MLP VAE's
    step on CPU (``benchmarks/vae_speed.py``).
    """

    def unguarded(carry: tuple[TrainState, jax.Array], index: jax.Array, arrays: Arrays):
        state, finite = carry
        state, loss, _ = step(state, index, arrays)
        return (state, finite & jnp.all(jnp.isfinite(loss))), loss

    return unguarded


class Chunks(NamedTuple):
    """Compiled runners of one chunk of steps starting at step ``start``.

    ``guarded(state, failed, start, arrays) -> (state, failed, losses)`` donates ``state``;
    ``fast(state, start, arrays) -> (state, finite, losses)`` keeps it (the chunk's start must survive
    for a guarded rerun), or is ``None`` when there is no fast path.
    """

    guarded: Callable[..., tuple[TrainState, jax.Array, jax.Array]]
    fast: Callable[..., tuple[TrainState, jax.Array, jax.Array]] | None


def scan_chunks(svi: SVI, step: Step, chunk: int, total: int) -> Chunks:
    """Each chunk one compiled ``lax.scan`` (no per-step dispatch: fastest for MLPs)."""
    guarded, unguarded = guarded_step(step, total), unguarded_step(step)

    def run_guarded(state, failed, start, arrays):
        carry, losses = jax.lax.scan(
            lambda carry, index: guarded(carry, index, arrays),
            GuardCarry(state, state, failed),
            start + jnp.arange(chunk),
        )
        return carry.state, carry.failed, losses

    def run_fast(state, start, arrays):
        (state, finite), losses = jax.lax.scan(
            lambda carry, index: unguarded(carry, index, arrays), (state, jnp.array(True)), start + jnp.arange(chunk)
        )
        return state, finite & state_finite(svi, state), losses

    jit_guarded = jax.jit(run_guarded, donate_argnums=0)
    jit_fast = jax.jit(run_fast)

    def guarded_chunk(state, failed, start, arrays):
        return jit_guarded(state, failed, jnp.asarray(start), arrays)

    def fast_chunk(state, start, arrays):
        return jit_fast(state, jnp.asarray(start), arrays)

    # Whole chunks only on the fast path: the guard also masks the steps of a last, partial chunk.
    return Chunks(guarded_chunk, fast_chunk if total % chunk == 0 else None)


def python_chunks(svi: SVI, step: Step, chunk: int, total: int) -> Chunks:
    """One compiled step called ``chunk`` times from Python (dispatch is asynchronous: steps queue back to back).

    For steps with convolutions on CPU, which XLA runs far slower inside a loop body (jax-ml/jax#12868).
    """
    one_guarded = jax.jit(guarded_step(step, total), donate_argnums=0)
    one_fast = jax.jit(unguarded_step(step), donate_argnums=0)
    jit_finite = jax.jit(lambda state: state_finite(svi, state))

    def guarded_chunk(state, failed, start, arrays):
        carry, losses = GuardCarry(state, fresh_buffers(state), failed), []
        for index in range(start, min(start + chunk, total)):
            carry, loss = one_guarded(carry, np.int32(index), arrays)
            losses.append(loss)
        return carry.state, carry.failed, jnp.stack(losses)

    def fast_chunk(state, start, arrays):
        # A copy is donated step after step; the chunk's starting state survives for a guarded rerun.
        carry, losses = (fresh_buffers(state), jnp.array(True)), []
        for index in range(start, min(start + chunk, total)):
            carry, loss = one_fast(carry, np.int32(index), arrays)
            losses.append(loss)
        state, finite = carry
        return state, finite & jit_finite(state), jnp.stack(losses)

    return Chunks(guarded_chunk, fast_chunk)


def step_loop(options: SVIOptions, step: Step, state: TrainState, arrays: Arrays) -> Literal["scan", "python"]:
    """The ``step_loop`` option resolved: ``"auto"`` is ``"python"`` on CPU when the step has a convolution."""
    if options.step_loop != "auto":
        return options.step_loop
    on_cpu = jax.default_backend() == "cpu"
    return "python" if on_cpu and _contains_convolution(step, state, np.int32(0), arrays) else "scan"


def stop_warning(losses: np.ndarray, step_index: int) -> str:
    """The warning for training stopped at ``step_index`` (``losses``: every loss so far)."""
    finite = losses[np.isfinite(losses)]
    last = f"{finite[-1]:.6g}" if finite.size else "none"
    return (
        f"SVI stopped at step {step_index}: the loss or parameters became NaN/inf (last finite loss {last}). "
        "The last good parameters are kept; lower learning_rate or check the model's scales."
    )


def train(
    svi: SVI,
    extension: SVIExtension | None,
    state: TrainState,
    extension_key: jax.Array | None,
    data: Mapping[str, Any],
    options: SVIOptions,
    *,
    on_chunk: Callable[[int], None] | None = None,
) -> tuple[TrainState, np.ndarray, list[str]]:
    """Train for ``options.steps`` steps in compiled chunks of ``options.chunk_size``, donating ``state``.

    Each chunk first runs unguarded; a chunk whose losses or final state are not all finite is rerun
    from its start with :func:`guarded_step`, which stops at the first bad step. ``on_chunk(n)`` is called
    after each chunk with its number of steps (its losses are on the host by then).

    Returns the final state, the loss per step run, and the warnings (one, when training stopped).
    """
    arrays, static = split_data(data)
    step = make_step(svi, extension, static, extension_key)
    chunk, total = min(options.chunk_size, options.steps), options.steps
    loop = step_loop(options, step, state, arrays)
    chunks = (scan_chunks if loop == "scan" else python_chunks)(svi, step, chunk, total)
    failed = jnp.array(False)
    losses: list[np.ndarray] = []
    for start in range(0, total, chunk):
        chunk_losses = None
        if chunks.fast is not None:
            new_state, finite, fast_losses = chunks.fast(state, start, arrays)
            if bool(finite):
                state, chunk_losses = new_state, fast_losses
            del new_state
        if chunk_losses is None:
            state, failed, chunk_losses = chunks.guarded(state, failed, start, arrays)
        chunk_losses = np.asarray(chunk_losses)[: total - start]
        losses.append(chunk_losses)
        if on_chunk is not None:
            on_chunk(len(chunk_losses))
        if bool(failed):
            bad = np.flatnonzero(~np.isfinite(chunk_losses))
            step_index = start + (int(bad[0]) if bad.size else len(chunk_losses))
            warning = stop_warning(np.concatenate(losses), step_index)
            losses[-1] = chunk_losses[: step_index - start + 1]
            return state, np.concatenate(losses), [warning]
    return state, np.concatenate(losses), []


def guide_draws(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    params: Mapping[str, Any],
    key: jax.Array,
    data: Mapping[str, Any],
    names: list[str],
    num_draws: int,
) -> dict[str, jax.Array]:
    """``num_draws`` draws of the sites ``names`` from the fitted guide (latents) and the model (the rest)."""
    return Predictive(model, guide=guide, params=params, num_samples=num_draws, return_sites=names)(key, **data)


def draw(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    params: Mapping[str, Any],
    key: jax.Array,
    data: Mapping[str, Any],
    sites: Any,
    num_draws: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The fit's draws ``(1, num_draws, *shape)`` of latent and deterministic sites, and their log joint ``lp``."""
    latent = list(sites.latent)
    names = latent + [s for s in sites.deterministic if s not in latent]
    draws = guide_draws(model, guide, params, key, data, names, num_draws)
    latent_draws = {k: draws[k] for k in latent if k in draws}

    def log_joint(values):
        # Seeded so that a model that subsamples its data plate (minibatch VAEs) can draw its indices.
        seeded = handlers.seed(handlers.substitute(model, data=params), rng_seed=key)
        return log_density(seeded, (), dict(data), values)[0]

    lp = np.asarray(jax.lax.map(log_joint, latent_draws, batch_size=min(num_draws, 256)))
    return {k: np.asarray(v)[None] for k, v in draws.items()}, {"lp": lp[None]}


# ------------------------------------------------------------------------------------- the engine


def run_svi(
    model: Callable[..., Any],
    data: Mapping[str, Any],
    key: jax.Array,
    options: SVIOptions,
    sites: Any,
) -> EngineResult:
    """Fit ``model(**data)`` by SVI and draw from the fitted guide.

    The update is compiled once for a chunk of ``options.chunk_size`` steps with the state donated
    (:func:`train`). A step whose loss or new parameters are not finite is not applied: training stops
    there, the last good parameters are kept, and a warning names the step and the last finite loss.
    ``sites`` (``latent``, ``deterministic``) names the sites drawn.
    """
    init_key, _, draw_key = jax.random.split(key, 3)
    guide = make_guide(model, options.guide)
    if options.importance_resample:  # before anything compiles
        psis.check_resample(guide, sites)
    extension = extension_of(options, guide)
    svi = make_svi(model, guide, options)
    arrays, static = split_data(data)
    replicate = None
    if options.data_devices is not None and options.data_devices > 1:
        arrays, replicate = shard_data(arrays, options.data_devices)
    state, extension_key = init_state(svi, extension, init_key, {**arrays, **static})
    # Donated from here on: initial values may share buffers with objects the caller keeps.
    state = fresh_buffers(state)
    if replicate is not None:
        state = jax.device_put(state, replicate)
    bar = None
    if options.progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=options.steps, desc="SVI", unit="step")
    try:
        state, losses, warnings = train(svi, extension, state, extension_key, {**arrays, **static}, options,
                                        on_chunk=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    params = svi.get_params(state.svi)
    diagnosis, resampled, psis_warnings = psis.diagnose_fit(
        model, guide, params, jax.random.fold_in(draw_key, 1), data, sites, psis_draws=options.psis_draws,
        psis_items=options.psis_items, importance_resample=options.importance_resample, num_draws=options.num_draws)
    samples, stats = resampled or draw(model, guide, params, draw_key, data, sites, options.num_draws)
    out_params = jax.device_get(params)
    if extension is not None:
        out_params = {**out_params, f"{extension.name}$state": jax.device_get(state.extension)}
    return EngineResult(samples, stats, out_params, losses, warnings + psis_warnings,
                        diagnostics={"psis": diagnosis} if diagnosis is not None else None)


def svi_core(
    model: Callable[..., Any], options: SVIOptions, sites: Any
) -> Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]:
    """One SVI fit as a pure function ``(key, data) -> draws of sites.latent``, ``(num_draws, *shape)``.

    The same guide, optimizer, ELBO, extension, state, step and guard as :func:`run_svi`, with the same
    keys, in one ``lax.scan`` over all steps: it reproduces :func:`run_svi`'s draws to float rounding.
    The options that only lay out the work (``chunk_size``, ``step_loop``, ``data_devices``,
    ``progress_bar``) have nothing to lay out in one traced run.
    """
    if options.importance_resample:
        raise ValueError("SVI option importance_resample=True is not available in SBC: PSIS smoothing runs on the "
                         "host, outside the traced run. Run SBC without it.")
    latent = list(sites.latent)

    def one_fit(key: jax.Array, data: Mapping[str, Any]) -> dict[str, jax.Array]:
        init_key, _, draw_key = jax.random.split(key, 3)
        guide = make_guide(model, options.guide)
        extension = extension_of(options, guide)
        svi = make_svi(model, guide, options)  # per trace: SVI keeps the traced model's transforms
        arrays, static = split_data(data)
        state, extension_key = init_state(svi, extension, init_key, data)
        guarded = guarded_step(make_step(svi, extension, static, extension_key), options.steps)
        carry, _ = jax.lax.scan(
            lambda carry, index: guarded(carry, index, arrays),
            GuardCarry(state, state, jnp.array(False)),
            jnp.arange(options.steps),
        )
        params = svi.get_params(carry.state.svi)
        return guide_draws(model, guide, params, draw_key, data, latent, options.num_draws)

    return one_fit


def _num_draws(options: SVIOptions) -> int:
    return options.num_draws


ENGINE = Engine(
    name="svi",
    options=SVIOptions,
    run=run_svi,
    core=svi_core,
    is_mcmc=False,
    learns_params=True,
    library="numpyro",
    draws_per_run=_num_draws,
    batch_runs="vectorized",
    description="Stochastic variational inference: NumPyro SVI with optax",
)
