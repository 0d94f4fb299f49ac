"""``python -m msa_core``: the command-line interface (see ``msa_core.cli``)."""

import sys

from msa_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
