"""The Kubernetes walkthrough (docs/walkthroughs/kubernetes.md), from the page's own manifests.

The page shows three manifests whole: ``registry.yaml`` and ``registry-mirror.yaml`` (each a
Secret holding the registry's ``config.yml``, a Deployment, a Service) and ``s3syncer.yaml``
(``manifest/k8s.yaml``, included). ``.ci/deploy-checks`` validates their objects against the
Kubernetes schemas. Here:

* they fit together: one namespace; each Deployment mounts its Secret's ``config.yml`` where
  the registry reads it; each Service selects its Deployment; the registry's notifications
  are the Distribution page's block and reach s3syncer's Service and a command that takes
  events, with the Secret's token; each registry's bucket, endpoint and key are those that
  s3syncer's ``replicate`` and ``verify`` read (and ``replicate`` alone writes);
* they run: SeaweedFS with the Secret's two key pairs, Debian's ``docker-registry`` with each
  Secret's ``config.yml`` and ``s3syncer serve`` with the ConfigMap's config, the container's
  args and the environment the pod gets from the Secret; only the cluster's addresses and the
  two stores' endpoints move to loopback. ``replicate`` makes its full pass at start, then
  mirrors a push to the registry on its events; the push pulls from the mirror registry bit
  for bit.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml

from deployment_files import Obj, container_env, documented_notifications, titled_blocks
from registry_harness import make_oci_layout, require_tools
from s3_harness import run_seaweedfs
from waiting import free_port, wait_until
from walkthrough_host import Host, assert_pulled_as_pushed

PAGE = "walkthroughs/kubernetes.md"
MANIFESTS = ("registry.yaml", "registry-mirror.yaml", "s3syncer.yaml")
SOURCE_STORE = "http://minio.registry.svc:9000"
MIRROR_STORE = "https://s3.mirror.example.com"


def objects() -> dict[str, list[Obj]]:
    blocks = titled_blocks(PAGE)
    return {name: [d for d in yaml.safe_load_all(blocks[name]) if d] for name in MANIFESTS}


def one(objs: list[Obj], kind: str) -> Obj:
    [found] = [obj for obj in objs if obj["kind"] == kind]
    return found


def registry_config(objs: list[Obj]) -> tuple[str, Obj]:
    """The registry's config.yml in the manifest's Secret, as text and parsed."""
    text = cast(str, one(objs, "Secret")["stringData"]["config.yml"])
    return text, cast(Obj, yaml.safe_load(text))


def s3syncer_parts() -> tuple[Obj, dict[str, str], Obj]:
    """s3syncer's config, the Secret's values, and its container."""
    objs = objects()["s3syncer.yaml"]
    config = cast(Obj, yaml.safe_load(one(objs, "ConfigMap")["data"]["config.yaml"]))
    secret = cast(dict[str, str], one(objs, "Secret")["stringData"])
    [container] = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return config, secret, cast(Obj, container)


def bucket_of(url: str) -> str:
    return urlsplit(url).netloc


def test_the_kubernetes_manifests_fit_together() -> None:
    manifests = objects()
    config, secret, _ = s3syncer_parts()
    commands = {command["name"]: command for command in config["commands"]}
    replicate = commands["replicate"]
    args = replicate["args"]
    source = bucket_of(args[args.index("--source") + 1])
    dest = bucket_of(args[args.index("--dest") + 1])
    verify = commands["verify"]["args"]
    assert bucket_of(verify[verify.index("--source") + 1]) == source
    assert bucket_of(verify[verify.index("--dest") + 1]) == dest
    sides = {
        "registry.yaml": ("SOURCE", source, "source-access-key-id"),
        "registry-mirror.yaml": ("DEST", dest, "mirror-access-key-id"),
    }
    for name, objs in manifests.items():
        assert {obj["metadata"]["namespace"] for obj in objs} == {"registry"}, name
        service, deployment = one(objs, "Service"), one(objs, "Deployment")
        template = deployment["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        if name == "s3syncer.yaml":
            continue
        side, bucket, key = sides[name]
        secret_name = one(objs, "Secret")["metadata"]["name"]
        [volume] = template["spec"]["volumes"]
        assert volume["secret"]["secretName"] == secret_name
        [mount] = template["spec"]["containers"][0]["volumeMounts"]
        assert mount["mountPath"] == "/etc/docker/registry", "where the registry image reads"
        s3 = registry_config(objs)[1]["storage"]["s3"]
        assert s3["bucket"] == bucket, name
        assert s3["regionendpoint"] == replicate["env"][f"S3SYNCER_{side}_ENDPOINT"], name
        assert s3["accesskey"] == secret[key], name
    storage = registry_config(manifests["registry-mirror.yaml"])[1]["storage"]
    assert storage["maintenance"]["readonly"]["enabled"] is True
    notifications = registry_config(manifests["registry.yaml"])[1]["notifications"]
    assert notifications == documented_notifications()
    [endpoint] = notifications["endpoints"]
    url = urlsplit(endpoint["url"])
    service = one(manifests["s3syncer.yaml"], "Service")["metadata"]
    assert url.hostname == f"{service['name']}.{service['namespace']}.svc" and url.port == 9999
    assert commands[url.path.rpartition("/")[2]]["events"], "the URL names a command with events"
    assert endpoint["headers"]["Authorization"] == [f"Bearer {secret['token']}"]


def pod_env(container: Obj, secret: dict[str, str]) -> dict[str, str]:
    """The container's environment as the pod gets it: Secret values resolved."""
    env: dict[str, str] = {}
    for name, item in container_env(container).items():
        ref = item.get("valueFrom", {}).get("secretKeyRef")
        env[name] = secret[ref["key"]] if ref else str(item["value"])
    return env


@pytest.mark.integration
@pytest.mark.slow
def test_the_kubernetes_walkthrough_mirrors_a_push_to_the_mirror_registry(
    tmp_path: Path,
) -> None:
    require_tools()
    manifests = objects()
    config, secret, container = s3syncer_parts()
    identities: list[dict[str, Any]] = [
        {
            "name": side,
            "credentials": [
                {
                    "accessKey": secret[f"{side}-access-key-id"],
                    "secretKey": secret[f"{side}-secret-access-key"],
                }
            ],
            "actions": ["Read", "Write", "List", "Tagging"],
        }
        for side in ("source", "mirror")
    ]
    layout = make_oci_layout(tmp_path / "image", payload=b"kubernetes walkthrough")
    with run_seaweedfs(
        tmp_path / "weed", ["registry", "registry-mirror"], identities=identities
    ) as server:
        ports = {name: f"127.0.0.1:{free_port()}" for name in ("registry", "mirror", "s3syncer")}
        common = {
            SOURCE_STORE: server.endpoint,
            MIRROR_STORE: server.endpoint,
            "http://s3syncer.registry.svc:9999": f"http://{ports['s3syncer']}",
            "/etc/": f"{tmp_path}/etc/",
            "/var/lib/s3syncer": f"{tmp_path}/state",
            "/opt/s3syncer/bin/s3syncer": str(Path(sys.executable).parent / "s3syncer"),
            "0.0.0.0:9999": ports["s3syncer"],
        }
        hosts: list[Host] = []
        try:
            for name, port in (("registry", "registry"), ("registry-mirror", "mirror")):
                host = Host(tmp_path, {**common, "0.0.0.0:5000": ports[port]})
                hosts.append(host)
                text = registry_config(manifests[f"{name}.yaml"])[0]
                path = tmp_path / name / "config.yml"  # the Secret's volume
                path.parent.mkdir()
                path.write_text(host.text(text), encoding="utf-8")
                host.start(name, f"docker-registry serve {path}", f"http://{ports[port]}/v2/")

            host = Host(tmp_path, common)
            hosts.append(host)
            config_path = host.path("/etc/s3syncer/config.yaml")  # the ConfigMap's volume
            config_path.parent.mkdir(parents=True)
            config_path.write_text(host.text(yaml.safe_dump(config)), encoding="utf-8")
            argv = ["/opt/s3syncer/bin/s3syncer", *container["args"]]  # tini -- s3syncer ARGS
            host.extra_env = {k: host.text(v) for k, v in pod_env(container, secret).items()}
            host.start("s3syncer", " ".join(argv), f"http://{ports['s3syncer']}/ready")

            host.run(
                f"skopeo copy --dest-tls-verify=false oci:{layout}:v1 "
                f"docker://{ports['registry']}/team/app:v1"
            )

            def replicated() -> Obj | None:
                request = urllib.request.Request(
                    f"http://{ports['s3syncer']}/status",
                    headers={"Authorization": f"Bearer {secret['token']}"},
                )
                with urllib.request.urlopen(request, timeout=5) as answer:
                    status = json.loads(answer.read())
                [replicate] = [c for c in status["commands"] if c["name"] == "replicate"]
                assert all(r["ok"] for r in replicate["recentRuns"]), replicate
                reasons = [r["reason"] for r in replicate["recentRuns"]]
                done = "event" in reasons and replicate["state"] == "idle"
                return cast(Obj, replicate) if done else None

            replicate = wait_until(replicated, timeout=60, interval=0.5, message="no replicate run")
            # runOnStart: the one command's full pass ran first (the registry still empty), and
            # the push's events came after it: the same command, never at once
            reasons = [r["reason"] for r in reversed(replicate["recentRuns"])]  # oldest first
            assert reasons.index("startup") < reasons.index("event"), reasons
            assert replicate["lastFullPass"]["ok"], replicate
            pulled = tmp_path / "app-v1"
            host.run(
                f"skopeo copy --src-tls-verify=false "
                f"docker://{ports['mirror']}/team/app:v1 dir:{pulled}"
            )
            assert_pulled_as_pushed(pulled, layout)
        finally:
            for started in hosts:
                started.stop_all()
