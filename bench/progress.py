"""One live status line: rewritten in place on a terminal, printed every few seconds otherwise
(a log file or CI output should not fill with carriage returns)."""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO = sys.stdout, every_s: float = 5.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._every = every_s
        self._last = 0.0
        self._shown = False

    def update(self, text: str) -> None:
        if self._tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._stream.write("\r" + text[:width].ljust(width))
            self._stream.flush()
            self._shown = True
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._stream.write(text + "\n")
            self._stream.flush()

    def done(self) -> None:
        """Ends the live line so the next print starts on a fresh one."""
        if self._tty and self._shown:
            self._stream.write("\n")
            self._stream.flush()
        self._shown = False
        self._last = 0.0

    def say(self, text: str) -> None:
        self.done()
        self._stream.write(text + "\n")
        self._stream.flush()
