"""Fresh array buffers: the one guard against buffer donation deleting arrays that someone else holds.

The SVI engine donates its state to its compiled update (``jax.jit(..., donate_argnums=...)``), so XLA may
reuse, and JAX then deletes, the state's input buffers. An initial value that is also held elsewhere (a
cached network's weights, an array the user passed to ``numpyro.param``) would be deleted with it, and the
next use fails with "Array has been deleted". :func:`fresh_buffers` is applied where such sharing starts:
by the engine to the state it is about to donate, and by :mod:`ppzoo.nn` to the cached weights it hands
NumPyro as a network's initial value (so a user's own donating loop is safe too). Imports only JAX.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["fresh_buffers"]


def fresh_buffers(tree: Any) -> Any:
    """``tree`` with every JAX array replaced by a copy in a new buffer (other leaves kept as they are).

    Evaluated eagerly even when reached inside a ``jit`` trace from cached, concrete arrays, so that no
    tracer is created for them; under ``jit`` the copy of a value that is later replaced is dead code.
    """
    with jax.ensure_compile_time_eval():
        return jax.tree.map(lambda a: jnp.array(a, copy=True) if isinstance(a, jax.Array) else a, tree)
