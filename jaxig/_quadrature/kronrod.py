"""Gauss–Kronrod pairs and the nested Gauss–Kronrod–Patterson sequence G1 < G3 < K7 < P15, on [0, 1].

Nodes and weights are tabulated on [-1, 1] (non-negative half, the centre last) to 33 digits and
mapped to [0, 1] with weights summing to 1. The sequence is nested: every rule reuses all nodes of
the one before (the Kronrod extension of the 1-point Gauss rule is the 3-point Gauss rule; K7 adds
4 nodes to G3, Patterson's P15 adds 8 to K7), so an integral can be refined 1 -> 3 -> 7 -> 15
evaluations without discarding any, as QUADPACK's QNG does (with 10 -> 21 -> 43 -> 87).
Polynomial degrees of exactness: 1, 5, 11, 23 (``tests/test_kronrod.py`` checks them and the
nesting). P15's nodes and weights were computed with mpmath at 40 digits (the new nodes are the
roots of the degree-8 polynomial orthogonal to all of degree < 8 against the K7 node polynomial).

References: Kronrod (1965); Patterson, "The optimum addition of points to quadrature formulae",
Math. Comp. 22 (1968); Piessens et al., QUADPACK (1983), QNG and QAG.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PAIRS", "NESTED_SIZES", "nested_rules"]

# Gauss–Kronrod pairs: (Kronrod nodes, Kronrod weights, Gauss weights on the same nodes).
_K7 = np.array([0.960491268708020283423507092629080, 0.774596669241483377035853079956480,
                0.434243749346802558002071502844628, 0.0])
_WK7 = np.array([0.104656226026467265193823857192073, 0.268488089868333440728569280666710,
                 0.401397414775962222905051818618432, 0.450916538658474142345110087045571])
_WG3 = np.array([0.0, 5.0 / 9.0, 0.0, 8.0 / 9.0])
_K15 = np.array([0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
                 0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
                 0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
                 0.207784955007898467600689403773245, 0.0])
_WK15 = np.array([0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
                  0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
                  0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
                  0.204432940075298892414161999234649, 0.209482141084727828012999174891714])
_WG7 = np.array([0.0, 0.129484966168869693270611432679082, 0.0, 0.279705391489276667901467771423780,
                 0.0, 0.381830050505118944950369775488975, 0.0, 0.417959183673469387755102040816327])

# Patterson's 15-point extension of K7 (nodes of K7 plus 8 new ones, all weights new).
_P15 = np.array([0.993831963212755022208512841307951, 0.960491268708020283423507092629080,
                 0.888459232872256998890420167258503, 0.774596669241483377035853079956480,
                 0.621102946737226402940687443816595, 0.434243749346802558002071502844628,
                 0.223386686428966881628203986843998, 0.0])
_WP15 = np.array([0.0170017196299402603390274174026535, 0.0516032829970797396969201205678610,
                  0.0929271953151245376858942226541688, 0.134415255243784220359968764802492,
                  0.171511909136391380787353165019717, 0.200628529376989021033931873331359,
                  0.219156858401587496403693161643774, 0.225510499798206687386422549155950])


def _symmetric(nodes, *weights):
    """Returns nodes on [0, 1] and weights summing to 1 from the non-negative half on [-1, 1]."""
    full = np.concatenate([-nodes[:-1], nodes[::-1]])
    ws = [np.concatenate([w[:-1], w[::-1]]) / 2.0 for w in weights]
    return ((full + 1.0) / 2.0, *ws)


PAIRS = {7: _symmetric(_K7, _WK7, _WG3), 15: _symmetric(_K15, _WK15, _WG7)}

NESTED_SIZES = (1, 3, 7, 15)


def nested_rules() -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(nodes (15,), weights (4, 15))``: G1, G3, K7, P15 on [0, 1], nodes in nesting order.

    ``nodes[:n]`` are the nodes of the rule with ``n`` in ``NESTED_SIZES``; row ``k`` of
    ``weights`` is that rule's weights, zero on the nodes it does not use. So
    ``weights[k] @ g(nodes)`` integrates ``g`` over [0, 1] with rule ``k`` once ``g`` is known at
    ``nodes[:NESTED_SIZES[k]]``.
    """
    p_nodes, p_w = _symmetric(_P15, _WP15)
    k_nodes, k_w = _symmetric(_K7, _WK7)
    g3 = np.array([0.5, 0.5 - np.sqrt(0.15), 0.5 + np.sqrt(0.15)])  # (1 -+ sqrt(3/5)) / 2
    order = list(g3)
    order += [t for t in k_nodes if np.min(np.abs(np.array(order) - t)) > 1e-12]
    order += [t for t in p_nodes if np.min(np.abs(np.array(order) - t)) > 1e-12]
    nodes = np.array(order)
    assert nodes.shape == (15,)

    def place(rule_nodes, rule_w):
        row = np.zeros(15)
        for t, w in zip(rule_nodes, rule_w):
            row[np.argmin(np.abs(nodes - t))] = w
        return row

    weights = np.stack([place([0.5], [1.0]), place(g3, [4.0 / 9.0, 5.0 / 18.0, 5.0 / 18.0]),
                        place(k_nodes, k_w), place(p_nodes, p_w)])
    return nodes, weights
