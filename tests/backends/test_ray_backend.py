"""``backend="ray"`` on a local 2-CPU Ray instance: the local result for the same seed, a killed
actor, the checkpoint format, and the errors (Ray missing, a game the workers cannot load)."""

import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from msa_core import FileCheckpoint, MSAInputError, UnanimityGame, shapley_modes
from msa_core.backends import GameFactory, RayBackend
from msa_core.estimators.interactions import interaction_modes
from msa_core.lesion import ModelGame
from msa_core.units import Experts
from msa_core.zoo import load_model
from msa_core.zoo.recipe import ZooGame

MLP = "mlp-digits-h32-none-s0"


def tiny_mixtral_game() -> ModelGame:
    """The 8 experts (2 layers x 4) of a tiny Mixtral built from a config, on 4 sequences of 8
    tokens.
    """
    import transformers

    config = transformers.MixtralConfig(
        num_local_experts=4,
        vocab_size=32,
        hidden_size=16,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        initializer_range=0.3,
        num_experts_per_tok=2,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    ids = torch.randint(0, 32, (4, 8), generator=torch.Generator().manual_seed(0))
    return ModelGame(model, {"input_ids": ids}, Experts("model.layers.*.mlp"), output="log_probs")


def failing_build():
    raise MSAInputError("the worker's own error")


class SlowGame:
    """A random unanimity game that sleeps on every call, so chunks are still running when an actor
    is killed.
    """

    def __init__(self, n_players: int):
        self.inner = UnanimityGame.random(n_players, 30, 4, output_shape=(4,), seed=3)
        self.n_players, self.player_names = n_players, self.inner.player_names

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        import time

        time.sleep(0.005)
        return self.inner(coalitions)


@pytest.fixture(scope="module")
def ray_session():
    """One local single-node Ray instance for the module (starting one takes seconds); test games
    travel by value.

    (Ray 2.60 turns a node address of 127.0.0.1 into the machine's own address, so none is given.)
    """
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


def assert_same_result(got, want, rtol: float = 1e-9, atol: float = 1e-12):
    np.testing.assert_allclose(got.modes, want.modes, rtol=rtol, atol=atol)
    np.testing.assert_allclose(got.stderr, want.stderr, rtol=rtol, atol=atol)
    assert got.n_evaluations == want.n_evaluations and got.n_permutations == want.n_permutations
    assert got.player_names == want.player_names


def test_neuron_game_on_ray_equals_the_local_run_and_checkpoints_the_local_format(
    ray_session, tmp_path
):
    """Permutation sampling of the MLP's 32 hidden neurons, built on each worker from its zoo name.

    3600 outputs make blocks of 2 permutations: 20 blocks, chunks of 3.
    """
    kwargs = dict(method="permutation", n_permutations=40, seed=5)
    local = shapley_modes(load_model(MLP).game("hidden neurons"), **kwargs)
    checkpoint = FileCheckpoint(tmp_path / "run.npz", every_seconds=0.0)
    remote = shapley_modes(
        ZooGame(MLP, "hidden neurons"),
        backend=RayBackend(workers=2),
        checkpoint=checkpoint,
        **kwargs,
    )
    assert_same_result(remote, local)
    assert remote.meta["backend"]["workers"] == 2 and "backend" not in local.meta
    # the state saved before the last chunk is a local run's: a local run resumes from it to the
    # local result
    saved = checkpoint.load()
    assert 0 < int(saved["run.next_block"]) < 20
    assert_same_result(
        shapley_modes(load_model(MLP).game("hidden neurons"), checkpoint=checkpoint, **kwargs),
        local,
    )


def test_expert_game_on_ray_equals_the_local_run(ray_session):
    """Kernel sampling of a tiny Mixtral's experts; the factory is a plain callable shipped by
    value.

    The model computes in float32 and its sums depend on how coalitions share a forward pass, so the
    two runs agree to float32 precision. One worker (importing transformers takes a while on a busy
    machine; the neuron test covers two), chunks of one block.
    """
    kwargs = dict(method="kernel", max_evaluations=120, seed=1)
    local = shapley_modes(tiny_mixtral_game(), **kwargs)
    remote = shapley_modes(
        GameFactory(tiny_mixtral_game), backend=RayBackend(workers=1, blocks_per_chunk=1), **kwargs
    )
    assert remote.meta["backend"]["workers"] == 1
    assert_same_result(remote, local, rtol=1e-4, atol=1e-5 * np.abs(local.modes).max())


@pytest.mark.parametrize(
    "kwargs",
    [dict(method="exact"), dict(method="sampled", n_samples=120)],
    ids=["exact", "sampled"],
)
def test_interaction_run_on_ray_equals_the_local_run_and_a_local_run_resumes_its_checkpoint(
    ray_session, tmp_path, kwargs
):
    """Pairs among 5 of 9 units: exact (2 blocks of 256 coalitions) and sampled (5 blocks of 25
    samples), one block a chunk. Chunks are merged in order, so only the order of float additions
    differs from the local run."""
    game = UnanimityGame.random(9, 25, 4, output_shape=(3,), seed=6)
    kwargs = dict(players=[0, 2, 3, 5, 8], seed=4, **kwargs)
    local = interaction_modes(game, **kwargs)
    checkpoint = FileCheckpoint(tmp_path / "ix.npz", every_seconds=0.0)
    remote = interaction_modes(
        game, backend=RayBackend(workers=2, blocks_per_chunk=1), checkpoint=checkpoint, **kwargs
    )
    assert remote.meta["backend"]["workers"] == 2 and remote.meta["method"] == kwargs["method"]
    assert_same_interactions(remote, local)
    # saved before the last chunk, in the local format: a local run resumes it to the local result
    assert 0 < int(checkpoint.load()["run.next_block"])
    assert_same_interactions(interaction_modes(game, checkpoint=checkpoint, **kwargs), local)


@pytest.mark.slow  # 7 s (two parent runs, workers loading the MLP); CI runs the fast variant above
def test_stored_interaction_run_on_ray_equals_the_local_one(ray_session, tmp_path):
    """``execute_interactions(backend="ray")``: the workers build the parent run's game from its
    recipe (``PreparedRun.recipe``); the stored result is the local one."""
    from msa_core.runs import RunRequest, RunStore, execute
    from msa_core.runs.interaction_runs import InteractionRequest, execute_interactions

    results = []
    for backend in (None, "ray"):
        store = RunStore(tmp_path / str(backend))
        run = execute(RunRequest(MLP, method="permutation", n_permutations=2), store)
        request = InteractionRequest(run.meta["fingerprint"], top=4, n_samples=12, seed=1)
        results.append(execute_interactions(request, store, backend=backend))
    local, remote = results
    assert remote.meta["backend"]["name"] == "ray" and "backend" not in local.meta
    assert_same_interactions(remote, local)


def assert_same_interactions(got, want):
    scale = np.abs(want.interactions).max()
    np.testing.assert_allclose(got.interactions, want.interactions, rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(got.stderr, want.stderr, rtol=1e-9, atol=1e-12 * scale)
    assert (got.n_evaluations, got.n_samples) == (want.n_evaluations, want.n_samples)
    assert got.player_names == want.player_names


def test_a_killed_actor_changes_nothing_and_target_stderr_stops_where_a_local_run_does(ray_session):
    game = SlowGame(10)
    kwargs = dict(
        n_players=10,
        method="antithetic",
        n_permutations=2000,
        seed=2,
        batch_size=40,
        target_stderr=0.05,
    )
    # names of actors of earlier runs may linger
    killed, earlier = (
        [],
        set(ray_session.util.list_named_actors()),
    )

    def kill_one_actor(done, total):
        if not killed:
            name = next(
                name
                for name in ray_session.util.list_named_actors()
                if name.startswith("msa-worker-") and name not in earlier
            )
            ray_session.kill(ray_session.get_actor(name))
            killed.append(name)

    remote = shapley_modes(
        game, backend=RayBackend(workers=2, blocks_per_chunk=1), progress=kill_one_actor, **kwargs
    )
    assert killed and remote.meta["backend"]["chunks_retried"] >= 1
    assert remote.meta["backend"]["workers_replaced"] == 1
    local = shapley_modes(game, **kwargs)
    assert local.meta["stopped_early"] and remote.meta["stopped_early"]
    assert_same_result(remote, local)


def test_errors_of_the_game_and_of_shipping_it_are_clear(ray_session, monkeypatch):
    with pytest.raises(
        MSAInputError, match="the worker's own error"
    ):  # raised by the game's build on a worker
        shapley_modes(GameFactory(failing_build), backend=RayBackend(workers=1), n_permutations=4)
    # a callable pickled by reference to a module that only this process has
    module = types.ModuleType("not_on_workers")
    module.Unimportable = type(
        "Unimportable",
        (),
        {"__call__": lambda self, c: c.astype(float), "__module__": "not_on_workers"},
    )
    monkeypatch.setitem(sys.modules, "not_on_workers", module)
    unimportable = module.Unimportable
    with pytest.raises(MSAInputError, match="could not load the game.*not_on_workers"):
        shapley_modes(unimportable(), n_players=3, backend=RayBackend(workers=1), n_permutations=4)


def test_missing_ray_gives_a_clear_error(monkeypatch):
    # `import ray` now fails as if it were not installed
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MSAInputError, match="pip install ray"):
        shapley_modes(UnanimityGame.random(4, 3, 2), backend="ray")


def test_importing_msa_core_does_not_import_ray():
    code = "import sys, msa_core, msa_core.backends; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "backend, message",
    [
        ("dask", "unknown backend 'dask'; allowed: None, 'local', 'ray'"),
        (lambda: RayBackend(workers=0), "workers must be a positive integer"),
        (lambda: RayBackend(gpus_per_worker=1.5), r"gpus_per_worker must be a number in \[0, 1\]"),
    ],
)
def test_bad_backend_options_are_refused_before_ray_starts(backend, message):
    with pytest.raises(MSAInputError, match=message):
        shapley_modes(
            UnanimityGame.random(4, 3, 2), backend=backend() if callable(backend) else backend
        )
