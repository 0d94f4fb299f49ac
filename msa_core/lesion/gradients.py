"""Values and every unit's first-order marginal effect at each coalition (attribution patching).

A lesion is a function of one continuous gate per unit, ``fill + g (x - fill)`` (``hooks.gated``):
1 intact, 0 lesioned. At a coalition (gates of 0s and 1s) one backward pass gives ``dv/dg_i`` for
every unit i at once: the linearised effect of adding unit i (lesioned in the coalition) or of
removing it (intact), ``(x - fill) . dv/dx`` at the unit, as attribution patching computes it (Nanda
2023; Syed, Rager and Conmy 2023). ``msa_core.estimators.gradient`` uses these as a control variate
for permutation sampling; its estimates stay unbiased whatever the quality of the linearisation.

Each (coalition, sample) pair of the repeated batch has its own row of gates, so one backward pass
of the summed values gives every sample's own derivatives; an output with K numbers per sample
takes K backward passes (K at most ``MAX_PER_SAMPLE``). The passes run the whole model
(``plans.WholeModel``, with the LM head only at scored positions), not the game's reuse plan, and
hold the activations the backward pass needs, so they carry fewer coalitions each.

>>> import numpy as np, torch
>>> from msa_core.lesion import ModelGame
>>> from msa_core.units import Neurons
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
>>> game = ModelGame(model, torch.randn(5, 4), Neurons("0")).with_gradients()
>>> game.output_shape  # row 0: the values [5, 1]; rows 1..3: dv/dg of each of the 3 neurons
(4, 5, 1)
>>> rows = game(np.array([[True, False, True]]))[0]
>>> bool(torch.allclose(rows[2], game(np.array([[True, True, True]]))[0, 0] - rows[0]))
True
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from msa_core.errors import MSAInputError
from msa_core.games import Game
from msa_core.lesion.hooks import attached, eval_mode
from msa_core.lesion.layer_reuse import head_options
from msa_core.lesion.plans import WholeModel

if TYPE_CHECKING:  # the game builds this module's games (``ModelGame.with_gradients``)
    from msa_core.lesion.game import ModelGame

MAX_PER_SAMPLE = 64  # output numbers per sample: one backward pass each
SAVED_FACTOR = 3  # a pass keeps about this many times a forward's activations for its backward


class GradientGame(Game):
    """A ``ModelGame``'s values with their derivatives in every unit's gate.

    Args:
        game: the ``ModelGame`` (its model, inputs, units, output and lesion).

    Raises:
        MSAInputError: a unit whose lesion has no derivative (a rerouted expert), or an output of
            more than ``MAX_PER_SAMPLE`` numbers per sample.

    Calling it with bool coalitions ``[C, N]`` returns float32 ``[C, N + 1, B, ...]`` on the model's
    device: row 0 the game's values (a whole-model pass: exactly the ``ModelGame``'s on that plan,
    within float rounding of its reuse plans), row ``1 + i`` the derivative of every value in unit
    i's gate at that coalition, both under the game's ``precision``.
    """

    def __init__(self, game: ModelGame):
        for site in game.sites:
            site.check_gradients()
            if site.fill is not None:  # made under inference mode, which autograd cannot save
                site.fill = site.fill.clone()
        per_sample = math.prod(game.output_shape[1:])
        if per_sample > MAX_PER_SAMPLE:
            raise MSAInputError(
                f"gradients take one backward pass per output number of a sample; this output has "
                f"{per_sample} per sample {list(game.output_shape[1:])}, more than "
                f"{MAX_PER_SAMPLE}. Use an output of fewer numbers per sample (a score per "
                "prompt or class) or another method"
            )
        self.game = game
        self.n_players, self.player_names = game.n_players, game.player_names
        self.output_shape = (game.n_players + 1, *game.output_shape)
        positions = getattr(game.output_fn, "positions", None)
        self.plan = WholeModel(
            game.model, game.inputs, game.sites, head_options(game.model, game.inputs, positions)
        )
        with torch.inference_mode(), eval_mode(game.model):
            _, copy_bytes = game.dry_run(self.plan)
        budget = game.memory_budget or game.default_budget()
        self.coalitions_per_pass = max(1, budget // (SAVED_FACTOR * copy_bytes))
        self.evaluate(np.ones((1, self.n_players), dtype=bool))  # refuses a constant output
        game.forward_seconds = 0.0

    @property
    def forward_seconds(self) -> float:
        """Seconds spent running the model, forward and backward passes (hooks included)."""
        return self.game.forward_seconds

    def evaluate(self, coalitions: np.ndarray) -> torch.Tensor:
        keep = torch.from_numpy(coalitions).to(self.game.device)
        step = self.coalitions_per_pass
        parts = [self._rows(keep[start : start + step]) for start in range(0, len(keep), step)]
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _rows(self, keep: torch.Tensor) -> torch.Tensor:
        """``[C, N + 1, B, ...]`` of one pass of ``keep [C, N]``."""
        game, copies, samples = self.game, keep.shape[0], self.game.batch_size
        gates = keep.float().repeat_interleave(samples, 0).requires_grad_()  # [C * B, N]
        hooks = [hook for site in game.sites for hook in site.lesion_hooks(site.own(gates))]
        start = time.perf_counter()
        with torch.enable_grad(), eval_mode(game.model), attached(hooks), game.autocast():
            values = game.output_values(self.plan.run(keep), copies)  # [C * B, ...]
            per_sample = values.reshape(copies * samples, -1).float()
            if not per_sample.requires_grad:
                raise MSAInputError(
                    "this output does not change smoothly with the units' gates (it counts or "
                    "thresholds, e.g. accuracy), so it has no gradients; use a continuous output "
                    "(logits, log-probs, a score) or another method"
                )
            derivatives = [
                torch.autograd.grad(
                    per_sample[:, k].sum(),
                    gates,
                    retain_graph=k + 1 < per_sample.shape[1],
                    allow_unused=True,
                    materialize_grads=True,  # an output number no gate reaches: derivative 0
                )[0]
                for k in range(per_sample.shape[1])
            ]  # K x [C * B, N]
        game.forward_seconds += time.perf_counter() - start
        n = self.n_players
        gradients = torch.stack(derivatives, -1).view(copies, samples, n, -1).transpose(1, 2)
        rows = torch.cat([per_sample.detach().view(copies, 1, samples, -1), gradients], 1)
        return rows.reshape(copies, n + 1, *game.output_shape)
