"""Gauss–Kronrod(–Patterson) tables: polynomial exactness, nesting, pairs."""

import numpy as np
import pytest

from jaxig._quadrature.kronrod import NESTED_SIZES, PAIRS, nested_rules


def _exact_up_to(nodes, weights, max_degree=40):
    """Returns the largest d such that the rule integrates (2t - 1)^0..^d over [0, 1] to 1e-13."""
    for d in range(max_degree + 1):
        if abs(weights @ (2 * nodes - 1) ** d - (d % 2 == 0) / (d + 1)) > 1e-13:
            return d - 1
    return max_degree


def test_nested_sequence_degrees_and_nesting():
    nodes, weights = nested_rules()
    assert np.unique(np.round(nodes, 12)).size == 15 and np.all((nodes > 0) & (nodes < 1))
    for k, (n, degree) in enumerate(zip(NESTED_SIZES, (1, 5, 11, 23))):
        assert np.all(weights[k, n:] == 0) and np.all(weights[k, :n] > 0)  # uses exactly nodes[:n]
        np.testing.assert_allclose(weights[k].sum(), 1.0, rtol=1e-15)
        assert _exact_up_to(nodes, weights[k]) == degree


def test_g3_is_the_three_point_gauss_rule():
    nodes, weights = nested_rules()
    t, w = np.polynomial.legendre.leggauss(3)
    order = np.argsort(nodes[:3])
    np.testing.assert_allclose(nodes[:3][order], (t + 1) / 2, atol=1e-15)
    np.testing.assert_allclose(weights[1, :3][order], w / 2, atol=1e-15)


@pytest.mark.parametrize("n, gauss_degree, kronrod_degree", [(7, 5, 11), (15, 13, 23)])
def test_pairs(n, gauss_degree, kronrod_degree):
    nodes, wk, wg = PAIRS[n]
    assert nodes.shape == (n,)
    assert _exact_up_to(nodes, wk) == kronrod_degree
    assert _exact_up_to(nodes, wg) == gauss_degree
