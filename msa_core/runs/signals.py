"""Hold Ctrl-C and SIGTERM off a short write, so an interrupt never splits it.

A signal that arrives inside ``signals_deferred()`` is handled as soon as the block ends (the CLI's
and the job workers' handlers raise ``KeyboardInterrupt`` there). Only the main thread handles
signals in Python; in any other thread the block runs as is.

>>> with signals_deferred():
...     pass
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held; handle the ones that arrived once it ends (also
    when it raises). Nested blocks hold them until the outermost ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, FrameType | None]] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        caught.append((signum, frame))

    previous = {signum: signal.getsignal(signum) for signum in DEFERRED}
    held = [signum for signum, handler in previous.items() if handler is not None]
    for signum in held:
        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum in held:
            signal.signal(signum, previous[signum])
        for caught_signum, frame in caught:
            handler = previous[signal.Signals(caught_signum)]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(caught_signum)
