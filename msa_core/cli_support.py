"""What the command-line modules (``cli``, ``interactions_cli``) share: argparse types, the
progress bar over evaluations, and the run store that ``--cache-dir`` names. Torch-free, so that
arguments are parsed before torch is imported."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msa_core.names import MAX_SEED

if TYPE_CHECKING:
    from msa_core.runs.store import RunStore

RAY_ADDRESS = re.compile(
    r"^(auto|local|(ray://)?[A-Za-z0-9_.\-]+:[0-9]{1,5}|(ray://)?\[[0-9A-Fa-f:.]+\]:[0-9]{1,5})$"
)


def ray_address(text: str) -> str:
    """An argparse type: a Ray cluster address (HOST:PORT, ray://HOST:PORT, auto or local)."""
    if not RAY_ADDRESS.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a Ray cluster address: HOST:PORT (e.g. 127.0.0.1:6379), ray://HOST:PORT, "
            f"'auto' (a cluster started here with `ray start --head`) or 'local'; got {text!r}"
        )
    return text


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend local|ray`` and ``--address ADDR`` (checked by ``use_backend``)."""
    parser.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="where coalitions are evaluated (default: local)",
    )
    parser.add_argument(
        "--address",
        type=ray_address,
        metavar="ADDR",
        help="Ray cluster address (with --backend ray; sets RAY_ADDRESS)",
    )


def use_backend(args: argparse.Namespace) -> None:
    """Check ``--address`` against ``--backend`` and point Ray at it (before any work).

    Raises:
        MSAInputError: ``--address`` without ``--backend ray``.
    """
    from msa_core.errors import MSAInputError

    if args.address and args.backend != "ray":
        raise MSAInputError("--address only applies to --backend ray")
    if args.address:
        os.environ["RAY_ADDRESS"] = args.address


def whole_number(minimum: int, what: str, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [``minimum``, ``maximum``], described as ``what``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = whole_number(1, "a positive whole number")
seed_int = whole_number(0, "a whole number from 0 to 2^63 - 1", MAX_SEED)


def positive_number(what: str) -> Callable[[str], float]:
    """An argparse type: a number > 0, described as ``what``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def open_store(args: argparse.Namespace, readonly: bool = False) -> RunStore:
    """The run store that ``--cache-dir`` names (else the default), read-only when asked."""
    from msa_core.runs.store import RunStore

    return RunStore(args.cache_dir, readonly=readonly)


class ProgressBar:
    """A tqdm bar over evaluations (on stderr), fed by ``update(done, total)``; shown from the first
    update."""

    def __init__(self, disabled: bool):
        self.disabled = disabled
        self.bar: Any = None  # a tqdm bar once the first update arrives
        self.updates = 0  # calls so far: 0 means this process evaluated nothing

    def update(self, done: int, total: int) -> None:
        self.updates += 1
        if self.disabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                initial=done,
                unit="eval",
                desc="evaluations",
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
