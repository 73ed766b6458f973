"""ppzoo: interpretable generative models as probabilistic programs.

One NumPyro program, three engines (:func:`fit` with ``engine="svi" | "nuts" | "blackjax"``), ArviZ
output, and reports that measure whether inference and generation agree.

Only the zoo (:mod:`ppzoo.models`) is imported eagerly; everything else (``fit``, the engines, data sets,
metrics, laws, reports, checks) on first use, so that ``import ppzoo`` stays quick in the worker processes
of a sweep and importing a zoo model loads no engine.
"""

import importlib
import sys
import types

from ppzoo._runtime import configure_host_devices as _configure_host_devices

# Before JAX starts a backend: one CPU device per chain, so chains run in parallel (PERFORMANCE.md).
_configure_host_devices()

from ppzoo import models  # noqa: E402  (ppzoo.models, installed from models/)
from ppzoo._runtime import enable_compilation_cache  # noqa: E402

#: Public name -> (module, attribute or None for the module itself), imported on first access.
_LAZY = {
    "fit": ("ppzoo.fit", "fit"),
    "Fit": ("ppzoo.fit", "Fit"),
    "validate_data": ("ppzoo.fit", "validate_data"),
    "report": ("ppzoo.report", "report"),
    "sbc": ("ppzoo.sbc", "sbc"),
    "SBCResult": ("ppzoo.sbc", "SBCResult"),
    "data": ("ppzoo.data", None),
    "laws": ("ppzoo.laws", None),
    "metrics": ("ppzoo.metrics", None),
    "nn": ("ppzoo.nn", None),
    "checks": ("ppzoo.checks", None),
    "amortization": ("ppzoo.amortization", None),
    "sweep": ("ppzoo.sweep", None),
    "reference": ("ppzoo.reference", None),
    "causal": ("ppzoo.causal", None),
    "predictive_checks": ("ppzoo.checks", "predictive_checks"),
    "compare_to_reference": ("ppzoo.reference", "compare_to_reference"),
    "load_reference": ("ppzoo.reference", "load_reference"),
    "intervene": ("ppzoo.causal", "intervene"),
    "counterfactual": ("ppzoo.causal", "counterfactual"),
    "Claim": ("ppzoo.report", "Claim"),
    "claims": ("ppzoo.claims", None),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'ppzoo' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The type of the ``ppzoo`` module: ``fit``, ``report`` and ``sbc`` stay functions.

    They share their names with their modules, and importing a submodule (``import ppzoo.fit``) sets the
    package attribute of that name to the module; here that binding is skipped, so the attribute keeps
    resolving (through :func:`__getattr__`) to the function. The modules stay in ``sys.modules``.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name, (None, None))[1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["models", "enable_compilation_cache", "__version__", *_LAZY]
__version__ = "0.1.0"
