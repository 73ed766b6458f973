"""What every engine shares: the :class:`Engine` record, option validation and the result type."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import numpy as np

__all__ = ["Engine", "EngineResult", "Options", "validate_positive", "split_data"]


class EngineResult(NamedTuple):
    """What an engine hands back to :func:`ppzoo.fit`.

    Attributes
    ----------
    samples : dict of numpy.ndarray
        Latent and deterministic sites, each ``(chain, draw, *site_shape)``, constrained space.
    sample_stats : dict of numpy.ndarray
        Per-draw statistics under ArviZ's names, each ``(chain, draw)``.
    params : dict or None
        Learned non-random parameters (SVI: guide parameters and network weights).
    losses : numpy.ndarray or None
        SVI loss (negative ELBO) per step.
    warnings : list of str
        Problems a user must see: divergences, NaN losses, chains that ran one after another.
    diagnostics : dict or None
        Engine-specific diagnostics by name, e.g. ``{"psis": PSISResult}`` from the SVI engine
        (:mod:`ppzoo.inference.psis`); ``Fit.diagnostics`` keeps them.
    """

    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    params: dict[str, Any] | None
    losses: np.ndarray | None
    warnings: list[str]
    diagnostics: dict[str, Any] | None = None


def validate_positive(owner: str, **values: float) -> None:
    """Raise a ValueError naming the first option that is not a positive number."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{owner} option `{name}` must be a number; got {value!r}.")
        if not value > 0:
            raise ValueError(f"{owner} option `{name}` must be positive; got {value!r}. Example: {name}=1000.")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Options:
    """Base of the engines' frozen, keyword-only option dataclasses."""

    @classmethod
    def valid_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, engine: str, options: dict[str, Any]) -> "Options":
        """Build the options, naming any unknown option and listing the valid ones."""
        unknown = sorted(set(options) - set(cls.valid_names()))
        if unknown:
            raise TypeError(
                f"Unknown option(s) {', '.join(map(repr, unknown))} for engine={engine!r}. "
                f"Valid options: {', '.join(cls.valid_names())}."
            )
        return cls(**options)

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float, str, bool, type(None))):
                out[f.name] = value
            elif callable(value) and hasattr(value, "__name__"):
                out[f.name] = value.__name__
            elif isinstance(value, functools.partial):
                out[f.name] = f"{getattr(value.func, '__name__', value.func)}({', '.join(f'{k}=...' for k in value.keywords)})"
            else:
                out[f.name] = repr(value)
        return out


def split_data(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split model arguments into arrays and the rest.

    Arrays travel as arguments of compiled functions (not baked into the program as constants, which
    slows compiling and duplicates memory); everything else (configs, sizes) is static.
    """
    arrays, static = {}, {}
    for k, v in data.items():
        (arrays if isinstance(v, (np.ndarray, jax.Array)) else static)[k] = v
    return arrays, static


#: How independent runs of an engine's core are batched: one per device (``pmap``; runs whose length
#: varies, such as NUTS trajectories, do not wait for one another) or vectorized (``vmap``; fixed work).
BatchRuns = Literal["devices", "vectorized"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Engine:
    """One inference engine: everything :func:`ppzoo.fit`, :func:`ppzoo.sbc`, checks and reports need.

    Register one with :func:`ppzoo.inference.register`; everything outside ``inference/`` looks engines
    up by name (:func:`ppzoo.inference.get`) and asks the record, never the name, what the engine does.

    Attributes
    ----------
    name : str
        Registry name, the ``engine=`` of :func:`ppzoo.fit` and :func:`ppzoo.sbc`.
    options : type
        Its frozen keyword-only :class:`Options` subclass (unknown option names are refused by it).
    run : callable
        ``run(model, data, key, options, sites) -> EngineResult``: one fit of ``model(**data)``.
        ``sites`` is the model's :class:`ppzoo.fit.ModelSites` (``sites.latent``, ``sites.deterministic``);
        anything else an engine needs comes through its options or from the model (a zoo model's own guide
        is ``model.make_guide()``).
    core : callable
        ``core(model, options, sites) -> fn``, with ``fn(key, data) -> {site: (num_draws, *shape)}`` the
        draws of ``sites.latent`` from one run (one chain for MCMC) given the same options as ``run``.
        ``fn`` is pure and traceable: SBC compiles it once and maps it over simulations (``batch_runs``),
        with the simulated arrays of ``data`` traced and its other entries (sizes, configs) fixed.
    is_mcmc : bool
        Markov chain draws (judged by R-hat and ESS) rather than independent draws from a fitted
        approximation or a weighted sample.
    learns_params : bool
        Whether it learns the model's ``numpyro.param`` sites (else they must be given: ``fit(params=...)``).
    library : str
        The package that does the inference (ArviZ's ``inference_library`` attribute).
    draws_per_run : callable
        ``draws_per_run(options) -> int``: how many draws one run of ``core`` returns.
    batch_runs : {"devices", "vectorized"}
        How SBC batches runs of ``core``.
    samples_posterior : bool
        Whether its draws stand for the posterior of the model's latents given the data (exactly or
        approximately), so posterior checks, SBC and ``ppzoo check`` apply; ``False`` for an engine that fits
        a generator (the adversarial engine), whose draws are not a posterior.
    description : str
        One line for listings.
    """

    name: str
    options: type[Options]
    run: Callable[..., EngineResult]
    core: Callable[..., Callable[[jax.Array, Mapping[str, Any]], dict[str, jax.Array]]]
    is_mcmc: bool
    learns_params: bool
    library: str
    draws_per_run: Callable[[Any], int]
    batch_runs: BatchRuns
    samples_posterior: bool = True
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"Engine `name` must be a word such as 'nuts'; got {self.name!r}.")
        if not (isinstance(self.options, type) and issubclass(self.options, Options)):
            raise TypeError(
                f"Engine {self.name!r}: `options` must be a subclass of ppzoo.inference.Options; got {self.options!r}."
            )
        for field in ("run", "core", "draws_per_run"):
            if not callable(getattr(self, field)):
                raise TypeError(f"Engine {self.name!r}: `{field}` must be callable; got {getattr(self, field)!r}.")
        if self.batch_runs not in ("devices", "vectorized"):
            raise ValueError(
                f"Engine {self.name!r}: `batch_runs` must be 'devices' or 'vectorized'; got {self.batch_runs!r}."
            )
