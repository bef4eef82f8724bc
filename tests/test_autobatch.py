"""Tests of jaxig._quadrature.autobatch.auto_alpha_batch_size: chunk size from f's intermediate bytes."""

import jax
import jax.numpy as jnp
import pytest
from jax import lax

from jaxig._quadrature.autobatch import MIN_CHUNK_ROWS, auto_alpha_batch_size

W = jnp.ones((8, 32), jnp.float32)


def dense_tanh(x):
    return jnp.tanh(x @ W).sum(axis=1)  # intermediates: (B,32) dot, (B,32) tanh, (B,) sum


def test_chunk_from_intermediate_bytes():
    x = jnp.ones((200, 8), jnp.float32)  # batch above MIN_CHUNK_ROWS: the budget alone decides
    per_alpha = 4 * (200 * 32 + 200 * 32 + 200)
    budget = 10 * 2 * per_alpha + 7  # room for exactly 10 alphas
    assert auto_alpha_batch_size(dense_tanh, x, 50, budget_bytes=budget) == 10
    assert auto_alpha_batch_size(dense_tanh, x, 10, budget_bytes=budget) is None  # all fit
    assert auto_alpha_batch_size(dense_tanh, x, 50, budget_bytes=1) == 1
    # room for 14: the 4 chunks that implies are evened out to 13 alphas each (52, not 56, evaluated)
    assert auto_alpha_batch_size(dense_tanh, x, 50, budget_bytes=14 * 2 * per_alpha + 7) == 13


def test_scan_body_counts_once_per_iteration():
    x = jnp.ones((200, 8), jnp.float32)

    def looped(z):
        def step(c, _):
            return jnp.tanh(c), None
        return lax.scan(step, z, None, length=25)[0].sum(axis=1)

    def once(z):
        return jnp.tanh(z).sum(axis=1)

    budget = 2 * 4 * 200 * 8 * 30  # fits ~30 single tanh passes, not 25 of them plus the rest
    assert auto_alpha_batch_size(once, x, 1000, budget_bytes=budget) > 25
    assert auto_alpha_batch_size(looped, x, 1000, budget_bytes=budget) == 1


@pytest.mark.parametrize("batch, least", [(64, 2), (16, 8), (100, 2), (128, 1), (1000, 1)])
def test_small_batches_get_chunks_of_at_least_min_chunk_rows(batch, least):
    x = jnp.ones((batch, 8), jnp.float32)
    assert least * batch >= MIN_CHUNK_ROWS > (least - 1) * batch
    assert auto_alpha_batch_size(dense_tanh, x, 50, budget_bytes=1) == least
    assert auto_alpha_batch_size(dense_tanh, x, least, budget_bytes=1) is None  # one chunk holds all


@pytest.mark.parametrize("n_steps", [2, 50])
def test_convolution_evaluates_all_alphas_at_once(n_steps):
    k = jnp.ones((3, 3, 3, 4), jnp.float32)
    f = lambda x: lax.conv_general_dilated(  # noqa: E731
        x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")).sum(axis=(1, 2, 3))
    x = jnp.ones((64, 64, 64, 3), jnp.float32)
    assert auto_alpha_batch_size(f, x, n_steps, budget_bytes=1) is None


def test_functions_that_make_prng_keys_inside():
    # key<fry> values have an extended dtype that numpy cannot interpret; it must not break the choice
    def noisy(x):
        noise = jax.random.normal(jax.random.key(0), x.shape[1:])
        return jnp.tanh(x + noise).sum(axis=1)

    x = jnp.ones((100, 8), jnp.float32)
    assert auto_alpha_batch_size(noisy, x, 1000, budget_bytes=2**16) >= 1
    import jaxig

    attr = jaxig.integrated_gradients(noisy, x, n_steps=8)
    assert attr.shape == x.shape and bool(jnp.all(jnp.isfinite(attr)))
