"""Write a result as ``.npz``, long-format CSV, a standalone HTML report, or its heatmap as PNG/SVG.

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

import copy
import csv
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from msa_core.errors import MSAInputError
from msa_core.names import EXPORT_FORMATS
from msa_core.result import ModesResult

FORMATS = EXPORT_FORMATS
IMAGE_FORMATS = ("png", "svg")
Progress = Callable[[int, int], None]  # (rows written, rows in all)


def export(
    result: ModesResult,
    path: str | Path,
    fmt: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``result`` to ``path`` as ``fmt`` (default: the path's suffix); returns the path
    written, which is always ``path`` itself.

    ``html`` is the run's report (``msa_core.runs.report``: facts, numbers and every figure;
    plotly.js inlined, works offline); ``png``/``svg`` render its heatmap, sized to show every
    label, with kaleido and the system's Chromium. progress: called with (rows written, rows in
    all) while a CSV is written. The file is written beside ``path`` and moved into place whole:
    an existing file (or symlink) at ``path`` is refused unless ``overwrite``, and then replaced,
    never written through (a symlink's target is never touched). Raises ``MSAInputError`` as
    ``check_target`` does.
    """
    path = Path(path)
    fmt = check_target(path, fmt, overwrite)
    with replacing(path, overwrite) as partial:
        if fmt == "npz":
            with open(partial, "wb") as handle:  # numpy appends ".npz" to a path that lacks it
                result.save(handle)
        elif fmt == "csv":
            write_csv(result, partial, progress)
        elif fmt == "html":
            from msa_core.runs.report import report_html

            partial.write_text(report_html(result), encoding="utf-8")
        else:
            partial.write_bytes(figure_bytes(figure(result), fmt))
    return path


@contextmanager
def replacing(path: Path, overwrite: bool) -> Iterator[Path]:
    """A fresh file beside ``path`` for the body to write; then moved to ``path`` in one step
    (replacing what is there only if ``overwrite``), or removed when the body raises.

    Raises:
        MSAInputError: ``path`` appeared meanwhile and ``overwrite`` is false.
    """
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial")
    partial.touch(exist_ok=False)  # created here, never a link planted in advance
    try:
        yield partial
        if overwrite:
            os.replace(partial, path)  # replaces a symlink itself, never its target
        else:
            try:
                os.link(partial, path)  # fails if anything is at path by now
            except FileExistsError:
                raise MSAInputError(already_exists(path)) from None
            except OSError:  # a file system without hard links: check, then move
                if path.exists() or path.is_symlink():
                    raise MSAInputError(already_exists(path)) from None
                os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def already_exists(path: Path) -> str:
    """Why an existing ``path`` is not written (a sentence naming ``--force``)."""
    what = "a symlink" if path.is_symlink() else "a file"
    return (
        f"{path} already exists ({what}); choose another name, or give --force to replace it "
        "(a symlink is replaced itself, never written through)"
    )


def check_target(path: Path, fmt: str | None = None, overwrite: bool = False) -> str:
    """The format to write ``path`` in, after checking (before any work) that it can be written.

    Args:
        path: the file to write.
        fmt: one of ``FORMATS``, or None for the path's suffix.
        overwrite: whether an existing file (or symlink) at ``path`` may be replaced.
    Returns:
        The format.
    Raises:
        MSAInputError: unknown format; a suffix naming another format than ``fmt``; a folder; a
            missing or unwritable folder; an existing file or symlink without ``overwrite``.
    """
    if path.is_dir() and not path.is_symlink():
        raise MSAInputError(
            f"cannot write {path}: it is a folder; give a file name such as "
            f"{path / ('result.' + (fmt or 'npz'))}"
        )
    suffix = path.suffix.lstrip(".").lower()
    if fmt is None:
        fmt = suffix
    elif suffix in FORMATS and suffix != fmt:
        raise MSAInputError(
            f"the format is {fmt} but the file name ends in .{suffix}; name it "
            f"{path.with_suffix('.' + fmt).name} or ask for format {suffix}"
        )
    if fmt not in FORMATS:
        raise MSAInputError(
            f"unknown export format {fmt!r} (from {path.name!r}); allowed: {', '.join(FORMATS)}"
        )
    if not path.parent.is_dir():
        raise MSAInputError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as err:
        raise MSAInputError(
            f"cannot write {path}: cannot create files in {path.parent} ({err.strerror})"
        ) from None
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise MSAInputError(already_exists(path))
    return fmt


def write_csv(result: ModesResult, path: Path, progress: Progress | None = None) -> None:
    """Long format: one row per unit and output element (C order), see the module docstring;
    ``progress`` hears (rows written, rows in all) after each unit."""
    modes, stderr = np.asarray(result.modes), np.asarray(result.stderr)
    out_shape = modes.shape[1:]
    index = (
        np.indices(out_shape).reshape(len(out_shape), -1).T
        if out_shape
        else np.zeros((1, 0), dtype=int)
    )
    prefixes = ["".join(f",{int(i)}" for i in position) for position in index]
    per_unit, total = len(prefixes), len(prefixes) * len(result.player_names)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["unit", *(f"output_{axis}" for axis in range(len(out_shape))), "value", "stderr"]
        )
        for unit, name in enumerate(result.player_names):
            values, errors = modes[unit].ravel(), stderr[unit].ravel()
            quoted = _csv_field(name)
            handle.write(
                "".join(
                    f"{quoted}{prefix},{value:.17g},{error:.17g}\r\n"
                    for prefix, value, error in zip(
                        prefixes, values.tolist(), errors.tolist(), strict=True
                    )
                )
            )
            if progress is not None:
                progress((unit + 1) * per_unit, total)


def _csv_field(text: str) -> str:
    """``text`` as one CSV field (quoted if it holds a comma, quote or line break, as csv does)."""
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def figure(result: ModesResult) -> go.Figure:
    """The units x outputs heatmap of ``msa_core.analysis.modes`` (the first view, centred at 0)."""
    from msa_core.analysis.modes import heatmap_figure

    title = " · ".join(
        str(result.meta[key]) for key in ("model", "units", "output") if result.meta.get(key)
    )
    return heatmap_figure(result, title=f"Shapley modes: {title}" if title else None)


def publishable(figure: go.Figure, width: int | None = None) -> go.Figure:
    """A copy of ``figure`` laid out for a file: its natural width (``layout.meta["natural_width"]``
    of a heatmap, else 900 px) and height, margins that grow to fit every tick label and axis title,
    the title in its own room above the plot, white background."""
    out = go.Figure(copy.deepcopy(figure.to_dict()))
    meta = out.layout.meta if isinstance(out.layout.meta, dict) else {}
    out.update_layout(
        width=width or int(meta.get("natural_width", 900)),
        height=out.layout.height or 520,
        paper_bgcolor="white",
        title={"automargin": True, "yref": "paper", "pad": {"b": 12}},
        margin={"l": 20, "r": 20, "t": 30, "b": 20},
    )
    out.update_xaxes(automargin=True)
    out.update_yaxes(automargin=True)
    return out


def figure_bytes(figure: go.Figure, fmt: str = "png", scale: float = 2.0) -> bytes:
    """The ``publishable`` figure as PNG (``scale`` x its pixel size) or SVG bytes.

    Raises:
        MSAInputError: ``fmt`` is not png or svg.
        RuntimeError: kaleido or Chromium is missing (HTML works without them).
    """
    if fmt not in IMAGE_FORMATS:
        raise MSAInputError(f"unknown image format {fmt!r}; allowed: {', '.join(IMAGE_FORMATS)}")
    laid_out = publishable(figure)
    try:
        try:
            return laid_out.to_image(format=fmt, scale=scale if fmt == "png" else 1)
        except RuntimeError:  # kaleido under load may script its page before it loaded: once more
            return laid_out.to_image(format=fmt, scale=scale if fmt == "png" else 1)
    except (ImportError, ValueError, RuntimeError, OSError) as err:
        raise RuntimeError(
            f"cannot render a {fmt.upper()}: figure export needs the kaleido package and Chromium "
            f"(apt-get install chromium); {type(err).__name__}: {err}. HTML export works without "
            f"them."
        ) from err
