"""``run_cli``: the CLI run in this test's process, for tests anywhere under tests/."""

from msa_core.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``python -m msa_core ARGS`` run in this process."""
    try:
        code = main(list(args))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
