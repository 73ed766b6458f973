"""ppzoo: interpretable generative models as probabilistic programs.

One NumPyro program, three engines (:func:`fit` with ``engine="svi" | "nuts" | "blackjax"``), ArviZ
output, and reports that measure whether inference and generation agree.
"""

from ppzoo._runtime import configure_host_devices as _configure_host_devices

# Before JAX starts a backend: one CPU device per chain, so chains run in parallel (PERFORMANCE.md).
_configure_host_devices()

from ppzoo import data, laws, metrics  # noqa: E402
from ppzoo import models  # noqa: E402  (ppzoo.models, installed from models/)
from ppzoo._runtime import enable_compilation_cache  # noqa: E402
from ppzoo.fit import Fit, fit  # noqa: E402
from ppzoo.report import report  # noqa: E402
from ppzoo.sbc import SBCResult, sbc  # noqa: E402
from ppzoo.checks import predictive_checks  # noqa: E402
from ppzoo.reference import compare_to_reference, load_reference  # noqa: E402

__all__ = ["fit", "Fit", "report", "sbc", "SBCResult", "predictive_checks", "compare_to_reference", "load_reference", "data", "laws", "metrics", "models", "enable_compilation_cache", "__version__"]
__version__ = "0.1.0"
