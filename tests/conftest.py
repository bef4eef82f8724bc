import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test with float64 enabled (jax_enable_x64), restoring the setting afterwards."""
    with jax.enable_x64(True):
        yield
