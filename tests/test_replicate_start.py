"""What ``replicate`` and ``verify`` pay before their first request, which no output shows.

A command runs ``replicate`` on every push, so its start is part of every mirror's lag:

* it must not import the daemon (config with yaml and croniter, trio, Quart, Hypercorn);
* its two S3 clients parse botocore's S3 model once between them, while each side keeps the
  profile, keys and region it was given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from s3syncer.replicate.arguments import SideConfig
from s3syncer.replicate.sides import RequestCounter, SharedLoader, make_client

# Prints the modules a run of the console script's entry point has loaded, after it.
PROBE = """\
import sys
from s3syncer.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print("modules:", *sorted(sys.modules), file=sys.stderr)
sys.exit(code)
"""
# Runs the console script's entry point; an atexit hook says whether the interpreter tore down.
EXIT_PROBE = """\
import atexit, sys
atexit.register(lambda: print("torn down", file=sys.stderr))
from s3syncer.cli.main import entry
entry()
"""
DAEMON_MODULES = {
    "trio",
    "quart",
    "quart_trio",
    "hypercorn",
    "yaml",
    "croniter",
    "s3syncer.model.config",
    "s3syncer.config.checker",
    "s3syncer.config.commands",
    "s3syncer.config.file",
    "s3syncer.obs.logs",
    "s3syncer.exec.leftovers",
    "s3syncer.daemon.service",
}
UNREACHABLE = "http://127.0.0.1:9"  # never asked: no request is made in these tests


def _probe(probe: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``probe`` with ``args`` and ``env`` on top of an environment without AWS settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3SYNCER_"))}
    return subprocess.run(
        [sys.executable, "-c", probe, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _loaded_modules(args: list[str], env: dict[str, str]) -> tuple[int, set[str]]:
    result = _probe(PROBE, args, env)
    lines = [line for line in result.stderr.splitlines() if line.startswith("modules: ")]
    assert lines, result.stderr
    return result.returncode, set(lines[-1].split()[1:])


def _keys(side: str) -> dict[str, str]:
    prefix = f"S3SYNCER_{side.upper()}_"
    return {
        prefix + "ENDPOINT": UNREACHABLE,
        prefix + "REGION": "us-east-1",
        prefix + "AWS_ACCESS_KEY_ID": "key",
        prefix + "AWS_SECRET_ACCESS_KEY": "secret",
    }


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["replicate", "verify"])
def test_help_does_not_load_the_daemon(tool: str) -> None:
    code, modules = _loaded_modules([tool, "--help"], {})
    assert code == 0
    assert f"s3syncer.replicate.{'command' if tool == 'replicate' else 'verify'}" in modules
    assert modules.isdisjoint(DAEMON_MODULES), modules & DAEMON_MODULES


@pytest.mark.slow
def test_a_replicate_run_does_not_load_the_daemon(tmp_path: Path) -> None:
    # a run of an events file that changed nothing: both clients are made, no request is sent
    events = tmp_path / "events.json"
    events.write_text('{"command": "r", "reason": "event", "events": [], "truncated": false}')
    args = ["replicate", "--source", "s3://a", "--dest", "s3://b", "--events", str(events)]
    code, modules = _loaded_modules(args, {**_keys("source"), **_keys("dest")})
    assert code == 0
    assert {"botocore.session", "s3syncer.replicate.copier"} <= modules
    assert modules.isdisjoint(DAEMON_MODULES), modules & DAEMON_MODULES
    # botocore is all a run needs: boto3 would bring s3transfer, a tenth of a second a run
    assert modules.isdisjoint({"boto3", "s3transfer"}), modules & {"boto3", "s3transfer"}


@pytest.mark.slow
def test_a_run_exits_without_the_teardown_and_keeps_its_output_and_code(tmp_path: Path) -> None:
    # tearing the interpreter down frees all botocore loaded: 0.1 s a run, skipped
    events = tmp_path / "events.json"
    events.write_text('{"command": "r", "reason": "event", "events": [], "truncated": false}')
    keys = {**_keys("source"), **_keys("dest")}
    args = ["replicate", "--source", "s3://a", "--dest", "s3://b", "--events", str(events)]
    done = _probe(EXIT_PROBE, args, keys)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("s3syncer replicate: 0 events,")
    assert done.stdout.endswith("; ok\n")
    assert "torn down" not in done.stderr
    failed = _probe(EXIT_PROBE, [*args[:-1], str(tmp_path / "missing.json")], keys)
    assert failed.returncode == 1
    assert "cannot read events file" in failed.stderr
    assert "torn down" not in failed.stderr


@pytest.mark.slow
def test_the_other_subcommands_exit_as_usual(tmp_path: Path) -> None:
    done = _probe(EXIT_PROBE, ["check", "--config", str(tmp_path / "missing.yaml")], {})
    assert done.returncode == 2
    assert "torn down" in done.stderr  # so the checks above can fail


@pytest.mark.slow
def test_serve_does_load_the_daemon() -> None:
    # the probe sees the daemon's imports where they belong, so the checks above can fail
    code, modules = _loaded_modules(["serve", "--help"], {})
    assert code == 0
    assert {"s3syncer.model.config", "s3syncer.obs.logs"} <= modules


# --- both sides' clients -------------------------------------------------------------------


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AWS config and credentials files with a ``mirror`` profile; no AWS_* from outside."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_DATA_PATH",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("[profile mirror]\nregion = eu-west-3\n")
    (tmp_path / "credentials").write_text(
        "[mirror]\naws_access_key_id = MIRRORKEY\naws_secret_access_key = mirror-secret\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return tmp_path


@pytest.fixture
def s3_model_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every time botocore reads S3's service model file from disk."""
    from botocore.loaders import JSONFileLoader  # noqa: PLC0415

    reads: list[str] = []
    load_file = JSONFileLoader.load_file

    def counting(self: JSONFileLoader, file_path: str) -> Any:
        data = load_file(self, file_path)  # None where a search path has no such file
        if data is not None and file_path.endswith("/s3/2006-03-01/service-2"):
            reads.append(file_path)
        return data

    monkeypatch.setattr(JSONFileLoader, "load_file", counting)
    return reads


SOURCE = SideConfig(
    endpoint=UNREACHABLE, region="us-east-1", access_key="SOURCEKEY", secret_key="source-secret"
)
MIRROR = SideConfig(endpoint=UNREACHABLE, profile="mirror")


def _identities(*configs: SideConfig) -> list[Any]:
    loader = SharedLoader()
    return [make_client(config, 4, RequestCounter(), loader)[1] for config in configs]


def test_each_side_keeps_its_own_profile_and_keys_and_the_s3_model_is_read_once(
    aws_files: Path, s3_model_reads: list[str]
) -> None:
    source, mirror = _identities(SOURCE, MIRROR)
    assert source[:2] == (UNREACHABLE, "us-east-1")
    assert (source[2].access_key, source[2].secret_key) == ("SOURCEKEY", "source-secret")
    assert mirror[:2] == (UNREACHABLE, "eu-west-3")  # the profile's region
    assert (mirror[2].access_key, mirror[2].secret_key) == ("MIRRORKEY", "mirror-secret")
    assert len(s3_model_reads) == 1


def test_a_side_with_its_own_data_path_keeps_its_own_loader(
    aws_files: Path, s3_model_reads: list[str]
) -> None:
    # a profile may point botocore at other model files: that side must read them itself
    models = aws_files / "models"
    models.mkdir()
    (aws_files / "config").write_text(
        f"[profile mirror]\nregion = eu-west-3\ndata_path = {models}\n"
    )
    _source, mirror = _identities(SOURCE, MIRROR)
    assert mirror[2].access_key == "MIRRORKEY"
    assert len(s3_model_reads) == 2
