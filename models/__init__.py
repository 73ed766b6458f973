"""The zoo: one generative mechanism per module, each a plain NumPyro program with a config.

``ppzoo.models.get(name, **config)`` returns a :class:`ZooModel`, itself a NumPyro model function
(``model(**data)``) bound to a validated config, that :func:`ppzoo.fit` accepts like any model and for
which it also knows the amortized guide, the data checks and the symmetry alignment.

Every entry also carries its site table (:class:`Site` rows; the model module's docstring shows the same
rows as :func:`site_table` renders them) and its smallest runnable instance (:class:`Example`), which the
conformance test (``tests/test_conformance.py``) runs for every name in :func:`names`.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "ZooModel", "Site", "SiteKind", "Example", "get", "names", "REGISTRY", "make_config", "site_table", "expand_sites",
    "site_shape", "check_positive_number", "check_positive_integer", "check_finite_number",
]

#: What a site is: a random site the engines infer (``latent``), data (``observed``), a function of other
#: sites (``deterministic``), a learned non-random parameter (``param``) or a term of the log density
#: (``factor``, a ``numpyro.factor``).
SiteKind = Literal["latent", "observed", "deterministic", "param", "factor"]


class Site(NamedTuple):
    """One row of a zoo model's site table.

    Attributes
    ----------
    name : str
        The site's name. A name with a ``<placeholder>`` stands for one site per value of the config
        attribute ``each`` (e.g. ``"<concept>"`` with ``each="concepts"``).
    shape : tuple of (str or int) or None
        The value's shape in symbols (``("N", "K")``) that :class:`Example.sizes` gives numbers; ``"d*k"`` is
        a product, ``"*image"`` stands for several axes. ``None``: a pytree of network weights.
    kind : {"latent", "observed", "deterministic", "param", "factor"}
        What the site is when the model runs on data (see :data:`SiteKind`). Without data an observed site
        is drawn like a latent one (the prior predictive).
    support : str
        Where the values live, in words (``"real"``, ``"positive"``, ``"{0, 1}"``).
    note : str
        What the site means.
    when : str
        When the site is there, in words; ``""``: always (then the conformance test requires it).
    each : str
        The config attribute whose values fill the name's placeholder.
    program : {"model", "guide", "both"}
        Whether the site belongs to the model, to the model's own guide, or to both.
    """

    name: str
    shape: tuple[str | int, ...] | None
    kind: SiteKind
    support: str = "real"
    note: str = ""
    when: str = ""
    each: str = ""
    program: Literal["model", "guide", "both"] = "model"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Example:
    """The smallest runnable instance of a zoo model: what smoke runs and the conformance test use.

    Attributes
    ----------
    config : mapping
        Config fields, ``ppzoo.models.get(name, **config)``.
    generate : mapping
        The model's arguments for the prior predictive (no observations): sizes and covariates, e.g.
        ``{"num_data": 4}`` or ``{"t": times}``.
    data : mapping
        Data ``ppzoo.fit`` accepts for this config (observations and covariates) of the same sizes.
    sizes : mapping
        The numbers behind the site table's shape symbols at this size (``{"N": 4, "K": 2}``).
    size_fields : tuple of str
        The config's positive-integer size fields (``0`` or ``-1`` there must be refused by name).
    """

    config: Mapping[str, Any]
    generate: Mapping[str, Any]
    data: Mapping[str, Any]
    sizes: Mapping[str, int | tuple[int, ...]]
    size_fields: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooModel:
    """A zoo entry: a NumPyro program bound to its config, with what the engines need to know about it.

    Attributes
    ----------
    name : str
        Registry name (= module name = case-study name).
    model : callable
        The plain NumPyro function, ``model(**data, config=config)``.
    config : object
        The model's frozen config dataclass instance.
    config_class : type
        The config dataclass (for ``with_config``).
    guide : callable or None
        ``guide(config) -> guide function``: the model's own (amortized) guide for SVI; ``None`` means an
        autoguide.
    check_data : callable or None
        ``check_data(data, config)`` raises a clear error for data that do not fit (before any compile).
    align : callable or None
        ``align(samples, config) -> (samples, note)``: maps chains that landed in symmetric modes onto one
        another (e.g. ICA's permutations and sign flips).
    exogenous : tuple of str
        Per-datum latent sites that are explicit exogenous noise (abducted by ``ppzoo.counterfactual``).
    summary_sites : tuple of str
        The global sites a report summarises (per-datum latents are shown by their recovery instead).
    description : str
        One line for ``ppzoo models``.
    sites : tuple of Site
        The site table (the model module's docstring shows it rendered by :func:`site_table`).
    example : Example or None
        The smallest runnable instance.
    """

    name: str
    model: Callable[..., Any]
    config: Any
    config_class: type
    guide: Callable[[Any], Callable[..., Any]] | None = None
    check_data: Callable[[Mapping[str, Any], Any], None] | None = None
    align: Callable[[dict, Any], tuple[dict, str]] | None = None
    exogenous: tuple[str, ...] = ()
    summary_sites: tuple[str, ...] = ()
    description: str = ""
    # Documentation, not identity: left out of equality and hashing (a ZooModel is a static jit argument).
    sites: tuple[Site, ...] = dataclasses.field(default=(), compare=False)
    example: Example | None = dataclasses.field(default=None, compare=False)

    def __call__(self, **data: Any) -> Any:
        return self.model(**data, config=self.config)

    @property
    def __name__(self) -> str:  # so that NumPyro and reports can name it like a function
        return self.name

    def with_config(self, **changes: Any) -> "ZooModel":
        """A copy with some config fields changed (validated by the config class)."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, **changes))

    def make_guide(self) -> Callable[..., Any] | None:
        return None if self.guide is None else self.guide(self.config)


#: Registry name -> "module:attribute" of a function ``entry(config) -> ZooModel``.
REGISTRY: dict[str, str] = {
    "ica": "ppzoo.models.ica:entry",
    "causal_vae": "ppzoo.models.causal_vae:entry",
    "scm_vae": "ppzoo.models.scm_vae:entry",
    "linear_scm": "ppzoo.models.linear_scm:entry",
    "damped_pendulum": "ppzoo.models.damped_pendulum:entry",
    "lotka_volterra": "ppzoo.models.lotka_volterra:entry",
    "one_compartment": "ppzoo.models.one_compartment:entry",
    "vae": "ppzoo.models.vae:entry",
    "beta_vae": "ppzoo.models.beta_vae:entry",
    "beta_tcvae": "ppzoo.models.beta_tcvae:entry",
    "factor_vae": "ppzoo.models.factor_vae:entry",
    "dip_vae_i": "ppzoo.models.dip_vae:entry_i",
    "dip_vae_ii": "ppzoo.models.dip_vae:entry_ii",
    "ivae": "ppzoo.models.ivae:entry",
    "sparse_law": "ppzoo.models.sparse_law:entry",
    "infogan": "ppzoo.models.infogan:entry",
    "causal_gan": "ppzoo.models.causal_gan:entry",
    "gan_ica": "ppzoo.models.gan_ica:entry",
}


def names() -> list[str]:
    """Names of the zoo's models."""
    return sorted(REGISTRY)


def get(name: str, /, **config: Any) -> ZooModel:
    """The zoo model ``name`` with its config (defaults overridden by ``config``).

    Raises
    ------
    ValueError
        If ``name`` is not in the zoo (the message lists the valid names).
    TypeError
        If a config field is unknown (the message lists the valid fields).
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"Unknown model {name!r}. The zoo has: {', '.join(names())}. See `ppzoo models`.")
    module, _, attribute = REGISTRY[name].partition(":")
    make = getattr(importlib.import_module(module), attribute)
    return make(**config)


def make_config(config_class: type, model_name: str, fields: Mapping[str, Any]) -> Any:
    """Build a config dataclass, naming unknown fields and listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(fields) - set(valid))
    if unknown:
        raise TypeError(
            f"Unknown config field(s) {', '.join(map(repr, unknown))} for model {model_name!r}. "
            f"Valid fields: {', '.join(valid)}."
        )
    return config_class(**fields)


def check_positive_number(owner: str, name: str, value: Any) -> None:
    """Raise unless ``value`` is a finite real number > 0 (``owner.name`` in the message).

    Raises
    ------
    TypeError
        Not a real number (text, None, a bool).
    ValueError
        NaN, infinite, zero or negative.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}.{name} must be a positive finite number; got {value!r}.")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{owner}.{name} must be a positive finite number; got {value!r}.")


def check_finite_number(owner: str, name: str, value: Any) -> None:
    """Raise unless ``value`` is a finite real number (``owner.name`` in the message).

    Raises
    ------
    TypeError
        Not a real number (text, None, a bool).
    ValueError
        NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}.{name} must be a finite number; got {value!r}.")
    if not np.isfinite(value):
        raise ValueError(f"{owner}.{name} must be a finite number; got {value!r}.")


def check_positive_integer(owner: str, name: str, value: Any, *, allow_none: bool = False) -> None:
    """Raise unless ``value`` is an integer >= 1 (or ``None`` where allowed), naming ``owner.name``.

    Raises
    ------
    TypeError
        Not an integer (text, a float, a bool).
    ValueError
        Zero or negative.
    """
    if value is None and allow_none:
        return
    expected = "a positive integer" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}.{name} must be {expected}; got {value!r}.")
    if value < 1:
        raise ValueError(f"{owner}.{name} must be {expected}; got {value!r}.")


def _shape_text(shape: tuple[str | int, ...] | None) -> str:
    if shape is None:
        return "pytree"
    return "``(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")``"


def _role_text(site: Site) -> str:
    role = {"model": site.kind, "guide": f"{site.kind} of the guide", "both": f"{site.kind} (model and guide)"}[site.program]
    if site.note:
        role += f": {site.note}"
    if site.when:
        role += f" ({site.when})"
    return role


def site_table(sites: Iterable[Site]) -> str:
    """The site table as a reStructuredText simple table (name, shape, support, role), as model docstrings show it."""
    rows = [("name", "shape", "support", "role")]
    rows += [(f"``{s.name}``", _shape_text(s.shape), s.support, _role_text(s)) for s in sites]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    rule = "  ".join("=" * w for w in widths)

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    return "\n".join([rule, line(rows[0]), rule, *map(line, rows[1:]), rule])


def expand_sites(sites: Iterable[Site], config: Any) -> list[Site]:
    """The rows with each ``<placeholder>`` name replaced by the values of ``config.<each>`` (one row per value)."""
    out = []
    for site in sites:
        if not site.each:
            out.append(site)
            continue
        start, end = site.name.index("<"), site.name.index(">") + 1
        out += [site._replace(name=site.name[:start] + value + site.name[end:], each="") for value in getattr(config, site.each)]
    return out


def site_shape(site: Site, sizes: Mapping[str, int | tuple[int, ...]]) -> tuple[int, ...] | None:
    """The site's shape in numbers (``None`` for network weights), from an :class:`Example`'s ``sizes``."""
    if site.shape is None:
        return None
    shape: list[int] = []
    for dim in site.shape:
        if isinstance(dim, int):
            shape.append(dim)
        elif dim.startswith("*"):
            shape.extend(sizes[dim[1:]])
        else:
            shape.append(math.prod(int(sizes[part]) for part in dim.split("*")))
    return tuple(shape)
