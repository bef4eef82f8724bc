"""Quadrature rules on [0, 1] and the accumulation of weighted sums over alphas."""
