"""Estimator benchmarks: ``python bench/bench_estimators.py`` (issues 3 and 15).

1. Error at equal evaluations on the bundled models' own games with 16 players, where the exact
   modes are known by enumerating all 65,536 coalitions (cached in ``bench/out/``, with the value of
   every coalition where that table is small, so sampled runs on those games read the table):
   - mlp-digits-h16-l1-s0 and mlp-digits-h16-none-s0: per-class accuracy ``[10]`` of the 360
     held-out digits, players = the 16 hidden neurons;
   - gan-digits-s0: the 32 default images ``[32, 1, 32, 32]``, players = the 16 channels of up16;
   - moe-fortunes-5lang: log-prob of each true next byte ``[5, 16]`` of the first 16 bytes of one
     held-out sentence per language, players = the 8 experts of layers 0 and 1.
   Budget 100 x N evaluations (full and empty included), ``--repeats`` seeds per method. Printed per
   game and method: mean squared error over all elements, the MSE ratio against plain permutation
   sampling, the share of elements inside the 95% interval (``ModesResult.interval``; a rounding
   tolerance of 1e-9 x the largest mode counts estimates equal to a truth that is 0 up to the
   rounding of the enumeration), and the wall time of one run.
2. The same games reduced to scalars (mean over outputs), against shapiq's Shapley-value
   approximators at the same budget: MSE of the best of them, of ours, and the ratio.
3. Speed against msapy (issues 3 and 22; ``--speed``, alone with ``--speed-only``): 32 hidden
   neurons of a 64-32-10 digits MLP, logits of 200 images, 1000 permutations, one torch thread, CPU
   seconds; the same MLP as a bare callable and through ``ModelGame``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import digits_mlp, table
from torch import nn

from msa_core import shapley_modes
from msa_core.coalitions import from_indices
from msa_core.lesion import ModelGame
from msa_core.units import Experts, Neurons
from msa_core.zoo import load_model

OUT = Path(__file__).parent / "out"
N = 16
METHODS = ("permutation", "antithetic", "kernel", "leverage", "regression_adjusted", "auto")
TABLE_MAX_BYTES = 256 << 20  # keep every coalition's values when the table is at most this large
SHAPIQ = (
    "KernelSHAP",
    "KernelSHAP paired",
    "UnbiasedKernelSHAP",
    "SVARM",
    "PermutationSamplingSV",
    "StratifiedSamplingSV",
    "OwenSamplingSV",
    "kADDSHAP",
)


def class_accuracy_game(name: str):
    """Per-class accuracy ``[C, 10]`` (the per-image shares summed over the images)."""
    game = load_model(name).game("hidden neurons", output="class_accuracy")
    return lambda c: np.asarray(game(c), dtype=np.float64).sum(axis=1)


def gan_game():
    game = load_model("gan-digits-s0").game("channels of up16")
    return lambda c: np.asarray(game(c), dtype=np.float64)


def moe_game():
    loaded = load_model("moe-fortunes-5lang")
    inputs = {
        key: value[::4, :17] for key, value in loaded.inputs.items()
    }  # 1 sentence per language, 16 bytes
    game = ModelGame(
        loaded.model,
        inputs,
        [Experts("model.layers.0.mlp"), Experts("model.layers.1.mlp")],
        output="target_logprob",
    )
    return lambda c: np.asarray(game(c), dtype=np.float64)


GAMES = {
    "mlp-digits-h16-l1-s0, per-class accuracy": (
        "mlp-l1",
        lambda: class_accuracy_game("mlp-digits-h16-l1-s0"),
    ),
    "mlp-digits-h16-none-s0, per-class accuracy": (
        "mlp-none",
        lambda: class_accuracy_game("mlp-digits-h16-none-s0"),
    ),
    "gan-digits-s0, channels of up16, images": ("gan-up16", gan_game),
    "moe-fortunes-5lang, experts of layers 0-1, log-probs": ("moe-l01", moe_game),
}


class TableGame:
    """A game read from the values of all coalitions, ``table [2^N, D]`` (bit i: unit i intact)."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.powers = 1 << np.arange(N, dtype=np.int64)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        return self.values[coalitions @ self.powers]


def enumerate_game(key: str, build) -> dict[str, np.ndarray]:
    """Exact modes ``[N, D]``, the scalar game's table ``[2^N]``, if small the full ``[2^N, D]``.

    Computed once (all 2^N coalitions, in blocks) and cached in ``bench/out/estimators-KEY.npz``.
    """
    path = OUT / f"estimators-{key}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    game = build()
    width = np.asarray(game(from_indices(np.array([0]), N))).size
    keep = 2**N * width * 4 <= TABLE_MAX_BYTES
    full = np.zeros((2**N, width), dtype=np.float32 if width > 64 else np.float64) if keep else None
    scalar = np.zeros(2**N)

    def recorded(coalitions: np.ndarray) -> np.ndarray:
        values = game(coalitions).reshape(len(coalitions), -1)
        codes = coalitions @ (1 << np.arange(N, dtype=np.int64))
        scalar[codes] = values.mean(axis=1)
        if full is not None:
            full[codes] = values
        return values

    start = time.perf_counter()
    truth = shapley_modes(recorded, n_players=N, method="exact", batch_size=256).modes
    print(f"  enumerated {key}: 2^{N} coalitions in {time.perf_counter() - start:.0f} s")
    data = {"truth": truth, "scalar": scalar, **({"table": full} if full is not None else {})}
    OUT.mkdir(exist_ok=True)
    np.savez(path, **data)
    return data


def run_methods(
    game, truth: np.ndarray, methods, budget: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Per method: mean squared error, share inside the 95% interval, seconds per run."""
    tol = 1e-9 * np.abs(truth).max()
    out = {}
    for method in methods:
        errors, inside, seconds = [], [], []
        for seed in range(repeats):
            start = time.perf_counter()
            res = shapley_modes(game, n_players=N, method=method, max_evaluations=budget, seed=seed)
            seconds.append(time.perf_counter() - start)
            modes = res.modes.reshape(truth.shape)
            low, high = (bound.reshape(truth.shape) for bound in res.interval(0.95))
            errors.append(np.mean((modes - truth) ** 2))
            inside.append(np.mean((low - tol <= truth) & (truth <= high + tol)))
        out[method] = {
            "mse": float(np.mean(errors)),
            "coverage": float(np.mean(inside)),
            "seconds": float(np.mean(seconds)),
            "chosen": res.meta["method"],
        }
    return out


def shapiq_errors(scalar_game, truth: np.ndarray, budget: int, repeats: int) -> dict[str, float]:
    """Mean squared error of each shapiq approximator on a scalar game ``[C, N] -> [C]``."""
    from shapiq import approximator as approx

    makers = {
        "KernelSHAP": lambda s: approx.KernelSHAP(n=N, random_state=s),
        "KernelSHAP paired": lambda s: approx.KernelSHAP(n=N, pairing_trick=True, random_state=s),
        "UnbiasedKernelSHAP": lambda s: approx.UnbiasedKernelSHAP(n=N, random_state=s),
        "SVARM": lambda s: approx.SVARM(n=N, random_state=s),
        "PermutationSamplingSV": lambda s: approx.PermutationSamplingSV(n=N, random_state=s),
        "StratifiedSamplingSV": lambda s: approx.StratifiedSamplingSV(n=N, random_state=s),
        "OwenSamplingSV": lambda s: approx.OwenSamplingSV(n=N, random_state=s),
        "kADDSHAP": lambda s: approx.kADDSHAP(n=N, max_order=2, random_state=s),
    }
    errors = {}
    for name in SHAPIQ:
        runs = [
            makers[name](seed).approximate(budget=budget, game=scalar_game).get_n_order_values(1)
            for seed in range(repeats)
        ]
        errors[name] = float(np.mean([np.mean((np.asarray(r) - truth) ** 2) for r in runs]))
    return errors


def bench_models(budget: int, repeats: int, keys: list[str]) -> tuple[str, str]:
    """Tables of sections 1 and 2, on the games of ``GAMES`` whose key is in ``keys``."""
    header = ("game", *[f"{m}: MSE ratio / coverage / s" for m in METHODS])
    rows, scalar_rows = (
        [header],
        [
            (
                "game (scalar: mean over outputs)",
                "best shapiq (MSE)",
                "regression_adjusted MSE",
                "best shapiq / regression_adjusted",
                "kernel MSE",
                "best shapiq / kernel",
            )
        ],
    )
    for label, (key, build) in GAMES.items():
        if key not in keys:
            continue
        data = enumerate_game(key, build)
        truth = data["truth"]
        game = TableGame(data["table"]) if "table" in data else build()
        result = run_methods(game, truth, METHODS, budget, repeats)
        base = result["permutation"]["mse"]
        cells = [
            f"{base / r['mse']:.1f}x / {r['coverage']:.3f} / {r['seconds']:.2f}"
            for r in result.values()
        ]
        cells[-1] += f" ({result['auto']['chosen']})"
        rows.append((label, *cells))
        print(
            f"  {label}: MSE permutation {base:.3g}; "
            + ", ".join(
                f"{m} {r['mse']:.3g} (coverage {r['coverage']:.3f})" for m, r in result.items()
            ),
            flush=True,
        )

        scalar_truth = truth.mean(axis=tuple(range(1, truth.ndim)))
        scalar_game = TableGame(data["scalar"][:, None])
        ours = run_methods(
            scalar_game, scalar_truth[:, None], ("regression_adjusted", "kernel"), budget, repeats
        )
        theirs = shapiq_errors(
            lambda c, game=scalar_game: game(np.atleast_2d(c).astype(bool))[:, 0],
            scalar_truth,
            budget,
            repeats,
        )
        best = min(theirs, key=theirs.get)
        ra, kernel = ours["regression_adjusted"]["mse"], ours["kernel"]["mse"]
        scalar_rows.append(
            (
                label,
                f"{best} ({theirs[best]:.3g})",
                f"{ra:.3g}",
                f"{theirs[best] / ra:.1f}x",
                f"{kernel:.3g}",
                f"{theirs[best] / kernel:.1f}x",
            )
        )
        print(
            "  shapiq: " + ", ".join(f"{name} {err:.3g}" for name, err in theirs.items()),
            flush=True,
        )
    return table(rows), table(scalar_rows)


class HiddenNeuronGame:
    """The MLP's hidden neurons as players (zero lesion after the activation)."""

    def __init__(self, model: nn.Sequential, images: torch.Tensor):
        self.model, self.images = model, images

    def _readout(self, hidden: torch.Tensor, coalitions: np.ndarray) -> torch.Tensor:
        """hidden ``[C or 1, B, H]`` masked per coalition -> logits ``[C, B, 10]``."""
        mask = torch.from_numpy(coalitions).to(hidden.dtype)[:, None, :]
        return self.model[2](hidden * mask)

    def full_forward(self, coalitions: np.ndarray) -> torch.Tensor:
        """Logits ``[C, B, 10]``: the whole forward pass per coalition, all coalitions batched."""
        with torch.inference_mode():
            repeated = self.images.repeat(len(coalitions), 1)
            hidden = self.model[1](self.model[0](repeated)).reshape(
                len(coalitions), *self.images.shape[:1], -1
            )
            return self._readout(hidden, coalitions)

    def prefix_once(self, coalitions: np.ndarray) -> torch.Tensor:
        """Logits ``[C, B, 10]``, the coalition-independent hidden layer computed once per call."""
        with torch.inference_mode():
            return self._readout(self.model[1](self.model[0](self.images))[None], coalitions)

    def lesioned(self, complement: tuple) -> np.ndarray:
        """msapy's objective: logits ``[B, 10]`` with the neurons in ``complement`` zeroed."""
        mask = torch.ones(self.model[0].out_features)
        mask[list(complement)] = 0.0
        with torch.inference_mode():
            return self.model[2](self.model[1](self.model[0](self.images)) * mask).numpy()


class CpuTimedGame:
    """A game wrapper that adds up the CPU time spent inside the game's calls."""

    def __init__(self, game, n_players: int):
        self.game, self.n_players, self.seconds = game, n_players, 0.0

    def __call__(self, coalitions: np.ndarray):
        start = time.process_time()
        out = self.game(coalitions)
        self.seconds += time.process_time() - start
        return out


def cpu_timed(fn, repeats: int):
    """``fn()``'s result and its least CPU time over ``repeats`` runs (this process, one thread:
    other jobs on a shared machine do not count, unlike wall time)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return out, best


def bench_speed(n_permutations: int, repeats: int = 3) -> list[tuple[str, ...]]:
    """Section 3 (issues 3 and 22, item 6): CPU seconds of msapy and of ``shapley_modes`` on the
    same MLP, and the engine overhead (total CPU / CPU inside the game)."""
    from msapy import msa

    model, images, _ = digits_mlp(hidden=32)
    game = HiddenNeuronGame(model, images)
    units = list(range(32))
    theirs, t_theirs = cpu_timed(
        lambda: msa.interface(
            elements=units,
            objective_function=game.lesioned,
            n_permutations=n_permutations,
            n_parallel_games=1,
            random_seed=1,
            dual_progress_bars=False,
        ),
        1,
    )
    modes_theirs = np.stack([np.asarray(theirs[u]).reshape(200, 10) for u in units])
    rows = [("run", "CPU time", "inside the game", "speed-up vs msapy", "engine overhead", "r")]
    rows.append(
        (
            f"msapy, per-coalition objective, {n_permutations} permutations",
            f"{t_theirs:.2f} s",
            "-",
            "1.0x",
            "-",
            "-",
        )
    )
    model_game = ModelGame(model, images, Neurons("1"), output="logits")
    for label, fn in (
        ("full forward per coalition, batched", game.full_forward),
        ("hidden layer once per call, batched", game.prefix_once),
        ("ModelGame (Neurons('1'), logits)", model_game),
    ):
        best = None
        for _ in range(repeats):  # the least total, with its own game time
            timed_game = CpuTimedGame(fn, 32)
            ours, total = cpu_timed(
                lambda g=timed_game: shapley_modes(
                    g, 32, method="permutation", n_permutations=n_permutations, seed=0
                ),
                1,
            )
            if best is None or total < best[1]:
                best = (ours, total, timed_game.seconds)
        ours, t_ours, inside = best
        agree = np.corrcoef(ours.modes.reshape(32, -1).ravel(), modes_theirs.ravel())[0, 1]
        rows.append(
            (
                f"shapley_modes, {label}",
                f"{t_ours:.3f} s",
                f"{inside:.3f} s",
                f"{t_theirs / t_ours:.1f}x",
                f"{t_ours / inside:.2f}x",
                f"{agree:.4f}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--budget", type=int, default=100 * N, help="evaluations per run (full and empty included)"
    )
    parser.add_argument("--repeats", type=int, default=10, help="seeds per method and game")
    keys = [key for key, _ in GAMES.values()]
    parser.add_argument(
        "--games", nargs="+", choices=keys, default=keys, help="games of sections 1 and 2"
    )
    parser.add_argument(
        "--speed", action="store_true", help="also run the speed comparison with msapy"
    )
    parser.add_argument(
        "--permutations", type=int, default=1000, help="permutations for the speed comparison"
    )
    parser.add_argument("--speed-only", action="store_true", help="only the speed comparison")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.speed_only:
        print(f"## 3. Speed (CPU seconds)\n\n{table(bench_speed(args.permutations))}")
        return
    vector, scalar = bench_models(args.budget, args.repeats, args.games)
    print(
        f"\n## 1. Games with 16 players, {args.budget} evaluations, {args.repeats} seeds: MSE of "
        f"plain permutation sampling / MSE of the method, share of elements inside the 95% "
        f"interval, seconds per run\n\n{vector}\n"
    )
    print(
        f"## 2. The same games reduced to scalars, {args.budget} evaluations, "
        f"{args.repeats} seeds: "
        f"against shapiq's approximators\n\n{scalar}\n"
    )
    if args.speed:
        print(
            f"## 3. Speed: 32-neuron digits MLP, logits 200 x 10, one torch thread, CPU "
            f"seconds (least of 3 runs; msapy once); engine overhead = total / inside the game\n\n"
            f"{table(bench_speed(args.permutations))}"
        )


if __name__ == "__main__":
    main()
