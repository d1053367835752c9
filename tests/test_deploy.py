"""The deployment files agree with the CLI, the config format and each other.

- manifest/k8s.yaml: the ConfigMap's config passes `s3syncer check`; the
  Deployment keeps the invariants of spec section 7 (one replica, Recreate,
  probes, restricted security context, a grace period above s3syncer's own);
  every file the config names is mounted where it says.
- examples/*.yaml: every example config passes `s3syncer check`.
- Dockerfile: ENTRYPOINT + CMD serve on 0.0.0.0:9999 with flags the CLI has.
- examples/registry-notifications.yml: points at the Service and a configured
  command, with the Secret's token.

The schema validation of the manifest and hadolint run in .ci/deploy-checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "manifest" / "k8s.yaml"
DOCKERFILE = REPO / "Dockerfile"
EXAMPLES = REPO / "examples"
NOTIFICATIONS = EXAMPLES / "registry-notifications.yml"

CONFIG_PATH = "/etc/s3syncer/config.yaml"
SERVE_ARGS = ["serve", "--config", CONFIG_PATH, "--listen", "0.0.0.0:9999"]
PORT = 9999
UID = 10001
# shutdownGrace (default 25s) + SIGTERM->SIGKILL escalation (up to 10s).
SHUTDOWN_BUDGET_SECONDS = 35
# Variables that would change what `s3syncer check` reads.
S3SYNCER_ENV = ("S3SYNCER_CONFIG", "S3SYNCER_LISTEN", "S3SYNCER_TOKEN")

Obj = dict[str, Any]


# --- helpers ---------------------------------------------------------------


def manifest_objects() -> list[Obj]:
    with MANIFEST.open(encoding="utf-8") as handle:
        return [cast(Obj, doc) for doc in yaml.safe_load_all(handle) if doc]


def manifest_object(kind: str) -> Obj:
    found = [obj for obj in manifest_objects() if obj.get("kind") == kind]
    assert len(found) == 1, f"{MANIFEST} should hold exactly one {kind}, has {len(found)}"
    return found[0]


def pod_spec() -> Obj:
    return cast(Obj, manifest_object("Deployment")["spec"]["template"]["spec"])


def main_container() -> Obj:
    containers = cast(list[Obj], pod_spec()["containers"])
    assert len(containers) == 1, "one container: s3syncer"
    return containers[0]


def all_containers() -> list[Obj]:
    spec = pod_spec()
    return cast(list[Obj], spec.get("initContainers", [])) + cast(list[Obj], spec["containers"])


def configmap_config_text() -> str:
    data = cast(Obj, manifest_object("ConfigMap")["data"])
    assert "config.yaml" in data, "the ConfigMap holds config.yaml"
    return cast(str, data["config.yaml"])


def configmap_config() -> Obj:
    return cast(Obj, yaml.safe_load(configmap_config_text()))


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


def mounted_files(container: Obj) -> dict[str, tuple[str, str, str]]:
    """Absolute path in the container -> (source kind, object name, key)."""
    volumes = {cast(str, vol["name"]): cast(Obj, vol) for vol in pod_spec()["volumes"]}
    files: dict[str, tuple[str, str, str]] = {}
    for mount in cast(list[Obj], container.get("volumeMounts", [])):
        volume = volumes[mount["name"]]
        base = PurePosixPath(mount["mountPath"])
        sources: list[tuple[str, Obj]] = []
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                sources.extend((kind, cast(Obj, body)) for kind, body in source.items())
        for kind in ("configMap", "secret"):
            if kind in volume:
                sources.append((kind, cast(Obj, volume[kind])))
        for kind, body in sources:
            name = cast(str, body.get("name") or body.get("secretName"))
            for item in cast(list[Obj], body.get("items", [])):
                files[str(base / item["path"])] = (kind, name, cast(str, item["key"]))
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
    volumes = {vol["name"]: cast(Obj, vol) for vol in pod_spec()["volumes"]}
    return volumes[best["name"]]


def secret_value(key: str) -> str:
    secret = manifest_object("Secret")
    string_data = cast(Obj, secret.get("stringData", {}))
    assert key in string_data, f"the Secret's stringData holds {key}"
    return cast(str, string_data[key])


def notifications_endpoints() -> list[Obj]:
    with NOTIFICATIONS.open(encoding="utf-8") as handle:
        data = cast(Obj, yaml.safe_load(handle))
    return cast(list[Obj], data["notifications"]["endpoints"])


# --- (a) the ConfigMap's config ----------------------------------------------


def test_configmap_config_passes_check(tmp_path: Path) -> None:
    """The embedded config passes `s3syncer check`.

    Paths that exist only inside the pod (the token file, the state dir) are
    pointed at local stand-ins first; the mount tests below check that the pod
    really provides them.
    """
    text = configmap_config_text()
    config = configmap_config()
    token_file = tmp_path / "token"
    token_file.write_text("test-token\n", encoding="utf-8")
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    replacements = {config["auth"]["tokenFile"]: str(token_file)}
    if "stateDir" in config:
        replacements[config["stateDir"]] = str(state_dir)
    for pod_path, local_path in replacements.items():
        assert text.count(pod_path) == 1, f"{pod_path} should appear once in the config"
        text = text.replace(pod_path, local_path)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    assert_check_passes(path)


def test_configmap_config_uses_only_spec_keys() -> None:
    config = configmap_config()
    assert set(config) <= {"listen", "auth", "stateDir", "commands"}
    assert set(config["auth"]) == {"tokenFile"}, "the token comes from the Secret, by file"
    for command in config["commands"]:
        assert set(command) <= {
            "name", "cmd", "args", "env", "workdir", "disable", "delay", "maxDelay",
            "reconcile", "runAt", "runOnStart", "timeout", "retry", "events",
        }  # fmt: skip


def test_configmap_push_command_mirrors_with_mc() -> None:
    commands = {command["name"]: command for command in configmap_config()["commands"]}
    push = commands["push"]
    assert push["cmd"] == "/usr/local/bin/mc"
    assert push["args"][0] == "mirror"
    assert push["delay"] == "5s"
    assert push["reconcile"] == "1h"
    assert push["runOnStart"] is True
    assert "timeout" in push
    assert "retry" in push


# --- (b) the example configs ------------------------------------------------


def example_configs() -> list[Path]:
    # s3syncer configs are *.yaml; registry-notifications.yml is a snippet of
    # the registry's config, hence the other suffix.
    return sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    assert example_configs(), f"no example config (*.yaml) in {EXAMPLES}"


@pytest.mark.parametrize("path", example_configs(), ids=lambda path: path.name)
def test_example_config_passes_check(path: Path) -> None:
    assert_check_passes(path)


# --- (c) the Dockerfile's command -------------------------------------------


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


# --- (d) manifest invariants ------------------------------------------------


def test_one_replica_recreated_never_rolled() -> None:
    spec = manifest_object("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"


def test_probes() -> None:
    container = main_container()
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        http_get = container[probe]["httpGet"]
        assert http_get["path"] == path
        assert ports.get(http_get["port"], http_get["port"]) == PORT


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


def test_pod_provides_every_file_the_config_names() -> None:
    config = configmap_config()
    files = mounted_files(main_container())
    assert files.get(CONFIG_PATH) == ("configMap", "s3syncer", "config.yaml")
    assert files.get(config["auth"]["tokenFile"]) == ("secret", "s3syncer", "token")
    secret_value("token")


def test_writable_paths_are_emptydirs() -> None:
    container = main_container()
    config = configmap_config()
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    writable = ["/tmp", env["MC_CONFIG_DIR"]]
    writable += [command["workdir"] for command in config["commands"] if "workdir" in command]
    if "stateDir" in config:
        writable.append(config["stateDir"])
    for path in writable:
        assert "emptyDir" in mount_for(container, path), f"{path} must be a writable emptyDir"


def test_mc_config_is_copied_from_the_secret() -> None:
    """mc needs a writable config dir; an init container fills it from the Secret."""
    container = main_container()
    env = {item["name"]: item.get("value") for item in container.get("env", [])}
    mc_dir = PurePosixPath(env["MC_CONFIG_DIR"])
    json.loads(secret_value("mc-config.json"))  # the placeholder is valid JSON
    init = cast(list[Obj], pod_spec()["initContainers"])
    assert len(init) == 1
    source, destination = init[0]["command"][-2:]
    assert mounted_files(init[0]).get(source) == ("secret", "s3syncer", "mc-config.json")
    assert destination == str(mc_dir / "config.json")
    assert mount_for(init[0], destination)["name"] == mount_for(container, str(mc_dir))["name"]


# --- the registry's notifications snippet -----------------------------------


def test_notifications_point_at_the_service_and_a_command() -> None:
    endpoints = notifications_endpoints()
    assert len(endpoints) == 1
    endpoint = endpoints[0]
    # Required per endpoint in Distribution's configuration reference.
    for key in ("name", "url", "headers", "timeout", "threshold", "backoff"):
        assert key in endpoint, f"notifications endpoint lacks {key}"
    url = urlsplit(endpoint["url"])
    service = manifest_object("Service")["metadata"]
    assert url.hostname == f"{service['name']}.{service['namespace']}.svc"
    assert url.port == PORT
    prefix, _, name = url.path.rpartition("/")
    assert prefix == "/trigger"
    assert name in {command["name"] for command in configmap_config()["commands"]}
    assert endpoint["headers"]["Authorization"] == [f"Bearer {secret_value('token')}"]
    assert "pull" in endpoint["ignore"]["actions"]
