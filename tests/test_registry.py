"""End to end: a real Distribution registry notifies a real ``s3syncer serve``.

Debian's ``docker-registry`` runs on loopback with its ``notifications``
endpoint pointing at the daemon; ``skopeo`` pushes small OCI images into it.
What the registry sends, the daemon decides on: only tagged manifest pushes
run the command, once per burst, after the push.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import Daemon, Recorder, start_daemon
from registry_harness import (
    Registry,
    make_oci_layout,
    manifest_digest,
    require_tools,
    run_registry,
    skopeo_delete,
    skopeo_push,
)
from waiting import wait_until

pytestmark = pytest.mark.integration

TOKEN = "registry-to-s3syncer-token"
DELAY = 0.5


@pytest.fixture
def recorder(tmp_path: Path) -> Recorder:
    """The mirror command: records each run and the events it was given."""
    return Recorder(tmp_path / "runs")


@pytest.fixture
def daemon(tmp_path: Path, recorder: Recorder) -> Iterator[Daemon]:
    """s3syncer serving one command, ``push``, behind a token."""
    require_tools()
    config = f"auth: {{token: {TOKEN}}}\ncommands:\n" + recorder.command_yaml(
        "push", delay=f"{int(DELAY * 1000)}ms"
    )
    with start_daemon(tmp_path, config) as running:
        yield running


@pytest.fixture
def registry(tmp_path: Path, daemon: Daemon) -> Iterator[Registry]:
    """A registry whose notifications go to the daemon's ``/trigger/push`` with the token."""
    with run_registry(
        tmp_path / "registry", notify_url=f"{daemon.url}/trigger/push", token=TOKEN
    ) as running:
        yield running


def _metric(daemon: Daemon, name: str, **labels: str) -> float:
    _, _, body = daemon.get("/metrics")
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.decode().splitlines():
        if line.startswith(f"{name}{{") and _labels(line) == wanted:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _labels(line: str) -> str:
    inside = line[line.index("{") + 1 : line.index("}")]
    return ",".join(sorted(inside.split(",")))


def _settled(daemon: Daemon, accepted: int, ignored: int) -> bool:
    """Whether the daemon has answered the registry's notifications we wait for."""
    return (
        _metric(daemon, "s3syncer_triggers_total", command="push", outcome="accepted") >= accepted
        and _metric(daemon, "s3syncer_triggers_total", command="push", outcome="ignored") >= ignored
    )


def _targets(run: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    events = run["events"]["events"]
    return [(e["action"], e["target"]["repository"], e["target"].get("tag")) for e in events]


def test_a_tagged_push_runs_the_command_exactly_once_after_the_manifest_push(
    tmp_path: Path, daemon: Daemon, registry: Registry, recorder: Recorder
) -> None:
    layout = make_oci_layout(tmp_path / "image", tag="v1", payload=b"layer one")
    pushed_at = time.time()
    skopeo_push(layout, registry.addr, "team/app:v1")
    pushed = time.time()

    [run] = recorder.wait_starts(1, timeout=20)
    assert run["reason"] == "event"
    assert _targets(run) == [("push", "team/app", "v1")]
    manifest = run["events"]["events"][0]
    assert manifest["target"]["digest"] == manifest_digest(layout, "v1")
    assert run["events"]["truncated"] is False
    # The blob pushes came first and were answered 200 but ignored.
    wait_until(lambda: _settled(daemon, accepted=1, ignored=2), timeout=10)
    assert run["time"] >= pushed_at + DELAY
    recorder.wait_ends(1)

    # Exactly once: give a second run every chance to appear (several quiet periods), then
    # look. This is the one fixed wait here: it proves an absence, which no condition can.
    time.sleep(max(4 * DELAY, pushed + 4 * DELAY - time.time()))
    assert len(recorder.starts()) == 1
    assert "refused" not in daemon.log_text()


def test_untagged_pushes_pulls_and_deletes_do_not_run_it_and_a_retag_does(
    tmp_path: Path, daemon: Daemon, registry: Registry, recorder: Recorder
) -> None:
    layout = make_oci_layout(tmp_path / "image", tag="v1", payload=b"by digest")
    digest = manifest_digest(layout, "v1")
    skopeo_push(layout, registry.addr, f"other/svc@{digest}")  # a push by digest: no tag
    wait_until(lambda: _settled(daemon, accepted=0, ignored=3), timeout=10)

    skopeo_push(layout, registry.addr, "team/app:v2")  # pulls (HEADs) and a tagged push
    [run] = recorder.wait_starts(1, timeout=20)
    assert _targets(run) == [("push", "team/app", "v2")]
    recorder.wait_ends(1)

    wait_until(lambda: _settled(daemon, accepted=1, ignored=5), timeout=10)  # + 2 blobs
    ignored_before = _metric(daemon, "s3syncer_triggers_total", command="push", outcome="ignored")
    skopeo_delete(registry.addr, "team/app:v2")  # a manifest delete and a tag delete
    wait_until(lambda: _settled(daemon, accepted=1, ignored=int(ignored_before) + 2), timeout=10)
    time.sleep(4 * DELAY)  # as above: an absence, checked after several quiet periods
    assert len(recorder.starts()) == 1


def test_a_registry_with_a_wrong_token_is_refused_and_nothing_runs(
    tmp_path: Path, daemon: Daemon, recorder: Recorder
) -> None:
    layout = make_oci_layout(tmp_path / "image", tag="v1", payload=b"token")
    with run_registry(
        tmp_path / "registry", notify_url=f"{daemon.url}/trigger/push", token="wrong"
    ) as registry:
        skopeo_push(layout, registry.addr, "team/app:v1")
        daemon.wait_for_log("refused '/trigger/push': 401", timeout=10)
        assert recorder.starts() == []
    assert TOKEN not in daemon.log_text()
    assert "wrong" not in daemon.log_text().replace("wrong token", "")
