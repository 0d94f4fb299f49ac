"""Estimators of Shapley modes behind one entry point, ``shapley_modes``.

Modules: ``dispatch`` (``shapley_modes`` and its stages), ``plan`` (method, budget, estimator class,
checkpoint states), ``runner`` (runners and backends), ``checkpoint`` (where states are kept),
``base`` (the estimator block protocol) and one module per estimator.
"""

from msa_core.estimators.dispatch import shapley_modes
from msa_core.estimators.plan import METHODS

__all__ = ["METHODS", "shapley_modes"]
