"""Worker-process plumbing shared by the data pools (image decoding, face drawing)."""
from __future__ import annotations

import os
import threading
import time

__all__ = ["exit_with_parent"]

PARENT_POLL_SECONDS = 0.5


def exit_with_parent() -> None:
    """Pool initializer: end this worker as soon as the process that started it is gone.

    After a kill -9 of `facegan data prepare` its forked workers would otherwise live on for ever,
    blocked writing results into a pipe whose other end their siblings still hold open.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="facegan-exit-with-parent", daemon=True).start()
