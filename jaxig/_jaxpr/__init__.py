"""Walkers over a model's jaxpr: the affine-prefix split and the piecewise-linear analysis."""
