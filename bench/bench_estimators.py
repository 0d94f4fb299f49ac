"""Engine benchmarks of issue 3, run in one process: ``python bench/bench_estimators.py``.

1. Speed on the same game: 32 hidden neurons of a 64-32-10 digits MLP, value = logits of 200
   held-out images (200 x 10), zero lesion, 1000 permutations, one torch thread. msapy's
   ``msa.interface`` with the per-coalition objective a user writes (one forward pass with the
   lesioned neurons zeroed) against ``shapley_modes`` with the model as a batched callable, (a) the
   same full forward for every coalition, batched; (b) the hidden layer computed once per call
   (it does not depend on the coalition). Engine overhead = total time / time inside the game.
2. Error at equal evaluations: mean squared error of the modes at 2,400 evaluations on sparse
   sums of unanimity games (24 players, orders 1-5, 40 outputs; closed-form truth; 5 random
   games per density, several seeds each) and on the MLP's log-probabilities (non-linear in the
   units; truth: 20,000 plain permutations), for every sampler and ``auto``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import digits_mlp, table, timed
from torch import nn

from msa_core import UnanimityGame, shapley_modes


class HiddenNeuronGame:
    """The MLP's hidden neurons as players (zero lesion after the activation)."""

    def __init__(self, model: nn.Sequential, images: torch.Tensor):
        self.model, self.images = model, images

    def _readout(self, hidden: torch.Tensor, coalitions: np.ndarray) -> torch.Tensor:
        """hidden ``[C or 1, B, H]`` masked per coalition -> logits ``[C, B, 10]``."""
        mask = torch.from_numpy(coalitions).to(hidden.dtype)[:, None, :]
        return self.model[2](hidden * mask)

    def full_forward(self, coalitions: np.ndarray) -> torch.Tensor:
        """Logits ``[C, B, 10]``: the whole forward pass once per coalition, all coalitions batched."""
        with torch.inference_mode():
            repeated = self.images.repeat(len(coalitions), 1)
            hidden = self.model[1](self.model[0](repeated)).reshape(len(coalitions), *self.images.shape[:1], -1)
            return self._readout(hidden, coalitions)

    def prefix_once(self, coalitions: np.ndarray) -> torch.Tensor:
        """Logits ``[C, B, 10]`` with the coalition-independent hidden layer computed once per call."""
        with torch.inference_mode():
            return self._readout(self.model[1](self.model[0](self.images))[None], coalitions)

    def log_probs(self, coalitions: np.ndarray) -> torch.Tensor:
        """Log-probabilities ``[C, B, 10]``: a game that is not linear in the units."""
        return torch.log_softmax(self.prefix_once(coalitions), dim=-1)

    def lesioned(self, complement: tuple) -> np.ndarray:
        """msapy's objective: logits ``[B, 10]`` with the neurons in ``complement`` zeroed."""
        mask = torch.ones(self.model[0].out_features)
        mask[list(complement)] = 0.0
        with torch.inference_mode():
            return self.model[2](self.model[1](self.model[0](self.images)) * mask).numpy()


def bench_speed(n_permutations: int) -> list[tuple[str, ...]]:
    from msapy import msa

    model, images, _ = digits_mlp(hidden=32)
    game = HiddenNeuronGame(model, images)
    units = list(range(32))
    theirs, t_theirs = timed(lambda: msa.interface(elements=units, objective_function=game.lesioned,
                                                   n_permutations=n_permutations, n_parallel_games=1,
                                                   random_seed=1, dual_progress_bars=False))
    modes_theirs = np.stack([np.asarray(theirs[u]).reshape(200, 10) for u in units])
    rows = [("run", "wall time", "inside the game", "speed-up vs msapy", "engine overhead", "r with msapy")]
    rows.append((f"msapy, per-coalition objective, {n_permutations} permutations", f"{t_theirs:.2f} s", "-", "1.0x", "-", "-"))
    for label, fn in (("full forward per coalition, batched", game.full_forward),
                      ("hidden layer once per call, batched", game.prefix_once)):
        ours, t_ours = timed(lambda: shapley_modes(fn, n_players=32, method="permutation",
                                                   n_permutations=n_permutations, seed=0))
        inside = ours.meta["game_seconds"]
        agree = np.corrcoef(ours.modes.ravel(), modes_theirs.ravel())[0, 1]
        rows.append((f"shapley_modes, {label}", f"{t_ours:.2f} s", f"{inside:.2f} s", f"{t_theirs / t_ours:.1f}x",
                     f"{t_ours / inside:.2f}x", f"{agree:.4f}"))
    return rows


def mse(res, truth) -> float:
    return float(np.mean((res.modes - truth) ** 2))


def bench_accuracy(budget: int, repeats: int) -> list[tuple[str, ...]]:
    methods = ["permutation", "antithetic", "kernel", "auto"]
    rows = [("game", *[f"MSE {m}" for m in methods], "permutation / auto (min over games)")]
    for terms in (24, 48, 96):
        errors = np.zeros((5, len(methods)))
        for g in range(5):
            game = UnanimityGame.random(24, terms, 5, output_shape=(40,), seed=1000 * terms + g)
            truth = game.shapley_values()
            errors[g] = [np.mean([mse(shapley_modes(game, method=m, max_evaluations=budget, seed=s), truth)
                                  for s in range(repeats)]) for m in methods]
        ratio = errors[:, 0] / errors[:, -1]
        rows.append((f"unanimity, 24 players, {terms} terms, 5 games", *[f"{e:.2e}" for e in errors.mean(0)],
                     f"{ratio.mean():.2f}x ({ratio.min():.2f}x)"))
    model, images, _ = digits_mlp(hidden=32)
    game = HiddenNeuronGame(model, images).log_probs
    truth = shapley_modes(game, n_players=32, method="permutation", n_permutations=20000, seed=12345).modes
    errors = [np.mean([mse(shapley_modes(game, n_players=32, method=m, max_evaluations=budget, seed=s), truth)
                       for s in range(repeats)]) for m in methods]
    rows.append(("MLP digits log-probs 200 x 10, 32 players", *[f"{e:.2e}" for e in errors],
                 f"{errors[0] / errors[-1]:.2f}x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--permutations", type=int, default=1000, help="permutations for the speed benchmark")
    parser.add_argument("--budget", type=int, default=2400, help="evaluations for the accuracy benchmark")
    parser.add_argument("--repeats", type=int, default=10, help="seeds averaged per game in the accuracy benchmark")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"## 1. Speed: 32-neuron digits MLP, logits 200 x 10, one torch thread\n\n{table(bench_speed(args.permutations))}\n")
    print(f"## 2. Mean squared error at {args.budget} evaluations (mean over seeds)\n\n"
          f"{table(bench_accuracy(args.budget, args.repeats))}")


if __name__ == "__main__":
    main()
