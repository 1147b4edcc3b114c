"""Progress lines for long fixture builds, shown on the terminal while pytest captures output.

The first run of the e2e and llama groups installs Claude Code from npm and builds llama.cpp
(minutes of silence otherwise). Their steps report here; inside pytest a line goes through the
terminal reporter with capturing suspended, so plain `pytest` shows it at once; outside pytest
(running a builder by hand) it goes to stderr.
"""

from __future__ import annotations

import sys
import time
from typing import Any

_config: Any = None


def attach(config: Any) -> None:
    """Called from pytest_configure: route lines through this session's terminal."""
    global _config
    _config = config


def detach() -> None:
    global _config
    _config = None


def show(line: str) -> None:
    """Write one line to the terminal now, even while pytest captures output."""
    config = _config
    if config is not None:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        capture = config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(line)
            return
    print(line, file=sys.stderr, flush=True)


class Steps:
    """`[name +12s] message` lines, the time counted from the first line of this build."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started: float | None = None

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        show(f"[{self.name} +{now - self.started:.0f}s] {message}")
