"""The zoo: one generative mechanism per module, each a plain NumPyro program with a config.

``ppzoo.models.get(name, **config)`` returns a :class:`ZooModel`, itself a NumPyro model function
(``model(**data)``) bound to a validated config, that :func:`ppzoo.fit` accepts like any model and for
which it also knows the amortized guide, the data checks and the symmetry alignment.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["ZooModel", "get", "names", "REGISTRY"]


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
