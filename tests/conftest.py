import gc

import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test with float64 enabled (jax_enable_x64), restoring the setting afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drops JAX's compiled programs after each test module.

    Every compiled XLA:CPU program keeps about 3.4 memory mappings of machine code. Over the whole suite
    (~1,250 tests, thousands of programs) one process passed Linux's default limit of 65,530 mappings
    (vm.max_map_count; measured 44,700 at 45% of the suite), and the next compilation segfaulted inside
    LLVM. Programs are rarely shared between modules, so freeing them costs little.
    """
    yield
    jax.clear_caches()
    gc.collect()
