"""ppzoo.graphs.descendants on edge lists and adjacency matrices, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from ppzoo.graphs import descendants

NODES = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
#: The pendulum's graph: both angles cause both shadow factors.
GRAPH = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_descendants_of_roots_leaves_and_chains():
    assert descendants(NODES, GRAPH, "light_angle") == ("shadow_length", "shadow_position")
    assert descendants(NODES, GRAPH, "shadow_length") == ()
    # Transitive, in the order of `nodes`, each once although two paths reach "d".
    edges = [("a", "c"), ("c", "d"), ("a", "b"), ("b", "d")]
    assert descendants(["a", "b", "c", "d", "e"], edges, "a") == ("b", "c", "d")
    assert descendants(["a", "b", "c", "d", "e"], edges, "e") == ()


def test_descendants_errors_name_the_node():
    with pytest.raises(ValueError, match="Unknown node 'x'"):
        descendants(NODES, GRAPH, "x")
    with pytest.raises(ValueError, match="unknown node 'z'"):
        descendants(["a", "b"], [("a", "z")], "a")
    with pytest.raises(ValueError, match="square matrix"):
        descendants(["a", "b"], np.zeros((3, 3)), "a")
