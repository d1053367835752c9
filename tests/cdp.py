"""Headless Chromium driven over the DevTools protocol on a pipe: no port, no library.

``--remote-debugging-pipe`` reads commands on the browser's fd 3 and writes answers and
events on its fd 4, each a JSON message ended by a NUL byte. The page tests use it to do
what a person does (open a section, wait for the refresh) and read what they would see.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any


class Browser:
    """One headless Chromium with one page; ``evaluate`` runs JavaScript in it."""

    def __init__(self, profile: Path, *flags: str) -> None:
        binary = shutil.which("chromium")
        assert binary is not None, "Debian's chromium is needed: apt-get install -y chromium"
        to_browser, self._commands = os.pipe()
        self._answers, from_browser = os.pipe()

        def at_3_and_4() -> None:  # in the child, before exec
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        argv = [binary, "--headless", "--disable-gpu", "--no-first-run"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        argv += [f"--user-data-dir={profile}", "--remote-debugging-pipe", *flags]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=at_3_and_4,  # noqa: PLW1509 (no thread here forks meanwhile)
            pass_fds=(3, 4),  # kept open after the dup2 (close_fds runs after it)
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None

    def open(self, url: str, timeout: float = 60.0) -> None:
        """Open one page at ``url`` and attach to it."""
        target = self.send("Target.createTarget", {"url": url}, timeout=timeout)["targetId"]
        attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        self._session = attached["sessionId"]

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send one command (to the page once attached) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session is not None and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                assert "error" not in answer, answer
                result: dict[str, Any] = answer["result"]
                return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in answer, answer
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float, message: Callable[[], str]) -> Any:
        """Evaluate ``expression`` until it is truthy (an exception counts as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except AssertionError:
                value = None  # the page is between two loads
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression}: {message()}")
            time.sleep(0.1)

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._answers], [], [], max(0.0, left))
            if not ready:
                raise AssertionError("Chromium did not answer in time")
            chunk = os.read(self._answers, 65536)
            if not chunk:
                raise AssertionError("Chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def close(self) -> None:
        """End the browser and close the pipes."""
        self.process.kill()
        self.process.wait(30)
        os.close(self._commands)
        os.close(self._answers)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
