"""``s3syncer run NAME``: an operator's manual run, through the same runner as a trigger."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon import Recorder, run_s3syncer, start_daemon
from waiting import free_port

pytestmark = pytest.mark.integration

TOKEN = "manual-run-token"


def test_s3syncer_run_asks_the_daemon_for_a_manual_run(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "push")
    config = (
        f"auth: {{token: {TOKEN}}}\ncommands:\n"
        + recorder.command_yaml("push", delay="100ms")
        + '  - {"name": "off", "cmd": "true", "disable": true}\n'
    )
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with start_daemon(tmp_path, config) as daemon:
        done = run_s3syncer(["run", "push", "--url", daemon.url, "--token-file", str(token_file)])
        assert done.returncode == 0, done.stderr
        assert "push: run requested (202)" in done.stdout
        [run] = recorder.wait_starts(1)
        assert run["reason"] == "manual"
        assert run["events"]["events"] == []

        by_env = run_s3syncer(["run", "push", "--url", daemon.url], env={"S3SYNCER_TOKEN": TOKEN})
        assert by_env.returncode == 0, by_env.stderr
        recorder.wait_starts(2)

        wrong = run_s3syncer(["run", "push", "--url", daemon.url], env={"S3SYNCER_TOKEN": "nope"})
        assert wrong.returncode == 1
        assert "401" in wrong.stderr
        assert TOKEN not in wrong.stderr + wrong.stdout

        auth = ["--url", daemon.url, "--token-file", str(token_file)]
        unknown = run_s3syncer(["run", "nope", *auth])
        assert (unknown.returncode, "404" in unknown.stderr) == (1, True)
        disabled = run_s3syncer(["run", "off", *auth])
        assert (disabled.returncode, "409" in disabled.stderr) == (1, True)
    assert len(recorder.starts()) == 2


def test_s3syncer_run_says_when_no_daemon_answers() -> None:
    done = run_s3syncer(["run", "push", "--url", f"http://127.0.0.1:{free_port()}"])
    assert done.returncode == 1
    assert "Connection refused" in done.stderr
