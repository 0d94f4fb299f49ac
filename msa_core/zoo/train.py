"""Train bundled models and write their weights to assets/:
``python -m msa_core.zoo.train NAME [NAME ...]``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from msa_core.zoo import CARDS
from msa_core.zoo.weights import save_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m msa_core.zoo.train", description=__doc__)
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="model names (see `python -m msa_core models --all`)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in CARDS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(CARDS))}")
    torch.set_num_threads(1)  # bitwise reproducible training
    for name in args.names:
        print(f"training {name} ...", flush=True)
        print(f"  wrote {save_weights(CARDS[name].train(), name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
