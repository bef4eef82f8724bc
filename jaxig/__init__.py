"""jaxig: Integrated Gradients in JAX, with pluggable quadrature rules and paths."""

from . import axioms as axioms
from . import datasets as datasets
from ._adaptive import AdaptiveInfo as AdaptiveInfo
from ._adaptive import adaptive_integrated_gradients as adaptive_integrated_gradients
from ._aggregate import feature_attributions as feature_attributions
from ._exact import ExactInfo as ExactInfo
from ._exact import exact_integrated_gradients as exact_integrated_gradients
from ._ig import integrated_gradients as integrated_gradients
from ._paths import AbstractPath as AbstractPath
from ._paths import StraightLine as StraightLine
from ._rules import AbstractRule as AbstractRule
from ._rules import GaussLegendre as GaussLegendre
from ._rules import RiemannLeft as RiemannLeft
from ._rules import RiemannMidpoint as RiemannMidpoint
from ._rules import RiemannRight as RiemannRight
from ._rules import Simpson as Simpson
from ._rules import Trapezoid as Trapezoid
from ._rules_extra import ClenshawCurtis as ClenshawCurtis
from ._rules_extra import GaussLobatto as GaussLobatto
from ._rules_extra import MonteCarlo as MonteCarlo
from ._rules_extra import QuasiMonteCarlo as QuasiMonteCarlo
from .axioms import AxiomResult as AxiomResult
from .axioms import check_completeness as check_completeness
from .axioms import check_dummy as check_dummy
from .axioms import check_implementation_invariance as check_implementation_invariance
from .axioms import check_linearity as check_linearity
from .axioms import check_sensitivity as check_sensitivity
from .axioms import check_symmetry as check_symmetry

__version__ = "0.1.0"
