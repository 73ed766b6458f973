"""The inference engines behind :func:`ppzoo.fit`: ``"svi"``, ``"nuts"`` and ``"blackjax"``.

Each engine takes the same NumPyro model and data and returns an :class:`EngineResult`; its settings
are a frozen keyword-only options dataclass.
"""

from ppzoo.inference._base import EngineResult, Options
from ppzoo.inference.blackjax_nuts import run_blackjax
from ppzoo.inference.nuts import NUTSOptions, run_nuts
from ppzoo.inference.svi import GUIDES, SVIExtension, SVIOptions, run_svi

__all__ = [
    "ENGINES",
    "EngineResult",
    "Options",
    "NUTSOptions",
    "SVIOptions",
    "SVIExtension",
    "GUIDES",
    "run_nuts",
    "run_blackjax",
    "run_svi",
]

#: Engine name -> (options class, runner). Explicit, so an unknown engine can list the valid ones.
ENGINES = {
    "svi": (SVIOptions, run_svi),
    "nuts": (NUTSOptions, run_nuts),
    "blackjax": (NUTSOptions, run_blackjax),
}
