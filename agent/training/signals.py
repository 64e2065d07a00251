"""Ctrl-C and SIGTERM as a stop request for a training loop, shared by the trainer and the league."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def install_stop_signals(stopping: Callable[[], bool], request_stop: Callable[[], None]) -> list[tuple[int, Any]]:
    """Make SIGINT and SIGTERM call `request_stop` (a second SIGINT, once `stopping()` is
    true, raises KeyboardInterrupt at once); returns the previous handlers for
    `restore_signals`, or [] off the main thread, where Python allows no handlers."""
    if threading.current_thread() is not threading.main_thread():
        return []

    def handler(signum: int, frame: Any) -> None:
        if stopping() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request_stop()

    previous = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous.append((sig, signal.getsignal(sig)))
        signal.signal(sig, handler)
    return previous


def restore_signals(previous: list[tuple[int, Any]]) -> None:
    """Put back the handlers `install_stop_signals` replaced."""
    for sig, handler in previous:
        signal.signal(sig, handler)
