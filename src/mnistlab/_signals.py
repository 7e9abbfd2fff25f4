"""Signals held back for the few steps that must not be cut in half, and a progress bar built that way."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for a few steps that must not be cut in half.

    Their handlers are swapped for one that only notes the signal; at the end the old handlers come
    back and a noted signal is handed to its own (raising KeyboardInterrupt, say). Blocking the signal
    in this thread would not do: torch's worker threads may be the ones to receive it. Python runs
    handlers only in the main thread, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: noted.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if noted:
            handler = previous[noted[0]]
            if callable(handler):
                handler(noted[0], None)
            elif handler in (signal.SIG_DFL, None):
                signal.raise_signal(noted[0])


@contextmanager
def progress_bar(**options) -> Iterator[object]:
    """A tqdm bar that Ctrl-C cannot catch half built or half closed.

    A bar interrupted inside its constructor lacks attributes that its `__del__` needs, and prints a
    traceback ("Exception ignored in ... tqdm.__del__") over the one-line message; so the signal is
    held back for those few microseconds (`signals_deferred`) and handed on right after.
    """
    from tqdm.auto import tqdm

    with signals_deferred():
        bar = tqdm(**options)
    try:
        yield bar
    finally:
        with signals_deferred():
            bar.close()

