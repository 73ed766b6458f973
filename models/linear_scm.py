r"""Bayesian structural causal model over a given DAG: linear (or additive) mechanisms, Gaussian noise.

Generative story (data points :math:`n = 1..N`, nodes :math:`j` in topological order, edges :math:`e = (i \to j)`):

.. math::

    b_j &\sim \mathcal{N}(0, s_b^2), \qquad W_e \sim \mathcal{N}(0, s_W^2), \qquad
    \sigma_j \sim \mathrm{HalfNormal}(s_\sigma) \\
    x_{nj} &= b_j + \sum_{e = (i \to j)} f_e(x_{ni}) + \sigma_j \epsilon_{nj}, \qquad
    \epsilon_{nj} \sim \mathcal{N}(0, 1)

with :math:`f_e(v) = W_e v` (``mechanism="linear"``) or, for ``mechanism="additive"`` (an additive
noise model with a small basis expansion, Buhlmann, Peters & Ernest 2014),
:math:`f_e(v) = W_e v + \sum_{k=1}^{K} C_{ek} \phi_k(v)`, :math:`C_{ek} \sim \mathcal{N}(0, s_C^2)`, with
Gaussian bumps :math:`\phi_k(v) = \exp(-(v - c_k)^2 / (2 h^2))` centred on :math:`K` points evenly
spread over :math:`[-2, 2]` (the range of standardised data), :math:`h` their spacing.

Each node is its own sample site, generated in topological order from its parents' *site values*, so
``numpyro.handlers.do`` on a node (``ppzoo.intervene(fit, do={"mek": -2.0})``) is a true intervention:
its incoming edges are cut and its descendants respond. The observations ``x`` (one column per node, in
``config.nodes`` order) are split over the node sites; that is why the data argument ``x`` is not itself
a site.

Sites

=================  ==========  ========  =============================================
name               shape       support   role
=================  ==========  ========  =============================================
``bias``           ``(D,)``    real      latent: :math:`b`, in ``config.nodes`` order
``weights``        ``(E,)``    real      latent: :math:`W`, in ``config.edges`` order
``basis_weights``  ``(E, K)``  real      latent: :math:`C` (``mechanism='additive'``)
``noise_scale``    ``(D,)``    positive  latent: :math:`\sigma`
``<node>``         ``(N,)``    real      observed: one site per node, plate ``"data"``
=================  ==========  ========  =============================================

References
----------
Pearl (2009), *Causality*, 2nd ed., Ch. 1.4 and 3 (linear SCMs, the do-operator).
Buhlmann, Peters & Ernest (2014), CAM: causal additive models, *Annals of Statistics* 42(6).
Sachs et al. (2005), *Science* 308(5721) (the case study's data).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppzoo.graphs import edges_from_adjacency, topological_order
from ppzoo.models import Example, Site, ZooModel, check_positive_integer, check_positive_number, make_config

__all__ = ["LinearSCMConfig", "linear_scm", "entry", "RESERVED_NAMES", "SITES", "SMALLEST"]

Mechanism = Literal["linear", "additive"]
#: Site and argument names a node may not take.
RESERVED_NAMES = ("bias", "weights", "basis_weights", "noise_scale", "x", "num_data", "config", "data")

#: The site table (rendered in the module docstring).
SITES: tuple[Site, ...] = (
    Site("bias", ("D",), "latent", note=":math:`b`, in ``config.nodes`` order"),
    Site("weights", ("E",), "latent", note=":math:`W`, in ``config.edges`` order"),
    Site("basis_weights", ("E", "K"), "latent", note=":math:`C`", when="``mechanism='additive'``"),
    Site("noise_scale", ("D",), "latent", "positive", note=r":math:`\sigma`"),
    Site("<node>", ("N",), "observed", note='one site per node, plate ``"data"``', each="nodes"),
)

#: The smallest runnable instance: the default chain a -> b -> c, 4 points.
SMALLEST = Example(
    config={},
    generate={"num_data": 4},
    data={"x": np.array([[0.3, -1.2, 0.8], [1.1, 0.4, -0.5], [-0.7, 0.9, 1.3], [-0.2, -0.6, -1.0]], dtype=np.float32)},
    sizes={"N": 4, "D": 3, "E": 2, "K": 5},
    size_fields=("num_basis",),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LinearSCMConfig:
    """Settings of :func:`linear_scm`.

    Parameters
    ----------
    nodes : tuple of str
        Node names (= site names), in the column order of ``x``. The default (with ``edges``) is the
        chain ``a -> b -> c``, a placeholder so that ``ppzoo.models.get("linear_scm")`` works.
    edges : tuple of (str, str)
        Directed edges ``(cause, effect)``; must form a DAG. An adjacency matrix (``[i, j] != 0`` for
        ``nodes[i] -> nodes[j]``) is also accepted and turned into this edge list.
    mechanism : {"linear", "additive"}
        Linear edge functions, or linear plus ``num_basis`` Gaussian bumps per edge.
    num_basis : int
        Basis functions per edge (additive mechanism).
    bias_scale, weight_scale, basis_scale, noise_prior_scale : float
        Prior scales (sd of the Normal priors of biases, weights and basis coefficients; scale of the
        half-normal prior of the noise sds). The defaults suit standardised data.
    """

    nodes: tuple[str, ...] = ("a", "b", "c")
    edges: tuple[tuple[str, str], ...] | Any = (("a", "b"), ("b", "c"))
    mechanism: Mechanism = "linear"
    num_basis: int = 5
    bias_scale: float = 1.0
    weight_scale: float = 1.0
    basis_scale: float = 0.5
    noise_prior_scale: float = 1.0

    def __post_init__(self) -> None:
        nodes = None if isinstance(self.nodes, str) or not isinstance(self.nodes, Iterable) else tuple(self.nodes)
        if nodes is None or not all(isinstance(n, str) for n in nodes):
            raise TypeError(f"LinearSCMConfig.nodes must be a sequence of node names; got {self.nodes!r}.")
        object.__setattr__(self, "nodes", nodes)
        if not nodes:
            raise ValueError("LinearSCMConfig.nodes is empty: give the node names, e.g. nodes=('a', 'b').")
        bad = [n for n in nodes if n in RESERVED_NAMES or not n.isidentifier() or n.startswith("eps")]
        if bad:
            raise ValueError(
                f"LinearSCMConfig.nodes {bad} clash with the model's own names {RESERVED_NAMES} (or 'eps*', reserved "
                "for noise) or are not identifiers; rename them."
            )
        edges = self.edges
        if hasattr(edges, "shape") and hasattr(edges, "dtype"):
            edges = edges_from_adjacency(edges, nodes)
        pairs = () if isinstance(edges, str) or not isinstance(edges, Iterable) else tuple(edges)
        if isinstance(edges, str) or not isinstance(edges, Iterable) or not all(
            isinstance(e, (tuple, list)) and len(e) == 2 for e in pairs
        ):
            raise TypeError(
                "LinearSCMConfig.edges must be (cause, effect) name pairs, e.g. (('a', 'b'),), or an adjacency "
                f"matrix; got {self.edges!r}."
            )
        edges = tuple(tuple(e) for e in pairs)
        object.__setattr__(self, "edges", edges)
        if len(set(edges)) != len(edges):
            raise ValueError(f"LinearSCMConfig.edges repeats an edge: {sorted({e for e in edges if edges.count(e) > 1})}.")
        topological_order(nodes, edges)  # raises on unknown nodes and names a cycle
        if self.mechanism not in ("linear", "additive"):
            raise ValueError(f"LinearSCMConfig.mechanism must be 'linear' or 'additive'; got {self.mechanism!r}.")
        check_positive_integer("LinearSCMConfig", "num_basis", self.num_basis)
        for name in ("bias_scale", "weight_scale", "basis_scale", "noise_prior_scale"):
            check_positive_number("LinearSCMConfig", name, getattr(self, name))

    @property
    def order(self) -> tuple[str, ...]:
        """The nodes in topological order (parents first)."""
        return topological_order(self.nodes, self.edges)

    def parents(self, node: str) -> list[tuple[int, str]]:
        """``(edge index, parent)`` for each edge into ``node``."""
        return [(e, cause) for e, (cause, effect) in enumerate(self.edges) if effect == node]


def _basis(values: jnp.ndarray, num_basis: int) -> jnp.ndarray:
    centres = jnp.linspace(-2.0, 2.0, num_basis)
    width = 4.0 / max(num_basis - 1, 1)
    return jnp.exp(-0.5 * ((values[..., None] - centres) / width) ** 2)


def linear_scm(x=None, *, num_data: int | None = None, config: LinearSCMConfig = None) -> None:
    """Bayesian linear (or additive) SCM over ``config``'s DAG as a NumPyro program (module docstring).

    Parameters
    ----------
    x : ArrayLike or None
        Observations ``(num_data, len(config.nodes))``, columns in ``config.nodes`` order; ``None``
        generates them.
    num_data : int or None
        Number of data points when ``x`` is None.
    config : LinearSCMConfig
        The graph and the priors.
    """
    if config is None:
        raise ValueError("linear_scm needs a config with the graph: ppzoo.models.get('linear_scm', nodes=..., edges=...).")
    nodes = config.nodes
    if x is not None:
        if np.ndim(x) != 2 or np.shape(x)[1] != len(nodes):
            raise ValueError(
                f"linear_scm: `x` must have shape (num_data, {len(nodes)}) (one column per node {list(nodes)}); "
                f"got {np.shape(x)}."
            )
        num_data = np.shape(x)[0]
    elif num_data is None:
        raise ValueError("To generate data from linear_scm, pass num_data=... (or the observations x=...).")
    num_edges = len(config.edges)
    bias = numpyro.sample("bias", dist.Normal(0.0, config.bias_scale).expand([len(nodes)]).to_event(1))
    weights = numpyro.sample("weights", dist.Normal(0.0, config.weight_scale).expand([num_edges]).to_event(1))
    if config.mechanism == "additive":
        basis_weights = numpyro.sample(
            "basis_weights", dist.Normal(0.0, config.basis_scale).expand([num_edges, config.num_basis]).to_event(2)
        )
    noise_scale = numpyro.sample("noise_scale", dist.HalfNormal(config.noise_prior_scale).expand([len(nodes)]).to_event(1))
    values: dict[str, Any] = {}
    with numpyro.plate("data", num_data):
        for node in config.order:
            j = nodes.index(node)
            mean = bias[j]
            for e, parent in config.parents(node):
                effect = weights[e] * values[parent]
                if config.mechanism == "additive":
                    effect = effect + _basis(values[parent], config.num_basis) @ basis_weights[e]
                mean = mean + effect
            values[node] = numpyro.sample(node, dist.Normal(mean, noise_scale[j]), obs=None if x is None else x[:, j])


def _check_data(data: Mapping[str, Any], config: LinearSCMConfig) -> None:
    x = data.get("x")
    if x is None:
        raise ValueError(
            "linear_scm needs the observed array `x` (num_data, num_nodes) in data, e.g. ppzoo.fit(model, {'x': x}); "
            "got no `x`."
        )
    if np.ndim(x) != 2 or np.shape(x)[1] != len(config.nodes):
        raise ValueError(
            f"linear_scm data `x` must have shape (num_data, {len(config.nodes)}), one column per node "
            f"{list(config.nodes)}; got shape {np.shape(x)}."
        )
    if np.shape(x)[0] < 2:
        raise ValueError(f"linear_scm data `x` needs at least 2 rows; got {np.shape(x)[0]}.")


def entry(**config: Any) -> ZooModel:
    """The zoo entry ``"linear_scm"``."""
    cfg = make_config(LinearSCMConfig, "linear_scm", config)
    # Edge weights and noise scales: what a reader of an SCM looks at (the biases of standardised data
    # are near 0; the basis coefficients of the additive mechanism are many and shown by the case study).
    sites = ("weights", "noise_scale")
    return ZooModel(
        name="linear_scm",
        model=linear_scm,
        config=cfg,
        config_class=LinearSCMConfig,
        check_data=_check_data,
        summary_sites=sites,
        description="Bayesian linear (or additive) SCM over a given DAG; each node a site, so do() intervenes.",
        sites=SITES,
        example=SMALLEST,
    )
