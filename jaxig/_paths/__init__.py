"""Paths from the baseline (alpha = 0) to the input (alpha = 1)."""
