"""A run's result file: what a full pass found reaches /status, the page and /metrics.

A command may write ``{"fullPass": true, "tags": {...}}`` to ``S3SYNCER_RESULT_FILE``;
the daemon reads it once the run ended, and a bad file changes nothing but a log line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from s3syncer.engine.runner import Runner
from s3syncer.engine.view import command_view
from s3syncer.exec.process import ProcessLauncher
from s3syncer.model.config import CommandConfig
from s3syncer.model.event_log import EventLog
from s3syncer.model.pass_report import RESULT_FILE_LIMIT, PassReport
from s3syncer.model.run import RunRequest, RunResult, Trigger
from s3syncer.obs.metrics import Metrics
from s3syncer.web.page import render_status_page
from s3syncer.web.status import command_status

FOUND = {"checked": 120, "repaired": 1, "deleted": 0, "kept": 2}


def python(script: str) -> CommandConfig:
    """A command running a Python ``script`` (dedented)."""
    return CommandConfig(name="job", cmd=sys.executable, args=("-c", textwrap.dedent(script)))


async def launch(cmd: CommandConfig, events_dir: Path) -> RunResult:
    """Run ``cmd`` once, bounded; the run directory is empty again afterwards."""
    launcher = ProcessLauncher(kill_grace=1.0, events_dir=str(events_dir))
    request = RunRequest(run_id=7, reason="reconcile", events=EventLog(), triggers=1)
    with trio.fail_after(20):
        result = await launcher(cmd, request)
    assert leftovers(events_dir) == [], "a run's file outlived it"
    return result


def leftovers(directory: Path) -> list[Path]:
    """What ``directory`` holds (a tiny local directory: no thread needed)."""
    return list(directory.iterdir())


def writes(text: str) -> CommandConfig:
    """A command that writes ``text`` to its result file and exits 0."""
    return python(
        f"""
        import os
        with open(os.environ["S3SYNCER_RESULT_FILE"], "w") as f:
            f.write({text!r})
        """
    )


async def test_a_full_pass_reported_in_the_result_file_reaches_the_result(tmp_path: Path) -> None:
    document = json.dumps({"fullPass": True, "tags": {**FOUND, "future": 3}})
    result = await launch(writes(document), tmp_path)
    assert result.ok
    assert result.report == PassReport(True, FOUND)  # an unknown count is left out


async def test_a_run_that_writes_no_result_file_has_no_report(tmp_path: Path) -> None:
    result = await launch(python("import os; print(os.environ['S3SYNCER_RESULT_FILE'])"), tmp_path)
    assert result.ok and result.report is None
    # It is named beside the events file, in the private run directory.
    assert result.output_tail.startswith(str(tmp_path))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "Expecting value"),
        ('{"fullPass": "yes"}', '"fullPass" is not true or false'),
        ('{"tags": {"repaired": -1}}', '"tags.repaired" is not a count'),
        ('{"tags": {"kept": 1.5}}', '"tags.kept" is not a count'),
        ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
        (" " * RESULT_FILE_LIMIT + "{}", f"over {RESULT_FILE_LIMIT} bytes"),
    ],
)
async def test_a_bad_result_file_is_logged_once_and_changes_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, why: str
) -> None:
    caplog.set_level(logging.WARNING, logger="s3syncer")
    result = await launch(writes(text), tmp_path)
    assert result.ok and result.report is None  # the exit code alone says how it ended
    [line] = [r.getMessage() for r in caplog.records if "result file" in r.getMessage()]
    assert line.startswith("job: run 7: its result file is ignored: ") and why in line


async def test_a_result_file_that_is_a_symlink_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path.parent / f"{tmp_path.name}-secret.json"
    secret.write_text(json.dumps({"fullPass": True, "tags": FOUND}))
    script = f"import os; os.symlink({str(secret)!r}, os.environ['S3SYNCER_RESULT_FILE'])"
    result = await launch(python(script), tmp_path)
    assert result.report is None
    assert secret.exists()  # and it is left where it was


async def test_the_last_full_pass_shows_in_status_on_the_page_and_in_metrics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reports = [PassReport(True, FOUND), PassReport(False, {"checked": 1}), None]

    async def fake(command: CommandConfig, request: RunRequest) -> RunResult:
        await trio.sleep(1)
        return RunResult(exit_code=0, report=reports[request.run_id - 1])

    metrics = Metrics()
    runner = Runner(CommandConfig(name="replicate", cmd="/bin/true"), fake, metrics=metrics)
    metrics.add_command("replicate")
    text = metrics.render().decode()
    assert "s3syncer_last_full_pass_tags{" not in text  # born with the first full pass
    async with trio.open_nursery() as nursery:
        await nursery.start(runner.run)
        for _ in reports:  # a full pass, then an event run's report, then none
            runner.send_channel.send_nowait(Trigger("manual", immediate=True))
            await trio.sleep(10)
        runner.stop()
    view = command_view(runner, trio.current_time(), time.time())
    assert view.last_full_pass is not None and view.last_full_pass.run_id == 1
    status = command_status(view)["lastFullPass"]
    assert (status["runId"], status["ok"], status["tags"]) == (1, True, FOUND)
    page = render_status_page([view], "1.0", time.time())
    assert "<dt>last full pass</dt>" in page
    assert "120 tags checked, 1 repaired, 0 deleted, 2 kept" in page
    text = metrics.render().decode()
    assert 's3syncer_last_full_pass_tags{command="replicate",outcome="repaired"} 1.0' in text
    assert 's3syncer_last_full_pass_tags{command="replicate",outcome="checked"} 120.0' in text
    metrics.remove_command("replicate")
    lines = metrics.render().decode().splitlines()
    assert not [line for line in lines if line.startswith("s3syncer_last_full_pass")]


def test_a_report_reads_well_and_counts_only_whole_numbers() -> None:
    assert PassReport(True, {"checked": 1, "repaired": 0}).describe() == "1 tag checked, 0 repaired"
    assert PassReport(True, {}).describe() == "no tag counted"
    with pytest.raises(ValueError, match="not a JSON object"):
        PassReport.from_document([])
    with pytest.raises(ValueError, match=re.escape('"tags.checked" is not a count')):
        PassReport.from_document({"tags": {"checked": True}})
    assert os.environ.get("S3SYNCER_RESULT_FILE") is None  # the test process has none


async def test_with_a_state_dir_each_command_keeps_a_directory_of_its_own(tmp_path: Path) -> None:
    events, state = tmp_path / "events", tmp_path / "state"
    events.mkdir()
    keep = python(
        """
        import os, pathlib
        place = pathlib.Path(os.environ["S3SYNCER_STATE_DIR"])
        print(place, oct(place.stat().st_mode & 0o777), sorted(p.name for p in place.iterdir()))
        (place / "cache").write_text("kept")
        """
    )
    launcher = ProcessLauncher(kill_grace=1.0, events_dir=str(events), state_dir=str(state))
    with trio.fail_after(20):
        first = await launcher(keep, RunRequest(1, "reconcile", EventLog(), triggers=1))
        second = await launcher(keep, RunRequest(2, "reconcile", EventLog(), triggers=1))
    place = state / "commands" / "job"
    assert first.output_tail == f"{place} 0o700 []\n"
    assert second.output_tail == f"{place} 0o700 ['cache']\n"  # it lasts from run to run


async def test_without_a_state_dir_a_command_is_given_none(tmp_path: Path) -> None:
    result = await launch(
        python("import os; print(os.environ.get('S3SYNCER_STATE_DIR'))"), tmp_path
    )
    assert result.output_tail == "None\n"
