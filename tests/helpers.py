"""Shared test helpers: counting XLA compilations, and the registry the contract tests loop over."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax

import jaxig

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    """Yields a list whose length is the number of XLA backend compilations inside the block."""
    seen: list = []

    def listener(event, duration, **kwargs):
        if event == _COMPILE_EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# -- the registry the contract tests loop over ----------------------------------------------------------
#
# Each entry adapts a method to the protocol method(f, x, baseline=None, *, target=None, key=None,
# return_info=False) and says what to expect of it on a linear model f(x) = x @ w (+ c):
#   "linear": the attributions equal w * (x - x') exactly (completeness with no error);
#   "gradient": they equal w (saliency-like methods);
#   jit: whether it runs under jax.jit / jax.vmap (exact IG runs eagerly by design);
#   pytree: whether a dict of arrays is accepted as x.



@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    method: Callable[..., Any]
    linear: str = "linear"
    random: bool = False
    jit: bool = True
    pytree: bool = True


def _with_refs(fn):
    """Adapts a method taking a distribution of baselines: the baseline becomes one reference row."""

    def method(f, x, baseline=None, **kw):
        def ref(v, b):
            b = jax.numpy.asarray(b, v.dtype)
            return jax.numpy.full((1,) + v.shape[1:], b, v.dtype) if b.ndim == 0 else b[None]

        refs = jax.tree.map(lambda v: jax.numpy.zeros((1,) + v.shape[1:], v.dtype), x) if baseline is None \
            else jax.tree.map(ref, x, baseline)
        return fn(f, x, refs, **kw)

    return method


METHODS = [
    Entry("integrated_gradients", lambda f, x, b=None, **kw: jaxig.integrated_gradients(f, x, b, n_steps=8, **kw)),
    Entry("integrated_gradients_mc", lambda f, x, b=None, **kw: jaxig.integrated_gradients(
        f, x, b, n_steps=8, rule=jaxig.MonteCarlo(), **kw), random=True),
    Entry("exact_integrated_gradients", jaxig.exact_integrated_gradients, jit=False),
    # Kronrod: every f here is piecewise linear, where the default Auto() compiles the Piecewise mode
    # (~3x the compile time, ~25 programs over these tests). Piecewise's own jit/vmap/pytree/"all"
    # checks are in test_adaptive.py; its weight-following is checked in test_contract.py (PIECEWISE).
    Entry("adaptive_integrated_gradients", lambda f, x, b=None, **kw: jaxig.adaptive_integrated_gradients(
        f, x, b, rtol=1e-6, method=jaxig.Kronrod(), **kw)),
    Entry("expected_integrated_gradients", _with_refs(lambda f, x, r, **kw: jaxig.expected_integrated_gradients(
        f, x, r, n_steps=8, **kw))),
    Entry("expected_gradients", _with_refs(lambda f, x, r, **kw: jaxig.expected_gradients(
        f, x, r, n_samples=4, **kw)), random=True),
    Entry("feature_ablation", jaxig.feature_ablation),
    Entry("occlusion", lambda f, x, b=None, **kw: jaxig.occlusion(f, x, b, window=(1,), **kw), pytree=False),
    Entry("shapley_value_sampling", lambda f, x, b=None, **kw: jaxig.shapley_value_sampling(
        f, x, b, n_samples=3, **kw), random=True),
    Entry("deeplift", jaxig.deeplift),
    Entry("saliency", lambda f, x, b=None, **kw: jaxig.saliency(f, x, b, absolute=False, **kw), linear="gradient"),
    Entry("gradient_x_input", jaxig.gradient_x_input),
    Entry("smoothgrad_saliency", jaxig.noise_tunnel(functools.partial(jaxig.saliency, absolute=False), n_samples=3),
          linear="gradient", random=True),
    Entry("deeplift_shap", _with_refs(jaxig.deeplift_shap)),
]

# The default adaptive mode on a piecewise-linear f (Auto() picks Piecewise, which reads the jaxpr):
# checked for weight-following only; the registry entry above runs Kronrod.
PIECEWISE = Entry("adaptive_integrated_gradients_auto", lambda f, x, b=None, **kw: jaxig.adaptive_integrated_gradients(
    f, x, b, rtol=1e-6, **kw))
