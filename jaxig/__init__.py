"""jaxig: Integrated Gradients in JAX, with pluggable quadrature rules and paths."""

from . import axioms as axioms
from . import datasets as datasets
from ._methods.adaptive import AdaptiveInfo as AdaptiveInfo
from ._methods.adaptive import adaptive_integrated_gradients as adaptive_integrated_gradients
from ._aggregate import feature_attributions as feature_attributions
from ._info import Info as Info
from ._methods.exact import ExactInfo as ExactInfo
from ._methods.exact import exact_integrated_gradients as exact_integrated_gradients
from ._methods.integrated import integrated_gradients as integrated_gradients
from ._paths.base import AbstractPath as AbstractPath
from ._paths.straight import StraightLine as StraightLine
from ._quadrature.base import AbstractRule as AbstractRule
from ._quadrature.gauss import GaussLegendre as GaussLegendre
from ._quadrature.newton_cotes import RiemannLeft as RiemannLeft
from ._quadrature.newton_cotes import RiemannMidpoint as RiemannMidpoint
from ._quadrature.newton_cotes import RiemannRight as RiemannRight
from ._quadrature.newton_cotes import Simpson as Simpson
from ._quadrature.newton_cotes import Trapezoid as Trapezoid
from ._quadrature.clenshaw_curtis import ClenshawCurtis as ClenshawCurtis
from ._quadrature.gauss import GaussLobatto as GaussLobatto
from ._quadrature.random import AbstractRandomRule as AbstractRandomRule
from ._quadrature.random import MonteCarlo as MonteCarlo
from ._quadrature.random import QuasiMonteCarlo as QuasiMonteCarlo
from .axioms import AxiomResult as AxiomResult
from .axioms import check_completeness as check_completeness
from .axioms import check_dummy as check_dummy
from .axioms import check_implementation_invariance as check_implementation_invariance
from .axioms import check_linearity as check_linearity
from .axioms import check_sensitivity as check_sensitivity
from .axioms import check_symmetry as check_symmetry
from ._methods.gradient import gradient_x_input as gradient_x_input
from ._methods.gradient import saliency as saliency
from ._wrappers.noise_tunnel import NoiseTunnel as NoiseTunnel
from ._wrappers.noise_tunnel import noise_tunnel as noise_tunnel

__version__ = "0.1.0"
