"""Choices and limits every layer names, importable without torch (the CLI checks its arguments
before it imports torch): estimator methods, lesions, export formats, the largest seed.
``estimators.plan`` checks ``METHODS`` against its estimators when imported."""

# each estimator method in one line (the one home of both); "auto" picks one of the others
METHOD_HELP = {
    "auto": "exact when all 2^N coalitions fit the budget, else regression_adjusted "
    "(permutation for very wide outputs or a top-k target)",
    "exact": "every one of the 2^N coalitions (N <= 20): no sampling error",
    "permutation": "random orders, each unit's marginal contribution (the paper's estimator)",
    "antithetic": "random orders paired with their reverses",
    "kernel": "paired KernelSHAP regression",
    "leverage": "the KernelSHAP regression on leverage-score samples",
    "regression_adjusted": "a fitted surrogate plus Monte Carlo on its residual: the lowest "
    "error per evaluation on our games",
    "gradient": "random orders corrected by attribution patching: a backward pass per "
    "evaluation, about 4x the cost, which did not pay per CPU second on our LMs",
}
METHODS = tuple(METHOD_HELP)
INTERACTION_METHODS = ("auto", "exact", "sampled")  # of pairwise interactions
# each lesion kind: what a lesioned unit outputs instead of its own output (the one home of both)
LESION_HELP = {
    "zero": "outputs 0 (the paper's lesion)",
    "mean": "outputs its mean over the model's inputs",
}
LESIONS = tuple(LESION_HELP)
EXPORT_FORMATS = ("npz", "csv", "html", "png", "svg")
MAX_SEED = 2**63 - 1  # checkpoints store the seed as int64


def method_help(method: str) -> str:
    """A method as forms and the CLI explain it: ``"permutation: random orders, ..."``."""
    return f"{method}: {METHOD_HELP[method]}"


def lesion_label(lesion: str) -> str:
    """A lesion kind as forms show it: ``"zero: outputs 0 (the paper's lesion)"``."""
    return f"{lesion}: {LESION_HELP[lesion]}"


def lesions_help() -> str:
    """Every lesion kind in one sentence, for a form's or the CLI's help: ``"zero: a lesioned unit
    outputs 0 (the paper's lesion); mean: ..."``."""
    return "; ".join(f"{kind}: a lesioned unit {text}" for kind, text in LESION_HELP.items())
