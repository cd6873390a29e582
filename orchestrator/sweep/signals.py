"""The sweep driver's signals: SIGTERM taken as Ctrl-C, and a second Ctrl-C noticed. Tune takes the
first Ctrl-C itself (it stops the trials gracefully); both handlers are set only in the main thread."""
from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigterm_is_ctrl_c():
    """The one place a sweep sets SIGTERM: SLURM's time limit and `kill` stop it as Ctrl-C does
    (Tune stops the trials gracefully, the parent run is closed). Entered once Ray is up, since
    ray.init gives the driver Ray's own SIGTERM handler, which aborts the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def second_ctrl_c():
    """An Event set by a second Ctrl-C. Tune's own handler takes the first (it stops the trials
    gracefully) and then puts back the handler it found: this one."""
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_sigint(signum, frame):
        pressed.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)
