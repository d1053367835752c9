"""A host of a walkthrough, in a temporary directory: a page's files and commands, mapped.

Shared by tests/test_walkthroughs.py (systemd, restore) and tests/test_walkthrough_kubernetes.py.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shlex
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deployment_files import REPO
from registry_harness import _stop
from waiting import wait_until


@dataclass
class Host:
    """The walkthrough's one host, under ``root``: the page's text with :attr:`mapping` applied."""

    root: Path
    mapping: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. what a pod gets

    def text(self, text: str) -> str:
        """``text`` with every key of the mapping replaced (longest first, in one pass)."""
        keys = sorted(self.mapping, key=len, reverse=True)
        pattern = "|".join(re.escape(key) for key in keys)
        return re.sub(pattern, lambda match: self.mapping[match.group(0)], text)

    def path(self, path: str) -> Path:
        return Path(self.text(path))

    def write_files(self, blocks: dict[str, str]) -> list[str]:
        """Write every block titled with an absolute path; return those paths (unmapped)."""
        written = [title for title in blocks if title.startswith("/")]
        for title in written:
            target = self.path(title)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.text(blocks[title]), encoding="utf-8")
        return written

    def env(self) -> dict[str, str]:
        """The environment of a root shell: no test settings for S3, s3syncer or a proxy."""
        drop = ("AWS_", "S3SYNCER_", "REGISTRY_")
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(drop) and key.lower() not in ("http_proxy", "https_proxy")
        }
        env["SYSTEMD_UNIT_PATH"] = f"{self.root}/etc/systemd/system:"
        env.update(self.extra_env)
        return env

    def run(self, line: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """One command line of a page, mapped, in bash, from the clone (as the pages say)."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.text(line)],
            cwd=REPO,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{line}\n{result.stdout}\n{result.stderr}"
        return result

    def run_block(self, block: str, *, timeout: float = 300) -> list[str]:
        """A block's commands, one line (with its ``\\`` continuations) at a time, except the
        ``systemctl`` lines, which the caller does; returns each line's stdout."""
        script = block.replace("\\\n", " ")
        if script.lstrip().startswith(("for ", "mirror=")):
            return [self.run(script, timeout=timeout).stdout]  # a loop: one shell
        lines = [line for line in script.splitlines() if line.strip()]
        return [
            self.run(line, timeout=timeout).stdout
            for line in lines
            if not line.startswith("systemctl")
        ]

    def start(self, name: str, exec_start: str, ready_url: str) -> None:
        """Start a unit's ``ExecStart`` (mapped) and wait until ``ready_url`` answers 200."""
        log = self.root / f"{name}.log"
        with log.open("ab") as handle:
            process = subprocess.Popen(
                shlex.split(self.text(exec_start)),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.root,
            )
        self.processes[name] = process

        def ready() -> bool:
            assert process.poll() is None, f"{name} exited: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(self.text(ready_url), timeout=2) as answer:
                    return bool(answer.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_until(ready, timeout=30, message=lambda: f"{name}: {log.read_text()[-3000:]}")

    def stop(self, *names: str) -> None:
        for name in names:
            _stop(self.processes.pop(name))

    def stop_all(self) -> None:
        self.stop(*list(self.processes))


def exec_start(unit_text: str) -> str:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit_text)
    return parser["Service"]["ExecStart"]


def layout_blobs(layout: Path) -> tuple[bytes, dict[str, bytes]]:
    """The manifest's bytes and every other blob (by hex digest) of a one-image OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    [manifest] = index["manifests"]
    blobs = {path.name: path.read_bytes() for path in (layout / "blobs" / "sha256").iterdir()}
    manifest_bytes = blobs.pop(manifest["digest"].removeprefix("sha256:"))
    return manifest_bytes, blobs


def assert_pulled_as_pushed(pulled: Path, layout: Path) -> None:
    """A ``skopeo copy ... dir:`` holds the pushed manifest and blobs, bit for bit."""
    manifest_bytes, blobs = layout_blobs(layout)
    assert (pulled / "manifest.json").read_bytes() == manifest_bytes
    got = {
        p.name: p.read_bytes() for p in pulled.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)
    }
    assert got == blobs
    for name, data in got.items():
        assert hashlib.sha256(data).hexdigest() == name
