"""Estimators of Shapley modes behind one entry point, ``shapley_modes``."""

from msa_core.estimators.dispatch import METHODS, shapley_modes

__all__ = ["METHODS", "shapley_modes"]
