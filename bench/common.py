"""Shared pieces of the benchmarks: a small MLP trained on sklearn digits, timing helpers."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn


def digits_mlp(
    hidden: int = 32, seed: int = 0, steps: int = 1500
) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor]:
    """A 64-hidden-10 MLP (Linear, LeakyReLU, Linear) trained on sklearn digits, with 200 held-out
    images.

    Returns the model in eval mode, test images ``[200, 64]`` and their labels ``[200]``.
    """
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    test, train = order[:200], order[200:]
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.LeakyReLU(), nn.Linear(hidden, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = train[torch.randint(len(train), (64,), generator=gen)]
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x[test], y[test]


def timed(fn: Callable[[], object]) -> tuple[object, float]:
    """Run ``fn`` once; return its result and the wall time in seconds."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def table(rows: list[tuple[str, ...]]) -> str:
    """A small Markdown table from rows of strings (first row = header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + " |"
        for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model(x).argmax(-1) == y).float().mean())


if __name__ == "__main__":
    model, x, y = digits_mlp()
    print("test accuracy", accuracy(model, x, y), "labels", np.bincount(y.numpy()))
