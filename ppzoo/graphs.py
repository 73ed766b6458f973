"""Directed acyclic graphs over named nodes: edge lists, adjacency matrices, topological order.

A leaf module (NumPy only): the zoo's structural models validate their graphs with it, and
:mod:`ppzoo.causal` re-exports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["topological_order", "edges_from_adjacency", "adjacency_from_edges", "descendants"]


def edges_from_adjacency(adjacency: Any, nodes: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Edge list ``((cause, effect), ...)`` of an adjacency matrix with ``adjacency[i, j] != 0`` for ``i -> j``.

    Raises
    ------
    ValueError
        If ``adjacency`` is not square with one row per node, or has a self-loop.
    """
    matrix = np.asarray(adjacency)
    nodes = tuple(nodes)
    if matrix.ndim != 2 or matrix.shape != (len(nodes), len(nodes)):
        raise ValueError(
            f"`adjacency` must be a square matrix with one row and column per node ({len(nodes)} x {len(nodes)} "
            f"for nodes {list(nodes)}); got shape {matrix.shape}."
        )
    loops = [nodes[i] for i in range(len(nodes)) if matrix[i, i]]
    if loops:
        raise ValueError(f"`adjacency` has self-loop(s) at {loops}: a variable cannot cause itself. Zero the diagonal.")
    return tuple((nodes[i], nodes[j]) for i, j in zip(*np.nonzero(matrix)))


def adjacency_from_edges(edges: Iterable[tuple[str, str]], nodes: Sequence[str]) -> np.ndarray:
    """The ``(D, D)`` 0/1 adjacency matrix (``[i, j] = 1`` for ``nodes[i] -> nodes[j]``) of an edge list."""
    nodes = tuple(nodes)
    matrix = np.zeros((len(nodes), len(nodes)), dtype=np.int8)
    for cause, effect in edges:
        matrix[nodes.index(cause), nodes.index(effect)] = 1
    return matrix


def descendants(nodes: Sequence[str], edges: Iterable[tuple[str, str]] | Any, node: str) -> tuple[str, ...]:
    """The nodes reachable from ``node`` along directed edges (``node`` itself excluded), in ``nodes`` order.

    Parameters
    ----------
    nodes : sequence of str
        Node names.
    edges : iterable of (cause, effect) or array
        The graph as an edge list of node names or as an adjacency matrix (``[i, j] != 0`` for ``i -> j``).
    node : str
        One of ``nodes``.

    Raises
    ------
    ValueError
        If ``node`` or an edge's end is not one of ``nodes`` (or the matrix does not match ``nodes``).

    Examples
    --------
    >>> descendants(["a", "b", "c", "d"], [("a", "b"), ("b", "c")], "a")
    ('b', 'c')
    """
    nodes = tuple(nodes)
    if node not in nodes:
        raise ValueError(f"Unknown node {node!r}. Nodes: {list(nodes)}.")
    if isinstance(edges, np.ndarray) or (hasattr(edges, "shape") and hasattr(edges, "dtype")):
        edges = edges_from_adjacency(edges, nodes)
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for cause, effect in edges:
        for name in (cause, effect):
            if name not in children:
                raise ValueError(f"Edge {cause!r} -> {effect!r} names an unknown node {name!r}. Nodes: {list(nodes)}.")
        children[cause].append(effect)
    reached: set[str] = set()
    frontier = [node]
    while frontier:
        for child in children[frontier.pop()]:
            if child not in reached:
                reached.add(child)
                frontier.append(child)
    reached.discard(node)  # on a cycle through ``node`` it reaches itself; it is not its own descendant
    return tuple(n for n in nodes if n in reached)


def topological_order(nodes: Sequence[str], edges: Iterable[tuple[str, str]] | Any) -> tuple[str, ...]:
    """The nodes in a topological order of the DAG (parents before children; ties keep ``nodes`` order).

    Parameters
    ----------
    nodes : sequence of str
        Node names, unique.
    edges : iterable of (cause, effect) or array
        The graph as an edge list of node names or as an adjacency matrix (``[i, j] != 0`` for ``i -> j``).

    Raises
    ------
    ValueError
        If a node name repeats, an edge names an unknown node, or the graph has a cycle (the message
        names the cycle, e.g. ``a -> b -> a``).

    Examples
    --------
    >>> topological_order(["b", "a", "c"], [("a", "b"), ("b", "c")])
    ('a', 'b', 'c')
    """
    nodes = tuple(nodes)
    if len(set(nodes)) != len(nodes):
        repeated = sorted({n for n in nodes if nodes.count(n) > 1})
        raise ValueError(f"Node names must be unique; repeated: {repeated}.")
    if isinstance(edges, np.ndarray) or (hasattr(edges, "shape") and hasattr(edges, "dtype")):
        edges = edges_from_adjacency(edges, nodes)
    edges = tuple(tuple(e) for e in edges)
    children: dict[str, list[str]] = {n: [] for n in nodes}
    for edge in edges:
        if len(edge) != 2:
            raise ValueError(f"Each edge must be a (cause, effect) pair of node names; got {edge!r}.")
        cause, effect = edge
        for name in (cause, effect):
            if name not in children:
                raise ValueError(f"Edge {cause!r} -> {effect!r} names an unknown node {name!r}. Nodes: {list(nodes)}.")
        if cause == effect:
            raise ValueError(f"Edge {cause!r} -> {effect!r} is a self-loop: a variable cannot cause itself.")
        children[cause].append(effect)
    # Depth-first search; a back edge closes a cycle, which is reported along the current path.
    state = {n: 0 for n in nodes}  # 0 unvisited, 1 on the path, 2 done
    finished: list[str] = []
    for root in nodes:
        if state[root]:
            continue
        path, stack = [root], [iter(children[root])]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                node = path.pop()
                stack.pop()
                state[node] = 2
                finished.append(node)
            elif state[child] == 1:
                cycle = path[path.index(child):] + [child]
                raise ValueError(
                    f"The graph has a cycle: {' -> '.join(cycle)}. A structural causal model needs a DAG; "
                    "remove or reverse one of these edges."
                )
            elif state[child] == 0:
                state[child] = 1
                path.append(child)
                stack.append(iter(children[child]))
    # Reverse post-order is topological; make it stable w.r.t. the given order (Kahn with a priority).
    indegree = {n: 0 for n in nodes}
    for _, effect in edges:
        indegree[effect] += 1
    ready = [n for n in nodes if indegree[n] == 0]
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
                ready.sort(key=nodes.index)
    return tuple(order)
