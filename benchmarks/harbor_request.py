"""One Harbor request naming 1,900 artifacts (308 KB): the journal it writes, and the time.

    .venv/bin/python -m benchmarks.harbor_request

In process: parse the request, record its events in a journal in a temporary directory,
flush it, and print the request's size, the events, the journal's size and the time taken.
Each event once carried the whole request as ``raw`` (issue 28: 889 MB of journal for one
such request); now each carries the request narrowed to its own artifact.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import trio

from s3syncer.durable.journal import Journal
from s3syncer.formats.detect import parse_request

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/harbor/01-push-artifact-tag.json"
ARTIFACTS = 1900


def main() -> None:
    """Measure once and print one line."""
    payload = json.loads(FIXTURE.read_bytes())
    payload["event_data"]["resources"] = [
        {
            "digest": f"sha256:{i:064x}",
            "tag": f"v{i}",
            "resource_url": f"hub.harbor.com/test-webhook/debian:v{i}",
        }
        for i in range(ARTIFACTS)
    ]
    body = json.dumps(payload).encode()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "push.json"
        started = time.perf_counter()
        events = parse_request({"content-type": "application/json"}, body).events
        journal = Journal(path)
        journal.record(events)
        trio.run(journal.flush)
        took = time.perf_counter() - started
        size = path.stat().st_size
    print(
        f"request {len(body) / 1e3:.0f} KB, {len(events)} events, "
        f"journal {size / 1e6:.2f} MB, {took * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
