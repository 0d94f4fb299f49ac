"""Estimators of Shapley modes behind one entry point, ``shapley_modes``.

Modules: ``dispatch`` (the run pipeline: ``shapley_modes`` and its stages), ``interactions``
(``interaction_modes``, the same pipeline with pairs), ``plan`` (method, budget, estimator class,
checkpoint states, of both kinds), ``runner`` (runners and backends), ``checkpoint`` (where states
are kept), ``base`` (the estimator block protocol), one module per estimator and ``pairs`` (the
interaction estimators).
"""

from msa_core.estimators.dispatch import shapley_modes
from msa_core.estimators.plan import METHODS

__all__ = ["METHODS", "shapley_modes"]
