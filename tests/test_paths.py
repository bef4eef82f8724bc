"""Path functions: endpoints, derivatives, IG along general paths against closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxig


class PowerPath(jaxig.AbstractPath):
    """gamma(a) = b + a**p * (x - b), with p an array parameter (one exponent per feature)."""

    p: jax.Array

    def __call__(self, alpha, x, baseline):
        return baseline + alpha ** self.p * (x - baseline)


class CurvedPath(jaxig.AbstractPath):
    """A non-monotone detour: gamma(a) = b + a (x - b) + a (1 - a) * bump; tests the jvp derivative."""

    bump: jax.Array

    def __call__(self, alpha, x, baseline):
        return baseline + alpha * (x - baseline) + alpha * (1 - alpha) * self.bump


X = jnp.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
B = jnp.array([[0.1, 0.2, -0.3]])


def test_straight_line_endpoints_and_derivative():
    path = jaxig.StraightLine()
    b = jnp.broadcast_to(B, X.shape)
    np.testing.assert_allclose(path(jnp.asarray(0.0), X, b), b)
    np.testing.assert_allclose(path(jnp.asarray(1.0), X, b), X)
    np.testing.assert_allclose(path.derivative(jnp.asarray(0.3), X, b), X - b)


def test_default_derivative_is_the_jvp_in_alpha():
    p = jnp.array([1.0, 2.0, 3.0])
    path = PowerPath(p=p)
    a = jnp.asarray(0.7)
    expected = p * a ** (p - 1) * (X - B)  # d/da of a**p (x - b)
    np.testing.assert_allclose(path.derivative(a, X, B), expected, rtol=1e-6)


@pytest.mark.parametrize("path", [PowerPath(p=jnp.array([1.0, 2.0, 3.0])),
                                  CurvedPath(bump=jnp.array([0.3, -2.0, 1.0]))])
@pytest.mark.parametrize("rule", [jaxig.GaussLegendre(), jaxig.Simpson()], ids=lambda r: type(r).__name__)
def test_linear_model_gets_w_times_displacement_along_any_path(path, rule):
    # For f = w.x the path integral of grad f . gamma' is w_i (x_i - b_i) whatever the path.
    w = jnp.array([2.0, -1.0, 0.5])
    attr = jaxig.integrated_gradients(lambda z: z @ w, X, B, path=path, rule=rule, n_steps=65)
    np.testing.assert_allclose(attr, w * (X - B), rtol=2e-4, atol=1e-5)


def test_power_path_closed_form_for_a_product():
    # f = x0 * x1 with b = 0 along gamma_i = a**p_i x_i:
    # attr_0 = x0 x1 * int p0 a**(p0-1) a**p1 da = x0 x1 p0 / (p0 + p1), likewise attr_1.
    p = jnp.array([1.0, 3.0])
    x = jnp.array([[1.5, -2.0]])
    attr = jaxig.integrated_gradients(lambda z: z[:, 0] * z[:, 1], x, path=PowerPath(p=p), n_steps=32)
    prod = x[0, 0] * x[0, 1]
    np.testing.assert_allclose(attr[0], prod * p / p.sum(), rtol=1e-5)


def test_curved_path_preserves_completeness_but_changes_attributions():
    f = lambda z: jnp.sin(z[:, 0]) * z[:, 1] + z[:, 2] ** 2
    curved = CurvedPath(bump=jnp.array([1.0, -1.0, 0.0]))
    a_curved, d_curved = jaxig.integrated_gradients(f, X, B, path=curved, n_steps=64, return_delta=True)
    a_line = jaxig.integrated_gradients(f, X, B, n_steps=64)
    np.testing.assert_allclose(d_curved, 0.0, atol=1e-5)  # a gradient field: completeness on any path
    assert float(jnp.max(jnp.abs(a_curved - a_line))) > 1e-2


def test_path_parameters_are_traced_vmapped_and_differentiated():
    x = jnp.array([[1.5, -2.0]])
    f = lambda z: z[:, 0] * z[:, 1]

    def attr0(p0):
        path = PowerPath(p=jnp.stack([p0, jnp.asarray(3.0)]))
        return jaxig.integrated_gradients(f, x, path=path, n_steps=32)[0, 0]

    p0s = jnp.array([1.0, 2.0, 3.0])
    prod = float(x[0, 0] * x[0, 1])
    np.testing.assert_allclose(jax.vmap(attr0)(p0s), prod * p0s / (p0s + 3.0), rtol=1e-5)
    # d/dp0 [prod p0 / (p0 + 3)] = prod * 3 / (p0 + 3)**2
    np.testing.assert_allclose(jax.grad(attr0)(jnp.asarray(1.0)), prod * 3.0 / 16.0, rtol=1e-4)


def test_path_parameters_are_pytree_leaves():
    leaves = jax.tree.leaves(PowerPath(p=jnp.ones(3)))
    assert len(leaves) == 1 and leaves[0].shape == (3,)
    assert jax.tree.leaves(jaxig.StraightLine()) == []


def test_multiply_by_inputs_false_on_a_curved_path_is_the_path_averaged_gradient():
    w = jnp.array([2.0, -1.0, 0.5])
    curved = CurvedPath(bump=jnp.array([1.0, -1.0, 0.0]))
    g = jaxig.integrated_gradients(lambda z: z @ w, X, B, path=curved, multiply_by_inputs=False)
    np.testing.assert_allclose(g, jnp.broadcast_to(w, X.shape), rtol=1e-5)
