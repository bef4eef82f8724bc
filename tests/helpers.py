"""Shared test helpers: counting XLA compilations, and the registry the contract tests loop over."""

from __future__ import annotations

import contextlib

import jax

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
