"""Checks of the axioms Integrated Gradients is built on, for any attribution method (see ``checks``)."""

from .checks import AxiomResult as AxiomResult
from .checks import check_completeness as check_completeness
from .checks import check_dummy as check_dummy
from .checks import check_implementation_invariance as check_implementation_invariance
from .checks import check_linearity as check_linearity
from .checks import check_sensitivity as check_sensitivity
from .checks import check_symmetry as check_symmetry
