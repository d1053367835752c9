"""Images written straight into a registry's S3 storage layout, as Distribution writes them.

Cheaper than a push for what tests and benchmarks need in bulk or at size: a layer of 70 MiB
or 1 GiB, a thousand tags. A registry started on the same bucket and root serves the result
(the replicate tests check that for pushed images; these use the same keys).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3syncer.replicate.layout import Layout, link_body

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def put_blob(client: S3Client, bucket: str, layout: Layout, data: bytes) -> dict[str, Any]:
    """Store ``data`` as a blob; its descriptor (digest and size)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.put_object(Bucket=bucket, Key=layout.blob_data(digest), Body=data)
    return {"digest": digest, "size": len(data)}


def random_file(path: Path, size: int) -> dict[str, Any]:
    """Write ``size`` random bytes to ``path``, 8 MiB at a time; their descriptor."""
    hasher = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 8 * 1024 * 1024))
            hasher.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return {"digest": "sha256:" + hasher.hexdigest(), "size": size}


def put_blob_file(
    client: S3Client, bucket: str, layout: Layout, path: Path, desc: dict[str, Any]
) -> None:
    """Upload the file ``path`` (described by ``desc``) as a blob, multipart when large."""
    client.upload_file(str(path), bucket, layout.blob_data(desc["digest"]))


def put_image(
    client: S3Client,
    bucket: str,
    layout: Layout,
    repo: str,
    *,
    tags: list[str],
    layers: list[dict[str, Any]],
) -> str:
    """A manifest over blobs already stored, with its links and ``tags``; the manifest digest."""
    config = put_blob(client, bucket, layout, json.dumps({"repo": repo, "tags": tags}).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **config},
        "layers": [{"mediaType": OCI_LAYER, **layer} for layer in layers],
    }
    digest: str = put_blob(client, bucket, layout, json.dumps(manifest).encode())["digest"]
    for blob in (config, *layers):
        key = layout.layer_link(repo, blob["digest"])
        client.put_object(Bucket=bucket, Key=key, Body=link_body(blob["digest"]))
    key = layout.revision_link(repo, digest)
    client.put_object(Bucket=bucket, Key=key, Body=link_body(digest))
    for tag in tags:
        put_tag(client, bucket, layout, f"{repo}:{tag}", digest)
    return digest


def put_tag(client: S3Client, bucket: str, layout: Layout, ref: str, digest: str) -> None:
    """Point ``ref`` (``repo:tag``) at ``digest``: its index link, then its current link."""
    repo, _, tag = ref.partition(":")
    body = link_body(digest)
    client.put_object(Bucket=bucket, Key=layout.tag_index_link(repo, tag, digest), Body=body)
    client.put_object(Bucket=bucket, Key=layout.tag_current_link(repo, tag), Body=body)
