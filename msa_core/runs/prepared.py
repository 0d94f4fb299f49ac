"""One builder from a request to its game: the model and its task are loaded, parsed and tokenised
once per run, and the fingerprint, the game and the Ray recipe all come from that one load.

>>> prepared = PreparedRun.of(RunRequest("mlp-digits-h32-none-s0"))
>>> prepared.request.units, prepared.game().n_players
('hidden neurons', 32)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from msa_core.estimators.runner import Backend, resolve_backend
from msa_core.games import Game
from msa_core.lesion import ModelGame
from msa_core.runs.request import RunRequest
from msa_core.zoo import LoadedModel
from msa_core.zoo.recipe import ZooGame


@dataclass(frozen=True)
class PreparedRun:
    """A request with its model loaded once (scored on its task where it names one).

    Attributes:
        request: the request with the model's default units and output filled in
            (``RunRequest.resolved``).
        loaded: the model as the run plays it (its task's inputs and outputs included).
    """

    request: RunRequest
    loaded: LoadedModel

    @classmethod
    def of(cls, request: RunRequest) -> PreparedRun:
        """Load ``request``'s model (cached per process) and its task (parsed here, once).

        Raises:
            MSAInputError: an unknown model, units, output or a bad task.
        """
        loaded = request.load()
        return cls(request.resolved(loaded), loaded)

    @cached_property
    def fingerprint(self) -> str:
        """The run's identity in the store (``RunRequest.fingerprint``)."""
        return self.request.fingerprint(self.loaded)

    @cached_property
    def family(self) -> str:
        """The fingerprint of the run's family: the request without its budget."""
        return self.request.family().fingerprint(self.loaded)

    def recipe(self) -> ZooGame:
        """The game's recipe, for workers that build their own copy (Ray)."""
        request = self.request
        return ZooGame(request.model, request.units, request.output, request.lesion, request.task)

    def game(self) -> ModelGame:
        """The game of this process, from the model and task already loaded (on the GPU where
        there is one)."""
        return self.recipe().build(self.loaded)

    def on_backend(self, backend: str | None, game: ModelGame) -> tuple[Backend, Game]:
        """Where the run plays (``None``/``"local"`` or ``"ray"``) and its game there: ``game``
        itself, or Ray workers that build theirs from ``recipe``."""
        where = resolve_backend(backend)
        return where, where.game(self.recipe() if backend == "ray" else game, None)
