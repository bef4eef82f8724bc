"""jaxig: Integrated Gradients in JAX, with pluggable quadrature rules and paths."""

from ._aggregate import feature_attributions as feature_attributions
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

__version__ = "0.1.0"
