"""Write a result as ``.npz``, long-format CSV, or a units x outputs heatmap (standalone HTML or PNG).

CSV columns: ``unit`` (the player's name), one ``output_<axis>`` index column per output axis,
``value`` (the Shapley mode) and ``stderr``; floats are written with 17 significant digits, so they
read back exactly.

>>> import tempfile, pathlib, numpy as np
>>> from msa_core import shapley_modes
>>> res = shapley_modes(lambda c: c.astype(float) * [1.0, 2.0], n_players=2, method="exact")
>>> path = export(res, pathlib.Path(tempfile.mkdtemp()) / "r.csv")
>>> path.read_text().splitlines()[:2]
['unit,output_0,value,stderr', 'u0,0,1,0']
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np

from msa_core.errors import MSAInputError
from msa_core.names import EXPORT_FORMATS
from msa_core.result import ModesResult

FORMATS = EXPORT_FORMATS


def export(result: ModesResult, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``result`` to ``path`` as ``fmt`` (default: the path's suffix); returns the path
    written, which is always ``path`` itself.

    ``html`` is a standalone page (plotly.js inlined, works offline); ``png`` renders the same heatmap
    with kaleido and the system's Chromium. Raises ``MSAInputError`` as ``check_target`` does.
    """
    path = Path(path)
    fmt = check_target(path, fmt)
    if fmt == "npz":
        with open(path, "wb") as handle:  # numpy appends ".npz" to a path that lacks it
            result.save(handle)
    elif fmt == "csv":
        write_csv(result, path)
    elif fmt == "html":
        figure(result).write_html(path, include_plotlyjs=True, full_html=True)
    else:
        write_png(result, path)
    return path


def check_target(path: Path, fmt: str | None = None) -> str:
    """The format to write ``path`` in, after checking (before any work) that it can be written.

    Args:
        path: the file to write.
        fmt: one of ``FORMATS``, or None for the path's suffix.
    Returns:
        The format.
    Raises:
        MSAInputError: unknown format; a suffix naming another format than ``fmt``; a folder; a
        missing or unwritable folder; an existing file that cannot be overwritten.
    """
    if path.is_dir():
        raise MSAInputError(f"cannot write {path}: it is a folder; give a file name such as "
                            f"{path / ('result.' + (fmt or 'npz'))}")
    suffix = path.suffix.lstrip(".").lower()
    if fmt is None:
        fmt = suffix
    elif suffix in FORMATS and suffix != fmt:
        raise MSAInputError(f"the format is {fmt} but the file name ends in .{suffix}; name it "
                            f"{path.with_suffix('.' + fmt).name} or ask for format {suffix}")
    if fmt not in FORMATS:
        raise MSAInputError(f"unknown export format {fmt!r} (from {path.name!r}); "
                            f"allowed: {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise MSAInputError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise MSAInputError(f"cannot write {path}: cannot create files in {path.parent} "
                            f"({err.strerror})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise MSAInputError(f"cannot write {path}: the file exists and is not writable")
    return fmt


def write_csv(result: ModesResult, path: Path) -> None:
    """Long format: one row per unit and output element (C order), see the module docstring."""
    modes, stderr = np.asarray(result.modes), np.asarray(result.stderr)
    out_shape = modes.shape[1:]
    index = np.indices(out_shape).reshape(len(out_shape), -1).T if out_shape else np.zeros((1, 0), dtype=int)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit", *(f"output_{axis}" for axis in range(len(out_shape))), "value", "stderr"])
        for unit, name in enumerate(result.player_names):
            values, errors = modes[unit].ravel(), stderr[unit].ravel()
            writer.writerows([name, *map(int, position), f"{value:.17g}", f"{error:.17g}"]
                             for position, value, error in zip(index, values, errors, strict=True))


def figure(result: ModesResult):
    """The units x outputs heatmap of ``msa_core.analysis.modes`` (mean over samples, centred at 0)."""
    from msa_core.analysis.modes import heatmap_figure

    title = " · ".join(str(result.meta[key]) for key in ("model", "units", "output") if result.meta.get(key))
    return heatmap_figure(result, title=f"Shapley modes: {title}" if title else None)


def write_png(result: ModesResult, path: Path) -> None:
    try:
        figure(result).write_image(path, format="png", scale=2)
    except (ImportError, ValueError, RuntimeError, OSError) as err:
        raise RuntimeError(f"cannot render {path.name}: PNG export needs the kaleido package and Chromium "
                           f"(apt-get install chromium); {type(err).__name__}: {err}. HTML export works without "
                           f"them.") from err
