"""The deployment files agree with the CLI, the config format and each other.

- manifest/k8s.yaml: the ConfigMap's config passes `s3syncer check`; the Deployment keeps the
  invariants of spec section 7 (one replica, Recreate, probes, restricted security context, a
  grace period above s3syncer's own); every Secret value the pod needs reaches it; it uses only
  what both Kubernetes and podman's `kube play` run.
- examples/*.yaml: every example config passes `s3syncer check`; the curl that
  examples/config.yaml shows gets its 200 from a real daemon.
- Dockerfile and requirements/: ENTRYPOINT + CMD serve on 0.0.0.0:9999 with flags the CLI has;
  every PyPI file is hash-checked and the lock covers every dependency.
- examples/registry-notifications.yml and the Distribution page's block: the same, pointing at
  the Service and a command that takes events, with the Secret's token.
- examples/s3syncer.service: the shutdown budget and the pieces an operator relies on.
- tests/fixtures/distribution-2.8: the registry bodies the tests read are in the repository, so
  the README's test command runs in any clone.

The schema validation of the manifest, hadolint and `systemd-analyze verify` run in
.ci/deploy-checks; the built image and the pod in tests/container_e2e.py.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import cast
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import FIXTURES
from daemon import start_daemon
from deployment_files import (
    DOCKERFILE,
    EXAMPLES,
    NOTIFICATIONS,
    REPO,
    SYSTEMD_PAGE,
    SYSTEMD_UNIT,
    Obj,
    all_containers,
    code_blocks,
    configmap_commands,
    configmap_config,
    configmap_config_text,
    container_env,
    documented_notifications,
    example_configs,
    http_port,
    main_container,
    manifest_object,
    page_section,
    pod_spec,
    secret_string_data,
    titled_blocks,
)

CONFIG_PATH = "/etc/s3syncer/config.yaml"
SERVE_ARGS = ["serve", "--config", CONFIG_PATH, "--listen", "0.0.0.0:9999"]
PORT = 9999
UID = 10001
# shutdownGrace (default 25s) + SIGTERM->SIGKILL escalation (up to 10s).
SHUTDOWN_BUDGET_SECONDS = 35
# Variables that would change what `s3syncer check` reads.
S3SYNCER_ENV = ("S3SYNCER_CONFIG", "S3SYNCER_LISTEN", "S3SYNCER_TOKEN")
REQUIREMENTS = REPO / "requirements"


# --- helpers ---------------------------------------------------------------


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in S3SYNCER_ENV}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "s3syncer", *args],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def assert_check_passes(path: Path) -> None:
    result = run_cli("check", "--config", str(path))
    assert result.returncode == 0, (
        f"s3syncer check --config {path} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, rest = line.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    starts = [index for index, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    assert starts, "the Dockerfile has a FROM"
    return instructions[starts[-1] :]


def exec_form(keyword: str) -> list[str]:
    """The last ENTRYPOINT or CMD of the final stage, which must be a JSON array."""
    found = [rest for kw, rest in final_stage() if kw == keyword]
    assert found, f"the final stage has no {keyword}"
    value = json.loads(found[-1])
    assert isinstance(value, list), f"{keyword} must use the JSON array (exec) form"
    assert all(isinstance(item, str) for item in value)
    return cast(list[str], value)


def flags(args: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def volumes() -> dict[str, Obj]:
    return {cast(str, vol["name"]): cast(Obj, vol) for vol in pod_spec()["volumes"]}


def mounted_files(container: Obj) -> dict[str, tuple[str, str]]:
    """Absolute path in the container -> (ConfigMap name, key)."""
    files: dict[str, tuple[str, str]] = {}
    for mount in cast(list[Obj], container.get("volumeMounts", [])):
        volume = volumes()[mount["name"]]
        if "configMap" in volume:
            source = cast(Obj, volume["configMap"])
            for item in cast(list[Obj], source.get("items", [])):
                path = PurePosixPath(mount["mountPath"]) / item["path"]
                files[str(path)] = (cast(str, source["name"]), cast(str, item["key"]))
    return files


def mount_for(container: Obj, path: str) -> Obj:
    """The volume behind the longest mountPath that contains ``path``."""
    target = PurePosixPath(path)
    best: Obj | None = None
    for mount in cast(list[Obj], container.get("volumeMounts", [])):
        mount_path = PurePosixPath(mount["mountPath"])
        if (target == mount_path or mount_path in target.parents) and (
            best is None or len(str(mount_path)) > len(str(best["mountPath"]))
        ):
            best = mount
    assert best is not None, f"nothing is mounted at {path}"
    return volumes()[best["name"]]


def secret_refs(container: Obj) -> dict[str, str]:
    """Environment variable -> the key of the Secret it is read from."""
    refs: dict[str, str] = {}
    secret_name = manifest_object("Secret")["metadata"]["name"]
    for name, item in container_env(container).items():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            assert ref["name"] == secret_name, f"{name} reads another Secret: {ref['name']}"
            refs[name] = cast(str, ref["key"])
    return refs


def notifications_endpoint(block: Obj) -> Obj:
    endpoints = cast(list[Obj], block["endpoints"])
    assert len(endpoints) == 1
    return endpoints[0]


# --- (a) the ConfigMap's config ----------------------------------------------


def test_configmap_config_passes_check(tmp_path: Path) -> None:
    """The embedded config passes `s3syncer check`.

    The state dir exists only inside the pod: it is pointed at a local stand-in first; the
    mount tests below check that the pod really provides it.
    """
    text = configmap_config_text()
    config = configmap_config()
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    assert text.count(config["stateDir"]) == 1, "stateDir should appear once in the config"
    path = tmp_path / "config.yaml"
    path.write_text(text.replace(config["stateDir"], str(state_dir)), encoding="utf-8")
    assert_check_passes(path)


def test_configmap_config_uses_only_config_keys_and_no_secret() -> None:
    config = configmap_config()
    assert set(config) <= {"listen", "stateDir", "shutdownGrace", "commands"}
    assert "auth" not in config, "the token comes from the Secret (S3SYNCER_TOKEN), never here"
    for command in config["commands"]:
        for name in command.get("env", {}):
            secret = re.search(r"KEY|SECRET|TOKEN|PASSWORD", name)
            assert not secret, f"{name} belongs in the Secret"


def test_configmap_keeps_the_mirror_with_one_command_both_ways() -> None:
    """`replicate` is the only command that writes the mirror: on the registry's events it
    copies what they name, and at start and on reconcile it makes the full pass that finds a
    lost notification. No sync of the registry's bucket runs beside it (docs/replicate.md: "Why
    not rclone sync beside it"); its settings are the replicate page's recommended ones."""
    commands = configmap_commands()
    assert set(commands) == {"replicate", "verify"}
    replicate, verify = commands["replicate"], commands["verify"]
    example = yaml.safe_load((EXAMPLES / "replicate.yaml").read_text(encoding="utf-8"))
    recommended = {command["name"]: command for command in example["commands"]}
    assert replicate["cmd"] == verify["cmd"] == "/opt/s3syncer/bin/s3syncer"
    args = replicate["args"]
    assert args[0] == "replicate"
    for flag in ("--source", "--dest"):
        assert args[args.index(flag) + 1].startswith("s3://")
    assert "--delete" in args, "tag deletes reach the mirror, after their window"
    assert "--all" not in args, "an event run copies what its events name, not everything"
    assert "--keep-deleted" not in args, "the default window: a deleted tag stays 7 days"
    assert replicate["runOnStart"] is True, "a new pod covers pushes made while none ran"
    for key in ("reconcile", "timeout", "events"):
        assert replicate[key] == recommended["replicate"][key], key
    assert replicate["retry"]["attempts"] >= 1
    # verify is read-only: the same stores, proved nightly, started by no webhook
    assert verify["args"][0] == "verify"
    for flag in ("--source", "--dest"):
        assert verify["args"][verify["args"].index(flag) + 1] == args[args.index(flag) + 1]
    assert verify["env"] == replicate["env"]
    for key in ("runAt", "timeout", "events"):
        assert verify[key] == recommended["verify"][key], key


def test_no_rclone_in_the_pod() -> None:
    """Nothing runs rclone, so nothing in the pod configures it."""
    config = configmap_config_text()
    assert "rclone" not in config.lower(), "a sync of the registry's bucket beside replicate"
    names = list(container_env(main_container()))
    for command in configmap_commands().values():
        names += command.get("env", {})
    assert not [name for name in names if name.startswith("RCLONE_")], names


def test_replicate_and_verify_get_their_keys_from_the_secret() -> None:
    refs = secret_refs(main_container())
    for name in ("replicate", "verify"):
        command = configmap_commands()[name]
        for side in ("SOURCE", "DEST"):
            assert f"S3SYNCER_{side}_ENDPOINT" in command["env"], name
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                assert f"S3SYNCER_{side}_{key}" in refs


# --- (b) the example configs ------------------------------------------------


def test_the_tests_read_their_registry_bodies_from_the_clone() -> None:
    """The README's test command runs in any clone, not only next to a ../shared folder."""
    default = REPO / "tests" / "fixtures" / "distribution-2.8"
    overridden = "S3SYNCER_FIXTURES" in os.environ  # a bool: a failure must not print the env
    assert overridden or default == FIXTURES, FIXTURES
    bodies = sorted(default.glob("*.json"))
    assert {"02-push-manifest-tag-v1.json", "05-push-manifest-tag-latest.json"} <= {
        body.name for body in bodies
    }
    for body in bodies:  # exact bodies the registry sent: every one an envelope of events
        assert isinstance(json.loads(body.read_bytes())["events"], list), body.name


def test_examples_exist() -> None:
    assert example_configs(), f"no example config (*.yaml) in {EXAMPLES}"


@pytest.mark.parametrize("path", example_configs(), ids=lambda path: path.name)
def test_example_config_passes_check(path: Path) -> None:
    assert_check_passes(path)


def test_replicate_page_pairing_is_the_replicate_example() -> None:
    """The replicate page's one-command setup (replicate + verify) is examples/replicate.yaml."""
    blocks = code_blocks(page_section("replicate.md", "One command, both ways"), "yaml")
    assert len(blocks) == 1
    example = yaml.safe_load((EXAMPLES / "replicate.yaml").read_text(encoding="utf-8"))
    assert yaml.safe_load(blocks[0]) == example


def shipped_configs() -> dict[str, Obj]:
    """Every s3syncer config the project ships or a page tells the operator to write."""
    configs = {
        path.name: yaml.safe_load(path.read_text(encoding="utf-8"))
        for path in EXAMPLES.glob("*.yaml")
    }
    configs["manifest/k8s.yaml"] = configmap_config()
    for block in code_blocks(page_section(SYSTEMD_PAGE, "Running under systemd"), "yaml"):
        configs["docs: Running under systemd"] = yaml.safe_load(block)
    for page in ("walkthroughs/systemd.md", "restore.md"):
        configs[f"docs/{page}"] = yaml.safe_load(titled_blocks(page)["/etc/s3syncer/config.yaml"])
    return configs


def shipped_s3syncer_commands(*tools: str) -> list[tuple[str, Obj]]:
    """(where, command) for each shipped command that runs ``s3syncer TOOL``."""
    return [
        (where, command)
        for where, config in shipped_configs().items()
        for command in config.get("commands", [])
        if command.get("args", [None])[0] in tools and command["cmd"].endswith("s3syncer")
    ]


def test_every_shipped_replicate_and_verify_command_has_a_timeout() -> None:
    """A stalled store fails each request only after about 6 minutes (botocore's 60 s, 5
    times), `--jobs` requests at a time: the daemon's `timeout` is what ends such a run."""
    commands = shipped_s3syncer_commands("replicate", "verify")
    assert len(commands) >= 4, commands
    for where, command in commands:
        assert "timeout" in command, f"{where}: {command['name']} has no timeout"


def test_every_shipped_mirror_is_kept_by_one_replicate_command() -> None:
    """Wherever a config mirrors a registry, one `replicate` does both jobs: it takes the
    events and makes a full pass at start and on reconcile, so a lost notification is found
    within `reconcile`; and no other command writes the mirror (an rclone sync beside it races
    its writes and deletes its new objects: docs/replicate.md)."""
    configs = shipped_configs()
    replicates = shipped_s3syncer_commands("replicate")
    assert {where for where, _ in replicates} >= {
        "replicate.yaml",
        "manifest/k8s.yaml",
        "docs: Running under systemd",
        "docs/walkthroughs/systemd.md",
        "docs/restore.md",
    }, replicates
    for where, command in replicates:
        name = f"{where}: {command['name']}"
        assert command.get("events"), f"{name} takes the registry's events"
        assert command.get("runOnStart") is True, f"{name}: no full pass at start"
        assert command.get("reconcile"), f"{name}: no full pass on reconcile"
        assert "--all" not in command["args"], f"{name}: every event run would copy everything"
        for other in configs[where]["commands"]:
            argv = " ".join([other["cmd"], *other.get("args", [])])
            assert not re.search(r"\b(rclone|mc)\b", argv), f"{where}: {argv} beside replicate"


def documented_curl() -> list[str]:
    """The curl command in examples/config.yaml's header comment, as argv."""
    lines = (EXAMPLES / "config.yaml").read_text(encoding="utf-8").splitlines()
    comment = " ".join(line.lstrip("# ").rstrip() for line in lines if line.startswith("#"))
    match = re.search(r"(curl .*?)(?=$|\s{2,}\S+:)", comment.replace("\\ ", ""))
    assert match, "examples/config.yaml shows a curl command"
    return shlex.split(match.group(1))


@pytest.mark.integration
def test_documented_curl_gets_200_from_a_real_daemon(tmp_path: Path) -> None:
    """The example's curl, headers and body as written, is accepted (not 415)."""
    argv = documented_curl()
    headers = dict(
        cast(tuple[str, str], tuple(part.strip() for part in argv[i + 1].split(":", 1)))
        for i, arg in enumerate(argv)
        if arg == "-H"
    )
    body_file = argv[argv.index("--data-binary") + 1].removeprefix("@")
    path = urlsplit(argv[-1]).path
    name = path.rsplit("/", 1)[1]
    config = f"commands:\n  - {{name: {name}, cmd: 'true', delay: 1h}}\n"
    with start_daemon(tmp_path, config) as daemon:
        status, _, answer = daemon.post(path, (REPO / body_file).read_bytes(), headers)
    assert status == 200, answer
    assert json.loads(answer)["accepted"] == 1


# --- (c) the Dockerfile and what it installs ----------------------------------


def test_dockerfile_serves_on_all_interfaces_with_the_mounted_config() -> None:
    entrypoint, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    assert entrypoint[:2] == ["/usr/bin/tini", "--"], "tini is PID 1"
    assert entrypoint[2] == "s3syncer"
    assert entrypoint[3:] + cmd == SERVE_ARGS


def test_dockerfile_serve_flags_are_accepted_by_the_cli() -> None:
    args = exec_form("ENTRYPOINT")[3:] + exec_form("CMD")
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    for flag in flags(args):
        assert flag in result.stdout, f"`s3syncer serve --help` does not mention {flag}"


def test_deployment_args_are_accepted_by_the_cli() -> None:
    args = cast(list[str], main_container().get("args", SERVE_ARGS))
    assert main_container().get("command") is None, "keep the image's tini entrypoint"
    assert args[0] == "serve"
    assert args[args.index("--config") + 1] == CONFIG_PATH
    assert args[args.index("--listen") + 1] == f"0.0.0.0:{PORT}"
    if "--log-format" in args:
        assert args[args.index("--log-format") + 1] in ("text", "json")
    result = run_cli("serve", "--help")
    assert result.returncode == 0, result.stderr
    for flag in flags(args):
        assert flag in result.stdout, f"`s3syncer serve --help` does not mention {flag}"


def test_dockerfile_runtime_stage() -> None:
    stage = final_stage()
    assert ("USER", f"{UID}:{UID}") in stage, "runs as uid/gid 10001"
    assert ("EXPOSE", str(PORT)) in stage
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"sha256sum\s+--check", text), "mc is verified against its checksum"
    assert re.search(r"^ARG MC_RELEASE=RELEASE\.", text, re.MULTILINE), "mc is pinned"
    assert re.search(r"^ARG SYNC_CLIENT=rclone$", text, re.MULTILINE), "rclone by default"


def test_every_pip_install_from_pypi_checks_hashes() -> None:
    """A pip install of a requirements file is hash-checked; the others install local wheels."""
    for keyword, rest in dockerfile_instructions():
        if keyword != "RUN":
            continue
        for step in rest.split("&&"):
            if re.search(r"\bpip\b.*\binstall\b", step):
                assert "--require-hashes" in step or "/wheels/" in step, step
            if re.search(r"\bpip\b.*\bwheel\b", step):
                assert "--no-build-isolation" in step, f"isolation fetches unpinned: {step}"


def locked(path: Path) -> dict[str, list[str]]:
    """Package name -> its ``--hash`` values in a requirements file made by ``uv pip compile``."""
    packages: dict[str, list[str]] = {}
    current = canonicalize_name("")
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.lstrip().startswith("--hash="):
            packages[current].append(line.split("=", 1)[1].rstrip(" \\"))
            continue
        requirement = Requirement(line.rstrip(" \\").split(";")[0])
        assert str(requirement.specifier).startswith("=="), f"{path.name}: not pinned: {line}"
        current = canonicalize_name(requirement.name)
        packages.setdefault(current, [])
    return packages


def test_requirements_lock_every_dependency_with_hashes() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["replicate"]]
    image = locked(REQUIREMENTS / "image.txt")
    for spec in wanted:
        name = canonicalize_name(Requirement(spec).name)
        assert name in image, (
            f"{name} is missing from requirements/image.txt; regenerate it with the command "
            "in its header"
        )
    build = locked(REQUIREMENTS / "build.txt")
    for spec in pyproject["build-system"]["requires"]:
        assert canonicalize_name(Requirement(spec).name) in build
    for package, hashes in {**image, **build}.items():
        assert hashes and all(h.startswith("sha256:") for h in hashes), package


def test_boto3_hint_names_an_install_that_works(tmp_path: Path) -> None:
    """Without boto3 (botocore with it), `s3syncer replicate` names the install-from-clone form,
    which exists."""
    events = tmp_path / "events.json"
    events.write_text('{"command": "r", "reason": "event", "events": [], "truncated": false}')
    hide_boto3 = (
        "import sys; sys.modules['boto3'] = sys.modules['botocore'] = None; "
        "from s3syncer.cli.main import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    args = ["replicate", "--source", "s3://a", "--dest", "s3://b", "--events", str(events)]
    result = subprocess.run(
        [sys.executable, "-c", hide_boto3, *args],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "boto3 is not installed" in result.stderr
    assert "pip install '.[replicate]'" in result.stderr
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["replicate"]
    assert any(Requirement(spec).name == "boto3" for spec in extra)


# --- (d) manifest invariants ------------------------------------------------


def test_one_replica_recreated_never_rolled() -> None:
    spec = manifest_object("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"


def test_probes() -> None:
    container = main_container()
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert http_port(container, http_get["port"]) == PORT


def test_grace_period_exceeds_shutdown() -> None:
    assert pod_spec()["terminationGracePeriodSeconds"] > SHUTDOWN_BUDGET_SECONDS


def test_restricted_security_context() -> None:
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == UID
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod_spec().get("automountServiceAccountToken") is False
    for container in all_containers():
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True, container["name"]
        assert context["runAsUser"] == UID, container["name"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"]["drop"] == ["ALL"], container["name"]
        assert context["seccompProfile"]["type"] == "RuntimeDefault", container["name"]
        assert "resources" in container and "limits" in container["resources"]


def test_prometheus_annotations_and_service() -> None:
    annotations = manifest_object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    service = manifest_object("Service")
    assert [port["port"] for port in service["spec"]["ports"]] == [PORT]
    labels = manifest_object("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()


def test_only_volumes_that_podman_kube_play_fills() -> None:
    """podman 4.3 runs no projected volumes and leaves secret volumes empty."""
    for name, volume in volumes().items():
        kinds = set(volume) - {"name"}
        assert kinds <= {"configMap", "emptyDir"}, f"volume {name}: {kinds}"


def test_pod_provides_the_config_and_the_token() -> None:
    files = mounted_files(main_container())
    assert files.get(CONFIG_PATH) == ("s3syncer", "config.yaml")
    assert secret_refs(main_container()).get("S3SYNCER_TOKEN") == "token"


def test_every_secret_value_reaches_the_pod_and_nothing_else_is_asked() -> None:
    used = set(secret_refs(main_container()).values())
    placeholders = secret_string_data()
    assert used == set(placeholders), "Secret keys and secretKeyRefs differ"
    for key, value in placeholders.items():
        assert value.startswith("CHANGE-ME"), f"{key}: a real secret in the manifest?"


def test_writable_paths_are_emptydirs() -> None:
    container = main_container()
    config = configmap_config()
    writable = ["/tmp", config["stateDir"]]
    writable += [command["workdir"] for command in config["commands"] if "workdir" in command]
    for path in writable:
        assert "emptyDir" in mount_for(container, path), f"{path} must be a writable emptyDir"


# --- the registry's notifications snippet -----------------------------------


def test_distribution_page_shows_the_notifications_snippet() -> None:
    with NOTIFICATIONS.open(encoding="utf-8") as handle:
        snippet = cast(Obj, yaml.safe_load(handle))["notifications"]
    assert documented_notifications() == snippet


def test_notifications_point_at_the_service_and_a_command() -> None:
    with NOTIFICATIONS.open(encoding="utf-8") as handle:
        endpoint = notifications_endpoint(cast(Obj, yaml.safe_load(handle))["notifications"])
    # Required per endpoint in Distribution's configuration reference.
    for key in ("name", "url", "headers", "timeout", "threshold", "backoff"):
        assert key in endpoint, f"notifications endpoint lacks {key}"
    url = urlsplit(endpoint["url"])
    service = manifest_object("Service")["metadata"]
    assert url.hostname == f"{service['name']}.{service['namespace']}.svc"
    assert url.port == PORT
    prefix, _, name = url.path.rpartition("/")
    assert prefix == "/trigger"
    assert configmap_commands()[name]["events"], f"{name} must take events"
    token = secret_string_data()["token"]
    assert endpoint["headers"]["Authorization"] == [f"Bearer {token}"]
    assert "pull" in endpoint["ignore"]["actions"]
    # Registry 2.8 applies ignore.actions only when a media type is ignored too.
    assert endpoint["ignoredmediatypes"] or endpoint["ignore"].get("mediatypes")


# --- the systemd unit ---------------------------------------------------------


def systemd_service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(SYSTEMD_UNIT.read_text(encoding="utf-8"))
    return parser["Service"]


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, f"{value}: use s or min"
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def test_systemd_page_config_passes_the_page_check_as_written(tmp_path: Path) -> None:
    """The systemd section's `s3syncer check` line, run as root runs it, accepts its config.

    The config names the token under /run/credentials/, which exists only inside the
    service: a check that reads it there fails before the operator ever starts the unit.
    """
    section = page_section(SYSTEMD_PAGE, "Running under systemd")
    install = code_blocks(section, "sh")[0].splitlines()
    lines = [line for line in install if "s3syncer check" in line]
    assert len(lines) == 1, install
    etc = tmp_path / "etc-s3syncer"
    etc.mkdir()
    (etc / "config.yaml").write_text(code_blocks(section, "yaml")[0], encoding="utf-8")
    (etc / "token").write_text("0123456789abcdef" * 4 + "\n", encoding="utf-8")
    script = lines[0].replace("/etc/s3syncer/", f"{etc}/")
    script = script.replace(
        "/opt/s3syncer/bin/s3syncer", str(Path(sys.executable).parent / "s3syncer")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("S3SYNCER_")}
    result = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK, 2 commands" in result.stdout and "auth: token required" in result.stdout


def test_systemd_unit_stops_within_its_timeout() -> None:
    """systemd must not SIGKILL before s3syncer's own shutdown (grace + kill grace) is over."""
    service = systemd_service()
    assert seconds(service["TimeoutStopSec"]) > SHUTDOWN_BUDGET_SECONDS
    # SIGTERM to s3syncer only: it stops its commands itself, after shutdownGrace.
    assert service["KillMode"] == "mixed"


def test_systemd_unit_runs_the_documented_install() -> None:
    service = systemd_service()
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/s3syncer/bin/s3syncer"
    assert argv[1] == "serve"
    assert argv[argv.index("--config") + 1] == CONFIG_PATH
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["DynamicUser"] == "yes" or "User" in service
    assert service["StateDirectory"] == "s3syncer", "stateDir: /var/lib/s3syncer"


def test_systemd_unit_restarts_a_daemon_killed_by_sighup() -> None:
    """systemd counts a death by SIGHUP as clean: Restart=on-failure alone would leave it down.

    s3syncer catches SIGHUP from its first line of Python; before that (the interpreter's
    own start, a few tens of ms) `systemctl start && systemctl reload` can still kill it.
    """
    assert "SIGHUP" in systemd_service()["RestartForceExitStatus"].split()
