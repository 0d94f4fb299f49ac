"""``python -m msa_core``: commands end to end (in this process), and every bad argument exits 2
with a message.
"""

import numpy as np
import pytest
from cli_runner import run_cli

from msa_core.result import ModesResult

MODEL = "mlp-digits-h32-none-s0"
SMALL = [
    "--model",
    MODEL,
    "--output",
    "correct",
    "--method",
    "permutation",
    "--permutations",
    "20",
    "--quiet",
]


@pytest.fixture
def cache(tmp_path) -> str:
    return str(tmp_path / "cache")


def test_run_list_show_export_delete(capsys, cache, tmp_path):
    code, out, err = run_cli(
        capsys, "run", *SMALL, "--cache-dir", cache, "--out", str(tmp_path / "r.npz")
    )
    assert code == 0, err
    assert "computed in" in out and f"stored in {cache} as run " in out and "written to" in out
    fingerprint = out.split(" as run ")[1].split()[0]
    written = ModesResult.load(tmp_path / "r.npz")
    assert written.modes.shape == (32, 360) and written.n_permutations == 20

    code, out, _ = run_cli(capsys, "run", *SMALL, "--cache-dir", cache)
    assert code == 0 and "found in the store" in out

    code, out, _ = run_cli(capsys, "list", "--cache-dir", cache)
    assert code == 0 and fingerprint[:12] in out and "correct" in out and "1 runs" in out

    code, out, _ = run_cli(capsys, "show", fingerprint[:8], "--cache-dir", cache)
    assert code == 0 and MODEL in out and "20 permutations" in out and "top units" in out

    code, out, _ = run_cli(
        capsys, "export", fingerprint[:8], "--cache-dir", cache, "--out", str(tmp_path / "r.csv")
    )
    assert code == 0 and len((tmp_path / "r.csv").read_text().splitlines()) == 1 + 32 * 360
    code, out, _ = run_cli(
        capsys, "export", str(tmp_path / "r.npz"), "--out", str(tmp_path / "copy.npz")
    )
    assert code == 0 and np.array_equal(
        ModesResult.load(tmp_path / "copy.npz").modes, written.modes
    )

    code, out, _ = run_cli(capsys, "delete", fingerprint[:8], "--cache-dir", cache)
    assert code == 0 and f"deleted run {fingerprint[:12]}" in out
    code, out, _ = run_cli(capsys, "list", "--cache-dir", cache)
    assert code == 0 and "no stored runs" in out


def test_models_lists_granularities_and_outputs(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0 and MODEL in out and "hidden neurons" in out and "correct" in out
    code, everything, _ = run_cli(capsys, "models", "--all")
    assert code == 0 and len(everything) >= len(out)


@pytest.mark.parametrize(
    "command", [[], ["run"], ["list"], ["show"], ["export"], ["delete"], ["models"]]
)
def test_help_explains_every_command(capsys, command):
    code, out, _ = run_cli(capsys, *command, "--help")
    assert code == 0 and "usage: python -m msa_core" in out and len(out) > 200


BAD_ARGUMENTS = [
    ([], "the following arguments are required: COMMAND"),
    (["fly"], "invalid choice: 'fly'"),
    (["run"], "the following arguments are required: --model"),
    (["run", "--model", "nope"], "unknown model 'nope'; bundled: "),
    (
        ["run", "--model", MODEL, "--units", "heads"],
        "no granularity 'heads'; allowed: hidden neurons",
    ),
    (
        ["run", "--model", MODEL, "--output", "pixels"],
        "no output 'pixels'; allowed: class_accuracy",
    ),
    (["run", "--model", MODEL, "--lesion", "half"], "--lesion: invalid choice: 'half'"),
    (["run", "--model", MODEL, "--method", "magic"], "invalid choice: 'magic'"),
    (
        ["run", "--model", MODEL, "--permutations", "0"],
        "--permutations: expected a positive whole number",
    ),
    (
        ["run", "--model", MODEL, "--permutations", "many"],
        "--permutations: expected a positive whole number",
    ),
    (
        ["run", "--model", MODEL, "--max-evaluations", "-5"],
        "--max-evaluations: expected a positive whole number",
    ),
    (["run", "--model", MODEL, "--seed", "-1"], "--seed: expected a whole number from 0 to 2^63"),
    (["run", "--model", MODEL, "--backend", "gpu"], "invalid choice: 'gpu'"),
    (
        ["run", "--model", MODEL, "--address", "1.2.3.4:6379"],
        "--address only applies to --backend ray",
    ),
    (
        ["run", "--model", MODEL, "--out", "/no/such/folder/r.npz"],
        "folder /no/such/folder does not exist",
    ),
    (["run", "--model", MODEL, "--out", "r.txt"], "unknown export format 'txt'"),
    (
        ["run", "--model", MODEL, "--method", "exact"],
        "limited to N <= 20 players; this game has 32",
    ),
    (
        ["run", "--model", MODEL, "--method", "antithetic", "--permutations", "3"],
        "n_permutations must be even",
    ),
    (
        ["run", "--model", MODEL, "--checkpoint-seconds", "0"],
        "expected a positive number of seconds",
    ),
    (["show", "zzz"], "no stored run matches 'zzz'"),
    (["show", "missing.npz"], "no file missing.npz"),
    (["export", "zzz"], "the following arguments are required: --out"),
    (["export", "zzz", "--out", "r.csv", "--format", "xlsx"], "invalid choice: 'xlsx'"),
    (["delete"], "name the runs to delete"),
    (["delete", "abc", "--all"], "either run ids or --all"),
]


@pytest.mark.parametrize(
    "args, message", BAD_ARGUMENTS, ids=[" ".join(args) or "nothing" for args, _ in BAD_ARGUMENTS]
)
def test_every_bad_argument_exits_2_with_a_clear_message(capsys, cache, args, message):
    code, out, err = run_cli(
        capsys, *args, *(["--cache-dir", cache] if args and args[0] != "models" else [])
    )
    assert code == 2
    assert message in err and "Traceback" not in err + out


def test_a_bad_checkpoint_interval_in_the_environment_is_a_clear_error(capsys, cache, monkeypatch):
    monkeypatch.setenv("MSA_CHECKPOINT_SECONDS", "soon")
    code, _, err = run_cli(capsys, "run", *SMALL, "--cache-dir", cache)
    assert (
        code == 2
        and "MSA_CHECKPOINT_SECONDS must be a positive number of seconds; got 'soon'" in err
    )
