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
    "gradient",
)
INTERACTION_METHODS = ("auto", "exact", "sampled")  # of pairwise interactions
# each lesion kind: what a lesioned unit outputs instead of its own output (the one home of both)
LESION_HELP = {
    "zero": "outputs 0 (the paper's lesion)",
    "mean": "outputs its mean over the model's inputs",
}
LESIONS = tuple(LESION_HELP)
EXPORT_FORMATS = ("npz", "csv", "html", "png", "svg")
MAX_SEED = 2**63 - 1  # checkpoints store the seed as int64


def lesion_label(lesion: str) -> str:
    """A lesion kind as forms show it: ``"zero: outputs 0 (the paper's lesion)"``."""
    return f"{lesion}: {LESION_HELP[lesion]}"


def lesions_help() -> str:
    """Every lesion kind in one sentence, for a form's or the CLI's help: ``"zero: a lesioned unit
    outputs 0 (the paper's lesion); mean: ..."``."""
    return "; ".join(f"{kind}: a lesioned unit {text}" for kind, text in LESION_HELP.items())
