"""What every dashboard page shares: the cached run store, job manager and models, run pickers,
error boxes.

Everything expensive is cached per process with ``st.cache_resource`` (keyed by the store directory,
so a test with its own ``MSA_CACHE_DIR`` gets its own store), so a rerun never loads or computes
anything twice.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import streamlit as st

from msa_core.analysis import samples
from msa_core.deployment import deployment
from msa_core.errors import MSAInputError
from msa_core.result import ModesResult
from msa_core.runs import JobManager, RunRequest, RunStore
from msa_core.runs.budget import Probe, needs_gradients, plan_run, probe_game
from msa_core.runs.interaction_runs import InteractionRequest
from msa_core.zoo import HF_PREFIX, LoadedModel, load_model

CURRENT_RUN = "current_run"  # session key: fingerprint of the run the Modes and Export pages open
NOTICE = "job_notice"  # session key: a message about the job just submitted, shown after the rerun
COMPARED_RUNS = "compared_runs"  # session key: fingerprints the Compare page opens
APP_NAVIGATION = "app_navigation"  # session key: app.py's navigation ran in this session
RUN_ID_LENGTH = 12  # characters of a run's fingerprint in a shared URL (a unique prefix)
# every output a bundled model offers, in one line (the game's value under a lesion)
OUTPUT_HELP = {
    "class_accuracy": (
        "the paper's game: each image's share of its class's accuracy [images x classes]; summed "
        "over images it is the 10 per-class accuracies"
    ),
    "logits": "the raw class scores (or next-token scores) [inputs x classes]",
    "probs": "softmax probabilities of each class [inputs x classes]",
    "log_probs": "log-softmax of each class [inputs x classes]",
    "correct": "1 where the input is classified correctly, else 0 [inputs]",
    "target_logprob": (
        "log-probability of the true class or of each true next byte [inputs (x positions)]"
    ),
    "image": "the generated images, pixel by pixel [samples x channels x height x width]",
    "language_logprob": (
        "mean log-probability per byte of each language's held-out sentences [languages]"
    ),
}
MARKUP = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")  # what Markdown/HTML/LaTeX would read


def plain(text: object) -> str:
    """``text`` escaped for ``st.markdown``, ``st.caption``, ``st.error``...: shown as typed, never
    read as markup. A visitor's task text (``![x](http://host/p.png)``, HTML, LaTeX) or a model's
    continuation of it then makes no browser fetch anything, whoever views the page."""
    return MARKUP.sub(r"\\\1", str(text))


VIEW_NAMES = {
    "sum": "sum over samples",
    "mean": "mean over samples",
    "class": "per class",
    "sample": "one sample",
}


def in_the_pages_folder_navigation() -> bool:
    """Whether this script run is Streamlit's legacy pages-folder navigation (every file of
    ``pages/``, this one included, listed as a page) instead of app.py's."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return False
    here = Path(__file__).resolve()
    return any(
        Path(page.get("script_path") or "").resolve() == here
        for page in ctx.pages_manager.get_pages().values()
    )


def leave_the_pages_folder_navigation() -> None:
    """Rerun with app.py's navigation when a session's first request ran a page with the legacy
    pages-folder navigation (app.py sits next to a ``pages/`` folder, and Streamlit uses that
    folder until a script calls ``st.navigation``: on a fresh server, every request that starts
    before the first one reaches it). Later runs are left alone (AppTest runs every page that way).

    The rerun is queued, never raised: raising it while this module is imported left the module
    half imported for the other sessions importing it at that moment (``ImportError: cannot import
    name ... from 'pages.common'``). The rerun keeps the URL, so the page opens on the same view.
    """
    if not in_the_pages_folder_navigation() or APP_NAVIGATION in st.session_state:
        return
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import RerunData, get_script_run_ctx

    PagesManager.uses_pages_directory = False
    ctx = get_script_run_ctx()
    if ctx is not None and ctx.script_requests is not None:
        ctx.script_requests.request_rerun(
            RerunData(query_string=ctx.query_string, page_script_hash=ctx.page_script_hash)
        )


class _PageHelpers(ModuleType):
    """This module, checking the navigation whenever a page takes a name from it: a page that
    another session imported first gets the module from Python's cache, without running its body
    again, so the check cannot be at import time only."""

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            leave_the_pages_folder_navigation()
        return super().__getattribute__(name)


leave_the_pages_folder_navigation()
sys.modules[__name__].__class__ = _PageHelpers


def store_directory() -> str:
    """The run store directory: ``$MSA_CACHE_DIR`` if set, else the store's default."""
    return os.environ.get("MSA_CACHE_DIR", "")


@st.cache_resource(show_spinner=False)
def _store(directory: str) -> RunStore:
    return RunStore(directory or None)


@st.cache_resource(show_spinner=False)
def _jobs(directory: str) -> JobManager:
    return JobManager(_store(directory), max_workers=1)


def store() -> RunStore:
    """The run store of this process (one per store directory)."""
    return _store(store_directory())


def jobs() -> JobManager:
    """The background job manager of this process (one worker, shared by every session)."""
    return _jobs(store_directory())


@st.cache_resource(show_spinner="Loading the model…", max_entries=deployment().model_cache_entries)
def model(name: str) -> LoadedModel:
    """A model, loaded once per process (``deployment().model_cache_entries`` kept at most)."""
    if name.startswith(HF_PREFIX) and not deployment().allows_local_paths:
        raise MSAInputError("this shared dashboard does not load checkpoints from server paths")
    return load_model(name)


@st.cache_resource(show_spinner=False, max_entries=64)
def _result(directory: str, fingerprint: str) -> ModesResult:
    result = _store(directory).get(fingerprint)
    if result is None:  # raising keeps a missing run out of the cache
        raise LookupError(fingerprint)
    return result


def result(fingerprint: str) -> ModesResult | None:
    """A stored result (read from disk once per process), or None if the store no longer has it."""
    try:
        return _result(store_directory(), fingerprint)
    except LookupError:
        return None


@st.cache_resource(
    show_spinner="Loading the run's model and inputs…",
    max_entries=deployment().model_cache_entries,
)
def _run_model(directory: str, fingerprint: str) -> LoadedModel:
    res = _result(directory, fingerprint)
    model(res.meta["request"]["model"])  # a shared dashboard's refusals first
    return samples.run_model(res.meta)


def run_model(res: ModesResult) -> LoadedModel:
    """The model of a stored run with the inputs that run scored (``analysis.samples.run_model``:
    its task's examples, pairs or images), loaded once per process.

    Raises:
        MSAInputError: its model or task cannot be loaded here; LookupError: not a stored run.
    """
    return _run_model(store_directory(), str(res.meta.get("fingerprint", "")))


def runs() -> list[dict[str, Any]]:
    """Index entries of the stored runs, newest first."""
    return store().list()


def run_label(entry: dict[str, Any]) -> str:
    """A short readable name of a stored run."""
    request = entry["request"]
    budget = f"{entry['n_evaluations']:,} evals"
    return (
        f"{request['model']} · {request['units']} · {request['output']} · {request['lesion']} "
        f"lesion · {entry.get('method') or request['method']} · {budget} · "
        f"{entry['fingerprint'][:8]}"
    )


def labels_of(result: ModesResult) -> np.ndarray | None:
    """The per-sample class labels ``[B]`` of the inputs the run scored, if they have them."""
    try:
        loaded = run_model(result)
    except (MSAInputError, LookupError, KeyError):
        return None
    labels = loaded.labels
    if (
        labels is None
        or labels.ndim != 1
        or not result.output_shape
        or result.output_shape[0] != len(labels)
    ):
        return None
    return labels.cpu().numpy()


def pick_run(label: str, key: str, entries: list[dict[str, Any]] | None = None) -> str | None:
    """A select box over stored runs, opening on the URL's ``run`` (a fingerprint prefix), else the
    session's current run, else the newest; writes the choice back to the URL; returns a
    fingerprint."""
    entries = runs() if entries is None else entries
    if not entries:
        return None
    fingerprints = [entry["fingerprint"] for entry in entries]
    labels = {entry["fingerprint"]: run_label(entry) for entry in entries}
    if st.session_state.get(key) not in fingerprints:
        wanted = url_run(fingerprints) or st.session_state.get(CURRENT_RUN)
        st.session_state[key] = wanted if wanted in fingerprints else fingerprints[0]
    chosen = st.selectbox(label, fingerprints, format_func=labels.__getitem__, key=key)
    st.session_state[CURRENT_RUN] = chosen
    share_in_url(run=chosen[:RUN_ID_LENGTH])
    return chosen


def url_run(fingerprints: Sequence[str], param: str = "run") -> str | None:
    """The one fingerprint of ``fingerprints`` starting with the URL's ``param``, else None."""
    prefix = st.query_params.get(param, "")
    matches = [fp for fp in fingerprints if prefix and fp.startswith(prefix)]
    return matches[0] if len(matches) == 1 else None


# Shareable views: a page keeps its state (run, view, order, selected units, lesions...) in the
# URL's query string, so a copied URL opens the same view in a fresh browser. A widget's value is
# taken from the URL once, when the widget is first drawn in the session, and written back after
# every change.


def url_value(
    param: str,
    allowed: Sequence[Any] | None = None,
    cast: Callable[[str], Any] = str,
    many: bool = False,
) -> Any:
    """The URL's ``param`` cast by ``cast`` (a list of them when ``many``); None when it is absent,
    does not cast, or is not in ``allowed`` (for ``many``: the values that are)."""
    if param not in st.query_params:
        return None
    texts = st.query_params.get_all(param)
    values = []
    for text in texts if many else texts[-1:]:
        try:
            value = cast(text)
        except ValueError:
            continue
        if allowed is None or value in allowed:
            values.append(value)
    return values if many else (values[0] if values else None)


def seed_from_url(
    key: str,
    param: str,
    allowed: Sequence[Any] | None = None,
    cast: Callable[[str], Any] = str,
    many: bool = False,
) -> None:
    """Call before drawing the widget ``key``: on its first draw in this session it opens on the
    URL's ``param`` (when present and allowed). Draw the widget without a default value then."""
    if key in st.session_state:
        return
    value = url_value(param, allowed, cast, many)
    if value is not None:
        st.session_state[key] = value


def share_in_url(**params: Any) -> None:
    """Write the view's state to the URL: a value as text (booleans as 1/0), a list as repeated
    parameters; None or an empty list removes the parameter. Unchanged parameters are left alone."""
    for param, value in params.items():
        if value is None or (isinstance(value, (list, tuple)) and not value):
            if param in st.query_params:
                del st.query_params[param]
            continue
        if isinstance(value, (list, tuple)):
            texts: str | list[str] = [str(v) for v in value]
            if st.query_params.get_all(param) != texts:
                st.query_params[param] = texts
            continue
        text = str(int(value)) if isinstance(value, bool) else str(value)
        if st.query_params.get_all(param) != [text]:
            st.query_params[param] = text


def url_flag(text: str) -> bool:
    """A URL's boolean (1/0, true/false)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def picked_result(fingerprint: str) -> ModesResult:
    """The stored result of a picked run; stops the page with a note when the store no longer has
    it.
    """
    res = result(fingerprint)
    if res is None:
        st.warning(
            "This run is no longer in the store (deleted or evicted). Pick another one or launch "
            "it again."
        )
        st.stop()
    return res


@st.cache_resource(show_spinner="Timing a few evaluations of this game…", max_entries=32)
def game_probe(
    name: str, granularity: str | None, output: str | None, lesion: str, method: str | None
) -> Probe:
    """A measured probe of the game a run of model ``name`` would play, with the derivatives a
    method that needs them adds (built and timed once per process; ``method`` None: any other)."""
    return probe_game(model(name).game(granularity, output, lesion), method=method)


def probe(request: RunRequest) -> Probe:
    """``game_probe`` of the game ``request`` would play."""
    method = request.method if needs_gradients(request.method) else None
    return game_probe(request.model, request.units, request.output, request.lesion, method)


def measured_probe(entry: dict[str, Any]) -> Probe | None:
    """The cost of a game as a finished run of it measured it (seconds per evaluation over the whole
    run).
    """
    if not entry.get("wall_seconds") or not entry.get("n_evaluations"):
        return None
    return Probe(
        entry["n_players"],
        int(np.prod(entry["output_shape"])),
        entry["wall_seconds"] / entry["n_evaluations"],
    )


def quick_run_button(request: RunRequest, key: str, measured: Probe | None = None) -> None:
    """A "Run now" button that hands a small run to the background worker (its progress is in the
    jobs panel; the page fills in when it finishes), with what it will take: from ``measured`` (a
    finished run of the same game) or else from a probe of the game."""
    with explained_errors("Planning the run"):
        plan = plan_run(request, measured or probe(request))
        st.caption(
            f"{plan.evaluations:,} evaluations of {plan.n_players} units: about "
            f"{format_seconds(plan.seconds)} of model evaluations (measured on this machine), plus "
            "a few seconds to start the background worker."
        )
    if st.button("Run now", key=key):
        with explained_errors("Launching the run"):
            submit_job(
                request,
                (
                    "info",
                    "Running in the background: follow it in the **Jobs** panel of the "
                    "sidebar. This page fills in when it finishes, also if you leave and come "
                    "back.",
                ),
            )
    show_notice()


def submit_job(
    requests: RunRequest | InteractionRequest | Sequence[RunRequest | InteractionRequest],
    notice: tuple[str, str] | None,
    remember: str | None = None,
) -> None:
    """Hand ``requests`` to the background worker and rerun the app, so that the sidebar's jobs
    panel (drawn before the page) lists them at once; ``notice`` (an ``st`` message kind and its
    text) is shown by the page's ``show_notice()`` after that rerun. ``remember``: a session key
    whose list gets the jobs' keys first (a page's own progress panel follows them).

    Raises:
        MSAInputError: a request its model does not fit (nothing after it is submitted).
    """
    if isinstance(requests, (RunRequest, InteractionRequest)):
        requests = [requests]
    keys = [jobs().submit(request) for request in requests]
    if remember is not None:
        launched = st.session_state.setdefault(remember, [])
        launched[:0] = [key for key in keys if key not in launched]
    if notice is not None:
        st.session_state[NOTICE] = notice
    st.rerun()


def show_notice() -> None:
    """The notice a ``submit_job`` left for this page, once."""
    kind, text = st.session_state.pop(NOTICE, (None, None))
    if kind is not None:
        getattr(st, kind)(text)


def chosen_result(key: str, what: str) -> tuple[str, ModesResult]:
    """The run picked on this page (default: the session's current run) and its result; with no
    stored run, the page explains how to make one (``what`` the page would do) and stops."""
    fingerprint = pick_run("Run", key=key)
    if fingerprint is None:
        no_runs_yet(what)
        st.stop()
    return fingerprint, picked_result(fingerprint)


def no_runs_yet(what: str) -> None:
    """The empty state of a page that needs stored runs."""
    st.info(
        f"No finished runs yet, so there is nothing to {what}. Launch one on the **Run** page: a "
        "bundled MLP with a small budget takes a few seconds."
    )
    st.page_link("pages/run.py", label="Go to the Run page", icon=":material/play_circle:")


@contextmanager
def explained_errors(what: str) -> Iterator[None]:
    """Show an error as a short message in the page instead of a traceback."""
    try:
        yield
    except MSAInputError as err:  # errors quote what was typed or uploaded: shown as plain text
        st.error(f"{what}: {plain(err)}")
    except Exception as err:  # noqa: BLE001  (the page must stay up; Streamlit's rerun/stop are BaseExceptions)
        st.error(
            f"{what} failed unexpectedly ({type(err).__name__}: {plain(err)}). Please report this "
            "with the steps that led to it."
        )


def output_help(output: str) -> str:
    """``output: what it is``, one line (the name alone for an output without a note)."""
    return f"{output}: {OUTPUT_HELP[output]}" if output in OUTPUT_HELP else output


def format_seconds(seconds: float | None) -> str:
    """``12 s``, ``3 min 20 s`` or ``unknown``."""
    if seconds is None or not np.isfinite(seconds):
        return "unknown"
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60} s"


def timestamp(epoch: float) -> str:
    return time.strftime("%b %d %H:%M", time.localtime(epoch))


def kept_with_run(fingerprint: str, analysis: str, compute: Callable[[], dict]) -> dict:
    """The analysis kept with the run (``RunStore.analysis``), else ``compute()``d once (with its
    own progress bar) and kept for every later session."""
    kept = store().analysis(fingerprint, analysis)
    if kept is None:
        kept = compute()
        store().keep_analysis(fingerprint, analysis, kept)
    return kept
