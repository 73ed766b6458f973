"""The inference engines behind :func:`ppzoo.fit` and :func:`ppzoo.sbc`, one :class:`Engine` record each.

Each engine takes the same NumPyro model and data and returns an :class:`EngineResult`; its settings are
a frozen keyword-only options dataclass. ``ENGINES`` is the registry: name -> :class:`Engine`. Adding an
engine is one new module defining its ``Engine`` and one ``register`` line below (or a ``register`` call
at run time, e.g. from a test or a plug-in).
"""

from ppzoo.extensions import SVIExtension
from ppzoo.inference import adversarial, blackjax_nuts, nuts, pathfinder, svi
from ppzoo.inference.adversarial import AdversarialOptions
from ppzoo.inference._base import Engine, EngineResult, Options, split_data
from ppzoo.inference.blackjax_nuts import run_blackjax
from ppzoo.inference.nuts import NUTSOptions, run_nuts
from ppzoo.inference.pathfinder import PathfinderOptions, run_pathfinder
from ppzoo.inference.svi import GUIDES, SVIOptions, run_svi

__all__ = [
    "ENGINES",
    "Engine",
    "EngineResult",
    "Options",
    "split_data",
    "register",
    "get",
    "names",
    "NUTSOptions",
    "SVIOptions",
    "PathfinderOptions",
    "run_pathfinder",
    "AdversarialOptions",
    "SVIExtension",
    "GUIDES",
    "run_nuts",
    "run_blackjax",
    "run_svi",
]

#: Engine name -> :class:`Engine`, in registration order. Use :func:`get` to look one up.
ENGINES: dict[str, Engine] = {}


def register(engine: Engine, *, replace: bool = False) -> Engine:
    """Add ``engine`` to the registry under ``engine.name`` and return it.

    Raises
    ------
    TypeError
        ``engine`` is not an :class:`Engine`.
    ValueError
        The name is taken and ``replace`` is false.
    """
    if not isinstance(engine, Engine):
        raise TypeError(f"register() takes a ppzoo.inference.Engine; got {engine!r}.")
    if engine.name in ENGINES and not replace:
        raise ValueError(
            f"An engine named {engine.name!r} is already registered; pass replace=True to replace it."
        )
    ENGINES[engine.name] = engine
    return engine


def get(name: str) -> Engine:
    """The engine registered as ``name``; an unknown name raises a ValueError listing the valid ones."""
    if not isinstance(name, str) or name not in ENGINES:
        raise ValueError(f"Unknown engine {name!r}. Valid engines: {', '.join(map(repr, ENGINES))}.")
    return ENGINES[name]


def names(*, posterior: bool = False) -> list[str]:
    """Registered engine names, in registration order; with ``posterior=True`` only the engines whose draws
    stand for a posterior (:attr:`Engine.samples_posterior`: not the adversarial engine)."""
    return [name for name, engine in ENGINES.items() if engine.samples_posterior or not posterior]


register(svi.ENGINE)
register(nuts.ENGINE)
register(blackjax_nuts.ENGINE)
register(adversarial.ENGINE)
register(pathfinder.ENGINE)
