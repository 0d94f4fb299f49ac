"""Choices and limits every layer names, importable without torch (the CLI checks its arguments
before it imports torch): estimator methods, lesions, export formats, the largest seed.
``estimators.plan`` checks ``METHODS`` against its estimators when imported."""

# "auto" picks one of the others
METHODS = (
    "auto",
    "exact",
    "permutation",
    "antithetic",
    "kernel",
    "leverage",
    "regression_adjusted",
)
INTERACTION_METHODS = ("auto", "exact", "sampled")  # of pairwise interactions
LESIONS = ("zero", "mean")
EXPORT_FORMATS = ("npz", "csv", "html", "png", "svg")
MAX_SEED = 2**63 - 1  # checkpoints store the seed as int64
