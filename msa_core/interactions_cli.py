"""``python -m msa_core interactions RUN``: interaction run of a stored run's top units (cached).

Kept apart from ``msa_core.cli`` so that file only registers the subcommand; nothing heavy is
imported before the arguments are parsed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msa_core.cli_support import (
    ProgressBar,
    add_backend_arguments,
    open_store,
    positive_number,
    seed_int,
    use_backend,
    whole_number,
)
from msa_core.names import INTERACTION_METHODS

EPILOG = """\
examples:
  python -m msa_core interactions 1a2b3c --top 16             # pairs among the run's 16 top units
  python -m msa_core interactions 1a2b3c --top 8 --cost 4 --out pairs.csv
  python -m msa_core interactions ix:9f8e7d --out pairs.npz     # export a stored interaction run
"""


def add_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    """Register the ``interactions`` subcommand on ``commands`` (argparse subparsers)."""
    at_least_two = whole_number(2, "a whole number >= 2")
    positive_float = positive_number("a positive number")

    parser = commands.add_parser(
        "interactions",
        parents=parents,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help="which pairs of a run's top units work together (pairwise interaction modes)",
        description="Compute the pairwise Shapley interaction modes of the top-K units of a stored "
        "run (positive: the pair does more together than apart;"
        " negative: they back each other up). "
        "Cached like "
        "runs; a repeated command returns at once and an interrupted one resumes.",
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        help="a stored run's id (first characters suffice), or a stored "
        "interaction run's id (ix:...) to show or export it",
    )
    parser.add_argument(
        "--top",
        type=at_least_two,
        default=16,
        metavar="K",
        help="how many of the run's top units (by total |contribution|); default 16",
    )
    parser.add_argument(
        "--method",
        choices=INTERACTION_METHODS,
        default="auto",
        help="auto: exact when all 2^N coalitions fit the budget, else sampled",
    )
    parser.add_argument(
        "--cost",
        type=positive_float,
        default=2.0,
        metavar="X",
        help="budget: X times the run's evaluations (default 2)",
    )
    parser.add_argument(
        "--samples",
        type=at_least_two,
        metavar="S",
        help="budget in samples per pair instead of --cost",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0, metavar="S", help="random seed (default 0)"
    )
    parser.add_argument("--out", metavar="PATH", help="also write the result here (.npz or .csv)")
    parser.add_argument("--force", action="store_true", help="replace the --out file if it exists")
    add_backend_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """The ``interactions`` command (see ``add_parser``); returns the exit code."""
    from msa_core.analysis.interactions import mean_strength, strongest_pairs
    from msa_core.errors import MSAInputError
    from msa_core.runs.interaction_runs import (
        EXPORT_FORMATS,
        InteractionRequest,
        check_interaction_target,
        execute_interactions,
        export_interactions,
        resolve_interactions,
        stored_interactions,
    )
    from msa_core.runs.store import INTERACTION_KEY

    if args.out and args.out.rsplit(".", 1)[-1].lower() not in EXPORT_FORMATS:
        raise MSAInputError(
            f"--out {args.out}: allowed suffixes: {', '.join('.' + f for f in EXPORT_FORMATS)}"
        )
    if args.out:
        check_interaction_target(Path(args.out), overwrite=args.force)
    use_backend(args)
    store = open_store(args)
    started = time.perf_counter()
    if args.run.startswith(INTERACTION_KEY):
        key = resolve_interactions(store, args.run)
        result = stored_interactions(store, key)
        how = "found in the store"
        if result is None:
            raise MSAInputError(f"interaction run {args.run} could not be read from the store")
    else:
        request = InteractionRequest(
            parent=store.resolve(args.run),
            top=args.top,
            method=args.method,
            cost=args.cost,
            n_samples=args.samples,
            seed=args.seed,
        )
        with ProgressBar(disabled=args.quiet) as bar:
            result = execute_interactions(request, store, progress=bar.update, backend=args.backend)
        how = (
            f"computed in {time.perf_counter() - started:.1f} s"
            if bar.updates
            else "found in the store"
        )
        key = result.meta["key"]
    written = export_interactions(result, args.out, overwrite=args.force) if args.out else None
    meta = result.meta
    print(
        f"interaction run {key[:15]}: {how}; {result.n_units} units ({len(result.pairs())} pairs) "
        f"of run "
        f"{meta['parent'][:12]}, outputs {list(result.output_shape)}, method {meta['method']}, "
        f"{result.n_evaluations} evaluations = {meta['cost_ratio']:.2f} x the run's"
    )
    print(
        f"mean pair strength (sum of |interaction| over outputs) {mean_strength(result):.4g}; "
        "strongest pairs:"
    )
    for row in strongest_pairs(result, 5):
        print(
            f"  {row['unit a']} x {row['unit b']}: strength {row['strength']:.4g}, "
            f"summed {row['summed']:+.4g}"
        )
    if written is not None:
        print(f"written to {written}")
    sys.stdout.flush()
    return 0
