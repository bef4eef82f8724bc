"""Tables of JAX primitives by how their output depends on their operands, for the jaxpr walkers.

``_affine.py`` (the affine prefix of ``f``) and ``_pwl.py`` (piecewise-linear analysis for exact
and adaptive IG) both classify equations with these; each adds the few entries only it handles.
"""

from __future__ import annotations

__all__ = ["AFFINE_ANY", "BILINEAR", "AFFINE_IF_CONST"]

#: Output affine in any combination of affine and constant operands.
AFFINE_ANY = frozenset({
    "add", "add_any", "sub", "neg", "reshape", "transpose", "broadcast_in_dim", "squeeze",
    "expand_dims", "slice", "pad", "concatenate", "rev", "copy", "copy_p", "reduce_sum",
    "cumsum", "reduce_precision", "convert_element_type", "stack",
})
#: Linear in each operand separately: affine in the input when at most one operand depends on it.
BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated"})
#: Affine provided the operands at the returned positions (indices, denominators) do not depend
#: on the input. Maps primitive name -> (number of operands -> those positions).
AFFINE_IF_CONST = {
    "div": lambda n: (1,),
    "dynamic_slice": lambda n: tuple(range(1, n)),
    "dynamic_update_slice": lambda n: tuple(range(2, n)),
    "gather": lambda n: (1,),
    "scatter-add": lambda n: (1,),
    "scatter_add": lambda n: (1,),
}
