"""Readers for the deployment files: manifest/k8s.yaml, the Dockerfile, the site's snippets.

Shared by tests/test_deploy.py (static checks) and tests/container_e2e.py (the built image and
the pod), so both read the files the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, cast

import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "manifest" / "k8s.yaml"
DOCKERFILE = REPO / "Dockerfile"
README = REPO / "README.md"
DOCS = REPO / "docs"
EXAMPLES = REPO / "examples"
NOTIFICATIONS = EXAMPLES / "registry-notifications.yml"
SYSTEMD_UNIT = EXAMPLES / "s3syncer.service"

Obj = dict[str, Any]


def manifest_objects() -> list[Obj]:
    """Every object of manifest/k8s.yaml, in order."""
    with MANIFEST.open(encoding="utf-8") as handle:
        return [cast(Obj, doc) for doc in yaml.safe_load_all(handle) if doc]


def manifest_object(kind: str, objects: list[Obj] | None = None) -> Obj:
    """The one object of ``kind`` (of ``objects``, default the manifest's)."""
    found = [obj for obj in objects or manifest_objects() if obj.get("kind") == kind]
    assert len(found) == 1, f"{MANIFEST} should hold exactly one {kind}, has {len(found)}"
    return found[0]


def pod_spec(objects: list[Obj] | None = None) -> Obj:
    """The Deployment's pod template spec."""
    return cast(Obj, manifest_object("Deployment", objects)["spec"]["template"]["spec"])


def main_container(objects: list[Obj] | None = None) -> Obj:
    """The pod's one container."""
    containers = cast(list[Obj], pod_spec(objects)["containers"])
    assert len(containers) == 1, "one container: s3syncer"
    return containers[0]


def all_containers(objects: list[Obj] | None = None) -> list[Obj]:
    """Init containers and containers."""
    spec = pod_spec(objects)
    return cast(list[Obj], spec.get("initContainers", [])) + cast(list[Obj], spec["containers"])


def configmap_config_text(objects: list[Obj] | None = None) -> str:
    """The s3syncer config the ConfigMap holds, as text."""
    data = cast(Obj, manifest_object("ConfigMap", objects)["data"])
    assert "config.yaml" in data, "the ConfigMap holds config.yaml"
    return cast(str, data["config.yaml"])


def configmap_config(objects: list[Obj] | None = None) -> Obj:
    """The s3syncer config the ConfigMap holds, parsed."""
    return cast(Obj, yaml.safe_load(configmap_config_text(objects)))


def configmap_commands() -> dict[str, Obj]:
    """The ConfigMap config's commands by name."""
    return {command["name"]: command for command in configmap_config()["commands"]}


def secret_string_data() -> dict[str, str]:
    """The Secret's ``stringData`` (the placeholders)."""
    return cast(dict[str, str], manifest_object("Secret").get("stringData", {}))


def container_env(container: Obj) -> dict[str, Obj]:
    """A container's ``env`` entries by name."""
    return {cast(str, item["name"]): item for item in container.get("env", [])}


def http_port(container: Obj, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    ports = {item["name"]: item["containerPort"] for item in container.get("ports", [])}
    return int(ports.get(port, port))


def example_configs() -> list[Path]:
    """The s3syncer configs in examples/ (``*.yaml``; the registry's snippet is ``.yml``)."""
    return sorted(EXAMPLES.glob("*.yaml"))


def command_paths() -> dict[str, str]:
    """Every ``cmd`` of the example configs and the ConfigMap -> where it is configured."""
    found: dict[str, str] = {}
    for path in example_configs():
        config = cast(Obj, yaml.safe_load(path.read_text(encoding="utf-8")))
        for command in config["commands"]:
            found.setdefault(command["cmd"], f"{path.name}: {command['name']}")
    for name, command in configmap_commands().items():
        found.setdefault(command["cmd"], f"manifest/k8s.yaml ConfigMap: {name}")
    return found


SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def page_text(page: str) -> str:
    """A page of the site (``docs/PAGE``) as it is rendered: snippet lines replaced by the file.

    ``--8<-- "PATH"`` (pymdownx.snippets, paths from the repository root) is how a page shows a
    shipped file whole; the page then shows exactly that file.
    """
    text = (DOCS / page).read_text(encoding="utf-8")
    return SNIPPET.sub(lambda m: (REPO / m.group(1)).read_text(encoding="utf-8").rstrip("\n"), text)


def page_section(page: str, heading: str, level: int = 2) -> str:
    """A page's text under the heading ``heading`` of ``level`` (up to the next heading of that
    level or higher, or the end of the page); a ``#`` line inside a fenced block is no heading."""
    lines = page_text(page).splitlines(keepends=True)
    fenced = False
    found: list[str] | None = None
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        marks = len(line) - len(line.lstrip("#"))
        is_heading = not fenced and 0 < marks <= level and line[marks : marks + 1] == " "
        if found is not None and is_heading:
            break
        if found is not None:
            found.append(line)
        elif is_heading and marks == level and line[marks + 1 :].rstrip("\n") == heading:
            found = []
    assert found is not None, f"docs/{page} has no section '{'#' * level} {heading}'"
    return "".join(found)


def code_blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` in ``text`` (without a title)."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def titled_blocks(page: str) -> dict[str, str]:
    """A page's fenced blocks that carry a ``title="..."`` (a path, or what a command does)."""
    found: dict[str, str] = {}
    pattern = r'^```\w+ title="([^"]+)"\n(.*?)^```'
    for title, body in re.findall(pattern, page_text(page), re.MULTILINE | re.DOTALL):
        assert title not in found, f"docs/{page}: two blocks titled {title!r}"
        found[title] = body
    return found


def documented_notifications() -> Obj:
    """The ``notifications:`` block that the Distribution page's "Wiring the registry" shows."""
    blocks = [
        cast(Obj, yaml.safe_load(block))
        for block in code_blocks(page_section(DISTRIBUTION_PAGE, "Wiring the registry"), "yaml")
        if block.startswith("notifications:")
    ]
    assert len(blocks) == 1, f"docs/{DISTRIBUTION_PAGE}: one notifications block"
    return cast(Obj, blocks[0]["notifications"])


DISTRIBUTION_PAGE = "registries/distribution.md"
SYSTEMD_PAGE = "deployment/systemd.md"
