"""The external programs the benchmark drives: found, never installed.

``benchmarks/install-tools`` installs them (``apt-get install -y wrk`` and
``pip install py-spy`` into the project's venv); the benchmark only says so when one is
missing, so a run never changes the machine it measures.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks.webhook import BenchmarkError

INSTALL_HINT = "benchmarks/install-tools installs it"


def find_wrk() -> str:
    """The path of ``wrk``; a clear error naming the install step when it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise BenchmarkError(f"wrk is not installed (apt-get install -y wrk): {INSTALL_HINT}")
    return found


def find_py_spy() -> str | None:
    """The path of ``py-spy`` beside this interpreter or on PATH, or None."""
    # A venv's scripts are not on PATH unless the venv is activated.
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def require_py_spy() -> str:
    """The path of ``py-spy``; a clear error naming the install step when it is missing."""
    found = find_py_spy()
    if found is None:
        raise BenchmarkError(
            f"py-spy is not installed ({sys.executable} -m pip install py-spy): {INSTALL_HINT}"
        )
    return found


def wrk_version(wrk: str) -> str:
    """``wrk -v``'s first words, e.g. ``wrk debian/4.1.0-3+b2``."""
    done = subprocess.run([wrk, "-v"], check=False, capture_output=True, text=True, timeout=10)
    return done.stdout.split("[")[0].strip()
