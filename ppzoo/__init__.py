"""ppzoo: interpretable generative models as probabilistic programs.

One NumPyro program, three engines (:func:`fit` with ``engine="svi" | "nuts" | "blackjax"``), ArviZ
output, and reports that measure whether inference and generation agree.

``fit`` is imported eagerly; everything else (data sets, metrics, laws, reports, checks) on first use, so
that ``import ppzoo`` stays quick in the worker processes of a sweep.
"""

import importlib

from ppzoo._runtime import configure_host_devices as _configure_host_devices

# Before JAX starts a backend: one CPU device per chain, so chains run in parallel (PERFORMANCE.md).
_configure_host_devices()

from ppzoo import models  # noqa: E402  (ppzoo.models, installed from models/)
from ppzoo._runtime import enable_compilation_cache  # noqa: E402
from ppzoo.fit import Fit, fit, validate_data  # noqa: E402
# Eager: these functions share their name with their module, which an import of the submodule would
# otherwise put in their place (``import ppzoo.report`` sets the attribute ``ppzoo.report``).
from ppzoo.report import report  # noqa: E402
from ppzoo.sbc import SBCResult, sbc  # noqa: E402

#: Public name -> (module, attribute or None for the module itself), imported on first access.
_LAZY = {
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


__all__ = ["fit", "Fit", "validate_data", "report", "sbc", "SBCResult", "models", "enable_compilation_cache", "__version__", *_LAZY]
__version__ = "0.1.0"
