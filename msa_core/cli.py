"""``python -m msa_core``: list bundled models, run MSA on them (cached, resumable),
list/show/export/delete runs.

Every command exits with 0 on success, 2 on a bad argument or request (with a message saying what is
allowed), 1 when something else fails (e.g. PNG rendering, a damaged store), 130 when interrupted
(Ctrl-C or SIGTERM: the run keeps its last checkpoint and releases its lock). Arguments are parsed
before torch is imported, so a bad argument is reported at once.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sqlite3
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from msa_core import interactions_cli
from msa_core.cli_support import (
    ProgressBar,
    add_backend_arguments,
    open_store,
    positive_int,
    positive_number,
    seed_int,
    use_backend,
)
from msa_core.errors import MSAInputError
from msa_core.names import EXPORT_FORMATS, LESIONS, METHODS, lesions_help, method_help
from msa_core.paths import default_cache_dir

if TYPE_CHECKING:
    from msa_core.result import ModesResult
    from msa_core.runs.store import RunStore

EXAMPLES = """\
examples:
  python -m msa_core models                       # what can be analysed
  python -m msa_core run --model mlp-digits-h32-none-s0 --permutations 100 --out r.npz
  python -m msa_core run --model smollm2-135m --units heads --task my-task.jsonl --permutations 20
  python -m msa_core list                         # stored runs (the app sees the same ones)
  python -m msa_core show 1a2b3c                  # a run, by the first characters of its id
  python -m msa_core export 1a2b3c --out modes.csv
  python -m msa_core delete 1a2b3c
  python -m msa_core store check                  # is the store intact? (`store repair` fixes it)

Runs are cached in --cache-dir (default $MSA_CACHE_DIR, else ~/.cache/msa-dashboard): asking for
the same run again returns at once, and a run that was interrupted resumes from its last checkpoint.
"""


positive_float = positive_number("a positive number of seconds")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (imports nothing heavy: the choices come from ``msa_core.names``)."""
    cache = argparse.ArgumentParser(add_help=False)
    cache.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="run cache folder (default: $MSA_CACHE_DIR, else "
        "$XDG_CACHE_HOME/msa-dashboard or ~/.cache/msa-dashboard)",
    )
    parser = argparse.ArgumentParser(
        prog="python -m msa_core",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Multiperturbation Shapley-value Analysis (MSA) of neural-network units: "
        "which units an output depends on, and how much.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    models = commands.add_parser(
        "models",
        help="list the bundled models, their unit granularities and outputs",
        description="List the bundled models with their unit granularities (what the "
        "players are) and outputs (what is measured; the first is the default).",
    )
    models.add_argument(
        "--all",
        action="store_true",
        help="also list known models whose weights are not trained yet",
    )

    run = commands.add_parser(
        "run",
        parents=[cache],
        help="compute the Shapley modes of a model's units",
        description="Compute the Shapley mode of every unit of a bundled model (cached: a "
        "repeated run returns at once; an interrupted run resumes where it stopped).",
        epilog="example: python -m msa_core run --model mlp-digits-h32-none-s0 "
        "--method permutation --permutations 200 --out r.npz",
    )
    run.add_argument(
        "--model",
        required=True,
        metavar="NAME",
        help="a bundled model (see `python -m msa_core models`), or hf:FOLDER for a "
        "local Hugging Face checkpoint folder (config.json + safetensors)",
    )
    run.add_argument(
        "--units",
        metavar="GRANULARITY",
        help="which units are the players, e.g. 'hidden neurons' "
        "(default: the model's first granularity)",
    )
    run.add_argument(
        "--output",
        metavar="OUT",
        help="what is measured, e.g. logits (default: the model's first output)",
    )
    run.add_argument(
        "--task",
        metavar="FILE",
        help="what a language model is scored on: a .jsonl or .csv file "
        "of prompt,target[,group] rows, or a bundled task set (outputs task_logprob, "
        "task_accuracy); for a sentence encoder a .jsonl/.csv of a,b[,group] sentence pairs, or "
        "(a ...ForMaskedLM checkpoint) of text,answer[,group] masked sentences (bundled: facts); "
        "for an image classifier a folder of images with labels.csv (file,label rows)",
    )
    run.add_argument(
        "--lesion",
        choices=LESIONS,
        default="zero",
        help=f"{lesions_help()} (default: zero)",
    )
    run.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help="estimator: " + "; ".join(method_help(method) for method in METHODS),
    )
    run.add_argument(
        "--permutations",
        type=positive_int,
        metavar="K",
        help="budget in permutations (default 1000)",
    )
    run.add_argument(
        "--max-evaluations",
        type=positive_int,
        metavar="E",
        help="budget in model evaluations (coalitions); the smaller of the two budgets wins",
    )
    run.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        metavar="S",
        help="random seed, 0 to 2^63 - 1 (default 0); same seed, same result",
    )
    run.add_argument(
        "--top-k",
        type=positive_int,
        metavar="K",
        help="stop as soon as the K units of highest Shapley value are known with 95%% "
        "confidence "
        "(the budget is then the most the run may use); the result says which units are "
        "confidently in or out and which are unresolved",
    )
    run.add_argument(
        "--per-group",
        action="store_true",
        help="with --top-k: one top K per index of the first output axis (e.g. per task row)",
    )
    run.add_argument(
        "--out",
        metavar="PATH",
        help=f"also write the result here ({', '.join(EXPORT_FORMATS)}, by suffix)",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="replace the --out file if it exists (a symlink is replaced, never written through)",
    )
    add_backend_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--wait",
        type=positive_float,
        metavar="SECONDS",
        help="when another process is computing the same run, wait at most this "
        "long for it (default: as long as that process is alive)",
    )
    run.add_argument("--checkpoint-seconds", type=positive_float, help=argparse.SUPPRESS)

    commands.add_parser(
        "list",
        parents=[cache],
        help="list the stored runs, newest first",
        description="List the runs stored in the cache, newest first.",
    )

    show = commands.add_parser(
        "show",
        parents=[cache],
        help="describe one run",
        description="Describe one run: its request, cost and most important units.",
    )
    show.add_argument(
        "run",
        metavar="RUN",
        help="a stored run's id (its first characters suffice) or a result .npz",
    )

    export = commands.add_parser(
        "export",
        parents=[cache],
        help="write a run as npz, csv, html, png or svg",
        description="Write a run's result: .npz (the full result), .csv (long format: "
        "unit, output index..., value, stderr), .html (the run's report: facts, "
        "numbers and every figure, works offline) or .png/.svg (the heatmap, "
        "every label shown).",
    )
    export.add_argument(
        "run",
        metavar="RUN",
        help="a stored run's id (its first characters suffice) or a result .npz",
    )
    export.add_argument("--out", required=True, metavar="PATH", help="file to write")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, help="format (default: from the suffix of --out)"
    )
    export.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it exists (a symlink is replaced, never written through); without "
        "it an existing file is refused",
    )

    delete = commands.add_parser(
        "delete",
        parents=[cache],
        help="delete stored runs",
        description="Delete stored runs (their results, checkpoints and progress).",
    )
    delete.add_argument(
        "runs", nargs="*", metavar="RUN", help="ids of stored runs (first characters suffice)"
    )
    delete.add_argument("--all", action="store_true", help="delete every stored run")
    interactions_cli.add_parser(commands, [cache])

    store = commands.add_parser(
        "store",
        parents=[cache],
        help="check the run store, or repair it",
        description="check: list what is damaged in the store (reads "
        "only; exit 1 when something is). repair: rebuild the store's "
        "databases from what can be read, the result files above all; the "
        "old databases are moved to damaged-<time>/.",
    )
    store.add_argument("action", choices=("check", "repair"), help="check or repair")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    previous = signal.signal(signal.SIGTERM, interrupt)  # stops a run like Ctrl-C: lock released
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, *_, **__: print(
                f"{prog}: warning: {message}", file=sys.stderr
            )
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # a closed pipe is told here, not at exit
            return code
    except BrokenPipeError:  # `... | head`: the reader has what it wanted, the work is done
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MSAInputError as err:
        parser.exit(2, f"{prog}: error: {err}\n")
    except sqlite3.DatabaseError as err:
        parser.exit(1, f"{prog}: failed: {_store_problem(err, args)}\n")
    except OSError as err:
        if err.errno in STORE_ERRNOS and _in_store(err, args):
            parser.exit(1, f"{prog}: failed: {_store_problem(err, args)}\n")
        parser.exit(1, f"{prog}: failed: {err}\n")
    except RuntimeError as err:
        parser.exit(1, f"{prog}: failed: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{prog}: interrupted; run the same command again to resume\n")
    finally:
        signal.signal(signal.SIGTERM, previous)


STORE_ERRNOS = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS)


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if getattr(args, "cache_dir", None) else default_cache_dir()


def _in_store(err: OSError, args: argparse.Namespace) -> bool:
    """Whether a failed file operation was on the run store's files (or names no file)."""
    return err.filename is None or str(err.filename).startswith(str(_cache_dir(args)))


def _store_problem(err: BaseException, args: argparse.Namespace) -> str:
    from msa_core.runs.store import store_problem

    return store_problem(err, _cache_dir(args))


def interrupt(signum: int, frame: object) -> None:
    """A signal handler that stops the program as Ctrl-C does (``KeyboardInterrupt``)."""
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_models(args: argparse.Namespace) -> int:
    from msa_core.zoo import list_models

    for card in list_models(bundled_only=not args.all):
        trained = (
            "" if card.bundled else f"  [not trained: python -m msa_core.zoo.train {card.name}]"
        )
        print(f"{card.name}  ({card.family}){trained}\n  {card.description}")
        print(f"  units:   {'; '.join(card.granularities)}")
        print(
            f"  outputs: {card.outputs[0]} (default); {', '.join(card.outputs[1:])}"
            if len(card.outputs) > 1
            else f"  outputs: {card.outputs[0]}"
        )
    return 0


def _top_k_line(result: ModesResult) -> str:
    """One line per group of a top-k run: resolved or not, the units confidently in the top."""
    from msa_core.estimators.stopping import top_k_status

    status = top_k_status(result)
    names = result.player_names
    lines = [
        f"top {status.k} at {status.level:.0%}: "
        + ("resolved" if status.resolved else "not resolved within the budget")
        + (" (stopped early)" if result.meta.get("stopped_early") else "")
    ]
    for g, group in enumerate(status.groups):
        where = f"  group {g}: " if status.per_group else "  "
        lines.append(
            where
            + f"in {[names[u] for u in group.top]}"
            + (f", unresolved {[names[u] for u in group.unresolved]}" if group.unresolved else "")
        )
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from msa_core.runs.execute import execute
    from msa_core.runs.export import export
    from msa_core.runs.prepared import PreparedRun
    from msa_core.runs.request import RunRequest

    if args.top_k and args.backend == "ray":
        raise MSAInputError("--top-k runs on the local backend only (leave out --backend ray)")
    if args.per_group and not args.top_k:
        raise MSAInputError("--per-group only applies with --top-k K")
    if args.out:
        check_target(Path(args.out), overwrite=args.force)
    use_backend(args)
    request = RunRequest(
        model=args.model,
        units=args.units,
        output=args.output,
        lesion=args.lesion,
        method=args.method,
        n_permutations=args.permutations,
        max_evaluations=args.max_evaluations,
        seed=args.seed,
        task=args.task,
        top_k=args.top_k,
        per_group=args.per_group,
    )
    request.check_names()  # from the model's card: before its weights and data load
    store = open_store(args)
    prepared = PreparedRun.of(request)  # the model and its task, loaded once for the whole run
    fingerprint = prepared.fingerprint
    stored_before = fingerprint in store
    if not stored_before and store.running(fingerprint):
        print(
            f"another process is computing run {fingerprint[:12]}; waiting for its result",
            file=sys.stderr,
        )
    started = time.perf_counter()
    with ProgressBar(disabled=args.quiet) as bar:
        result = execute(
            prepared,
            store,
            progress=bar.update,
            checkpoint_seconds=args.checkpoint_seconds,
            backend=args.backend,
            wait_seconds=args.wait,
        )
    written = export(result, args.out, overwrite=args.force) if args.out else None  # first
    record = store.progress(fingerprint) or {}
    if stored_before:
        how = "found in the store (computed earlier)"
    elif bar.updates or record.get("pid") == os.getpid():
        resumed = record.get("resumed_from") or 0
        how = f"computed in {time.perf_counter() - started:.1f} s" + (
            f", resumed from a checkpoint at {resumed} of {result.n_evaluations} evaluations"
            if resumed
            else ""
        )
    else:
        how = "found in the store (computed by another process while this one waited)"
    print(
        f"run {fingerprint[:12]}: {how}; {result.n_players} units, "
        f"outputs {list(result.output_shape)}, {result.n_evaluations} evaluations, "
        f"{result.n_permutations} permutations, method {result.meta['method']}"
    )
    if "target" in result.meta:
        print(_top_k_line(result))
    if fingerprint in store:
        print(f"stored in {store.directory} as run {fingerprint}")
    else:
        print(f"not stored in {store.directory} (the warning above says why)")
    if written is not None:
        print(f"written to {written}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    store = open_store(args, readonly=True)
    entries = store.list()
    if not entries:
        print(f"no stored runs in {store.directory}")
        return 0
    header = ("run", "model", "units", "output", "lesion", "method", "perms", "evals", "created")
    rows = [
        (
            entry["fingerprint"][:12],
            *(str(entry["request"][key]) for key in ("model", "units", "output", "lesion")),
            str(entry["method"]),
            str(entry.get("n_permutations", "")),
            str(entry["n_evaluations"]),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(entry["created"])),
        )
        for entry in entries
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(entries)} runs in {store.directory}, {store.volume() / 1e6:.1f} MB")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from msa_core.analysis.modes import unit_contributions, view_of

    result = _load(args)
    meta = result.meta
    request = meta.get("request", {})
    for key in ("model", "units", "output", "lesion"):
        print(f"{key:<12} {request.get(key, meta.get(key, '?'))}")
    print(
        f"{'method':<12} {meta.get('method')} (asked: {meta.get('requested_method')}), "
        f"seed {meta.get('seed')}"
    )
    print(
        f"{'budget':<12} {result.n_evaluations} evaluations, {result.n_permutations} permutations, "
        f"{meta.get('wall_seconds', 0):.1f} s"
    )
    print(
        f"{'modes':<12} {result.n_players} units x outputs {list(result.output_shape)}; "
        "efficiency gap "
        f"{result.efficiency_gap():.2e}; max stderr {float(result.stderr.max(initial=0.0)):.3g}"
    )
    contributions = unit_contributions(view_of(result).values)
    top = contributions.argsort()[::-1][:5]
    print(
        f"{'top units':<12} "
        + ", ".join(f"{result.player_names[i]} ({contributions[i]:.3g})" for i in top)
        + "  (sum of |mode| over outputs, mean over samples)"
    )
    if "fingerprint" in meta:
        print(f"{'run':<12} {meta['fingerprint']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from msa_core.runs.export import export

    check_target(Path(args.out), args.format, args.force)
    result = _load(args)
    print(f"written to {export(result, args.out, args.format, overwrite=args.force)}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from msa_core.runs.store import free_files

    if not args.runs and not args.all:
        raise MSAInputError("name the runs to delete (see `python -m msa_core list`) or give --all")
    if args.runs and args.all:
        raise MSAInputError("give either run ids or --all, not both")
    reader = open_store(args, readonly=True)
    fingerprints = None if args.all else [reader.resolve(prefix) for prefix in args.runs]
    try:
        return _delete_rows(open_store(args), fingerprints)
    except (MSAInputError, sqlite3.OperationalError, OSError) as err:
        # a disk too full to open the databases or to write their journals (SQLite then says
        # "disk I/O error" as often as "full"): free the files through read-only connections first
        cause = err.__cause__ if isinstance(err, MSAInputError) else err
        if not isinstance(cause, (sqlite3.OperationalError, OSError)):
            raise
        freed = free_files(reader.directory, None if fingerprints is None else set(fingerprints))
        print(f"freed {freed / 1e6:.1f} MB of result and checkpoint files")
        return _delete_rows(open_store(args), fingerprints)


def _delete_rows(store: RunStore, fingerprints: list[str] | None) -> int:
    """Delete ``fingerprints``' runs (None: everything) from a writable ``RunStore``, saying
    what went."""
    from msa_core.runs.store import INTERACTION_KEY

    if fingerprints is None:
        for key in store.clear():
            kind = "interaction run" if key.startswith(INTERACTION_KEY) else "run"
            print(f"deleted {kind} {key[:12]}")
        print(f"deleted every stored run, checkpoint and progress record in {store.directory}")
        return 0
    for fingerprint in fingerprints:
        store.delete(fingerprint)
        print(f"deleted run {fingerprint[:12]}")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from msa_core.runs.repair import check, repair

    directory = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    if args.action == "check":
        problems = check(directory)
        for problem in problems:
            print(f"problem: {problem}")
        verdict = (
            "; `python -m msa_core store repair` fixes them"
            if problems
            else ": the store is intact"
        )
        print(f"{len(problems)} problems in {directory}{verdict}")
        return 1 if problems else 0
    problems, moved = repair(directory)
    for problem in problems:
        print(f"fixed: {problem}")
    print(
        f"repaired {directory}; the old databases are in {moved} (delete it when satisfied)"
        if moved
        else f"nothing to repair in {directory}"
    )
    return 0


COMMANDS = {
    "models": cmd_models,
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "export": cmd_export,
    "delete": cmd_delete,
    "store": cmd_store,
    "interactions": interactions_cli.run,
}


def _load(args: argparse.Namespace):
    """The result named by ``args.run``: a ``.npz`` file, or a stored run's fingerprint prefix."""
    from msa_core.result import ModesResult

    if args.run.endswith(".npz") or Path(args.run).is_file():
        if not Path(args.run).is_file():
            raise MSAInputError(f"no file {args.run}")
        return ModesResult.load(args.run)
    store = open_store(args, readonly=True)
    result = store.get(store.resolve(args.run))
    if result is None:
        raise MSAInputError(
            f"run {args.run} is listed but its result cannot be read (the warning "
            "above says why); `python -m msa_core store check` lists the damage"
        )
    return result


def check_target(path: Path, fmt: str | None = None, overwrite: bool = False) -> None:
    """``--out``: refuse, before any work, a path of unknown format, that cannot be written, or
    that exists (unless ``overwrite``: ``--force``)."""
    from msa_core.runs.export import check_target as check

    try:
        check(path, fmt, overwrite)
    except MSAInputError as err:
        raise MSAInputError(f"--out {path}: {err}") from None
