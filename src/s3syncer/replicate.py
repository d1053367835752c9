"""``s3syncer replicate``: copy exactly what a run's registry events changed, S3 to S3.

Reads the events file of a run (``S3SYNCER_EVENTS_FILE`` or ``--events``), reduces the events
to their net effect (:func:`storage_layout.replay`) and copies, from the source registry
storage to the destination, each pushed manifest's closure and the links that serve it, in an
order that never lets the destination point at content it does not have:

1. every blob (child manifests, configs, layers; each manifest's own bytes);
2. the repository's ``_layers`` links for those blobs;
3. ``_manifests/revisions`` links, children before the index that lists them;
4. the tag's ``index`` link, and 5. the tag's ``current/link`` last.

A manifest whose closure is not complete (missing source object, permission error, failed
copy) gets no revision link and no tag, and the run exits 1 with one line per problem.

boto3 is an optional dependency: ``pip install '.[replicate]'`` in a clone of s3syncer
(the package is on no index), or ``pip install 'boto3>=1.34'`` next to an installed s3syncer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from .storage_layout import (
    BlobRef,
    Changes,
    Layout,
    LayoutError,
    check_digest,
    content_digest,
    link_body,
    parse_manifest,
    replay,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
INSTALL_HINT = (
    "pip install '.[replicate]' in a clone of s3syncer, "
    "or pip install 'boto3>=1.34' into the environment s3syncer runs from"
)
PROG = "s3syncer replicate"
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
SIDES = ("source", "dest")
T = TypeVar("T")
R = TypeVar("R")


class UsageError(Exception):
    """Bad flags or environment: exit 2."""


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``s3syncer replicate`` (used by cli.build_parser)."""
    parser.add_argument("--source", required=True, help="s3://BUCKET[/ROOTDIRECTORY]")
    parser.add_argument("--dest", required=True, help="s3://BUCKET[/ROOTDIRECTORY]")
    parser.add_argument(
        "--events", help="events file (default: $S3SYNCER_EVENTS_FILE, set by s3syncer serve)"
    )
    parser.add_argument("--jobs", type=int, default=8, help="parallel requests (default 8)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change")
    parser.add_argument(
        "--delete", action="store_true", help="apply tag and manifest deletes (never blobs)"
    )
    parser.add_argument(
        "--copy",
        choices=("auto", "server", "stream"),
        default="auto",
        help="server-side copy or stream through this process (default auto: server-side "
        "when both sides have the same endpoint and credentials)",
    )
    parser.add_argument(
        "--path-style", action="store_true", help="path-style addressing on both sides"
    )
    for side in SIDES:
        env = f"S3SYNCER_{side.upper()}_"
        parser.add_argument(f"--{side}-endpoint", help=f"endpoint URL (env {env}ENDPOINT)")
        parser.add_argument(f"--{side}-region", help=f"region (env {env}REGION)")
        parser.add_argument(f"--{side}-profile", help=f"AWS profile (env {env}PROFILE)")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per object")


@dataclass(frozen=True)
class Location:
    """A bucket and the registry's ``rootdirectory`` in it."""

    bucket: str
    root: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.root}" if self.root else f"s3://{self.bucket}"


def parse_location(url: str) -> Location:
    """Parse ``s3://BUCKET[/ROOT]``; raise UsageError if it is not one."""
    if not url.startswith("s3://"):
        raise UsageError(f"{url!r}: expected s3://BUCKET[/ROOTDIRECTORY]")
    bucket, _, root = url[len("s3://") :].partition("/")
    if not bucket:
        raise UsageError(f"{url!r}: no bucket")
    return Location(bucket, root.strip("/"))


@dataclass(frozen=True)
class SideConfig:
    """How to reach one side: flags win over ``S3SYNCER_<SIDE>_*``, then boto3's defaults."""

    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    session_token: str | None = None
    path_style: bool = False


def side_config(
    args: argparse.Namespace, side: str, environ: dict[str, str] | os._Environ[str]
) -> SideConfig:
    """Resolve one side's settings from flags and ``S3SYNCER_SOURCE_*`` / ``S3SYNCER_DEST_*``."""
    prefix = f"S3SYNCER_{side.upper()}_"

    def pick(flag: str | None, name: str) -> str | None:
        return flag or environ.get(prefix + name) or None

    access = environ.get(prefix + "AWS_ACCESS_KEY_ID") or None
    secret = environ.get(prefix + "AWS_SECRET_ACCESS_KEY") or None
    if bool(access) != bool(secret):
        raise UsageError(
            f"set both {prefix}AWS_ACCESS_KEY_ID and {prefix}AWS_SECRET_ACCESS_KEY, or neither"
        )
    path_style = args.path_style or environ.get(prefix + "PATH_STYLE", "") in ("1", "true")
    return SideConfig(
        endpoint=pick(getattr(args, f"{side}_endpoint"), "ENDPOINT"),
        region=pick(getattr(args, f"{side}_region"), "REGION"),
        profile=pick(getattr(args, f"{side}_profile"), "PROFILE"),
        access_key=access,
        secret_key=secret,
        session_token=environ.get(prefix + "AWS_SESSION_TOKEN") or None,
        path_style=path_style,
    )


class RequestCounter:
    """Counts the HTTP requests a boto3 client sends (retries included)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, **_kwargs: Any) -> None:
        with self._lock:
            self.count += 1


def make_client(config: SideConfig, jobs: int, counter: RequestCounter) -> tuple[S3Client, Any]:
    """A boto3 S3 client for one side, and an identity (endpoint, credentials) to compare."""
    import boto3  # noqa: PLC0415 - optional dependency
    from botocore.config import Config  # noqa: PLC0415

    session = boto3.session.Session(
        profile_name=config.profile,
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        aws_session_token=config.session_token,
    )
    client_config = Config(
        region_name=config.region,
        max_pool_connections=max(10, jobs * 2),
        retries={"max_attempts": 5, "mode": "standard"},
        s3={"addressing_style": "path"} if config.path_style else None,
    )
    client = session.client("s3", endpoint_url=config.endpoint, config=client_config)
    client.meta.events.register("before-send", counter)
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    identity = (client.meta.endpoint_url, client.meta.region_name, frozen)
    return client, identity


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """A one-line reason for an S3 or network error."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchKey", "NotFound"):
            return "does not exist"
        if code in ("403", "AccessDenied", "Forbidden"):
            return f"permission denied ({code}, HTTP {status})"
        if code in ("NoSuchBucket",):
            return "bucket does not exist"
        message = error.get("Message") or ""
        return f"{code or 'error'} (HTTP {status}){': ' + message if message else ''}"
    return f"{type(exc).__name__}: {exc}"


def _is_not_found(exc: BaseException) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")


# --------------------------------------------------------------------------------------------
# The copy
# --------------------------------------------------------------------------------------------


class _HashingReader:
    """A read-only file object that hashes and counts what passes through it."""

    def __init__(self, raw: Any, algorithm: str) -> None:
        self._raw = raw
        self.hash = hashlib.new(algorithm)
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        data: bytes = self._raw.read(amount if amount >= 0 else None)
        self.hash.update(data)
        self.size += len(data)
        return data


@dataclass
class Stats:
    """What a run did."""

    manifests: int = 0
    blobs_copied: int = 0
    blobs_skipped: int = 0
    bytes_copied: int = 0
    links_written: int = 0
    links_deleted: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


@dataclass
class _Manifest:
    digest: str
    data: bytes | None = None
    children: tuple[str, ...] = ()
    blobs: tuple[BlobRef, ...] = ()
    error: str | None = None


Closure = tuple[set[str], set[BlobRef]]


@dataclass
class _Plan:
    """The state of one run: fetched manifests, closures, and what succeeded so far."""

    manifests: dict[str, _Manifest]
    wanted: list[tuple[str, str, Closure | None]] = field(default_factory=list)
    blob_state: dict[str, str] = field(default_factory=dict)
    link_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    revision_ok: dict[tuple[str, str], bool] = field(default_factory=dict)
    _closures: dict[str, Closure | None] = field(default_factory=dict)

    def closure(self, digest: str, path: tuple[str, ...] = ()) -> Closure | None:
        """Every manifest digest and blob reachable from ``digest``; None if any is unknown."""
        if digest in self._closures:
            return self._closures[digest]
        manifest = self.manifests.get(digest)
        result: Closure | None = None
        if manifest is not None and not manifest.error and digest not in path:
            result = ({digest}, set(manifest.blobs))
            for child in manifest.children:
                sub = self.closure(child, (*path, digest))
                if sub is None:
                    result = None
                    break
                result[0].update(sub[0])
                result[1].update(sub[1])
        self._closures[digest] = result
        return result

    def complete(self, item: tuple[str, str]) -> bool:
        """Whether a manifest's bytes and its blobs' layer links are in the destination."""
        repo, digest = item
        return self.blob_state.get(digest) == "ok" and all(
            self.link_ok.get((repo, ref.digest), False)
            or (ref.optional and self.blob_state[ref.digest] == "absent")
            for ref in self.manifests[digest].blobs
        )


class Replicator:
    """Copies manifests' closures and their links from one registry storage to another."""

    def __init__(
        self,
        source: S3Client,
        dest: S3Client,
        source_location: Location,
        dest_location: Location,
        *,
        jobs: int = 8,
        server_side: bool = False,
        dry_run: bool = False,
        verbose: bool = False,
        out: IO[str] | None = None,
    ) -> None:
        self.source, self.dest = source, dest
        self.src_loc, self.dst_loc = source_location, dest_location
        self.src_layout, self.dst_layout = Layout(source_location.root), Layout(dest_location.root)
        self.jobs = max(1, jobs)
        self.server_side = server_side
        self.dry_run = dry_run
        self.verbose = verbose or dry_run
        self.out = out or sys.stdout
        self.problems: list[str] = []
        self.stats = Stats()
        self._lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------

    def _problem(self, line: str) -> None:
        with self._lock:
            self.problems.append(line)

    def _say(self, line: str) -> None:
        if self.verbose:
            with self._lock:
                print(("would " if self.dry_run else "") + line, file=self.out, flush=True)

    def _map(self, fn: Callable[[T], R], items: Iterable[T], failed: R) -> list[R]:
        """Run ``fn`` over ``items`` on the worker pool; an exception is a problem, not a crash."""

        def guarded(item: T) -> R:
            try:
                return fn(item)
            except Exception as exc:
                self._problem(f"{item}: unexpected {_describe(exc)}")
                return failed

        items = list(items)
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.jobs, len(items))) as pool:
            return list(pool.map(guarded, items))

    def _head_size(self, client: S3Client, bucket: str, key: str) -> int | None:
        try:
            return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise

    def _put(self, key: str, body: bytes, what: str) -> bool:
        self._say(f"write {what}")
        if self.dry_run:
            return True
        try:
            self.dest.put_object(Bucket=self.dst_loc.bucket, Key=key, Body=body)
        except Exception as exc:
            self._problem(f"{what}: cannot write {self.dst_loc}/{key}: {_describe(exc)}")
            return False
        return True

    # -- steps ---------------------------------------------------------------------------

    def _fetch_manifest(self, digest: str) -> _Manifest:
        key = self.src_layout.blob_data(digest)
        manifest = _Manifest(digest)
        try:
            obj = self.source.get_object(Bucket=self.src_loc.bucket, Key=key)
            if obj["ContentLength"] > MAX_MANIFEST_BYTES:
                manifest.error = f"manifest {digest} is larger than {MAX_MANIFEST_BYTES} bytes"
                return manifest
            data = obj["Body"].read()
        except Exception as exc:
            manifest.error = f"manifest {digest}: source {key}: {_describe(exc)}"
            return manifest
        algorithm, _ = check_digest(digest)
        if content_digest(data, algorithm) != digest:
            manifest.error = f"manifest {digest}: source {key} does not match its digest"
            return manifest
        try:
            refs = parse_manifest(data)
        except LayoutError as exc:
            manifest.error = f"manifest {digest}: {exc}"
            return manifest
        manifest.data, manifest.children, manifest.blobs = data, refs.children, refs.blobs
        return manifest

    def _discover(self, roots: Iterable[str]) -> dict[str, _Manifest]:
        """Fetch every manifest reachable from ``roots`` from the source, level by level."""
        found: dict[str, _Manifest] = {}
        level = list(dict.fromkeys(roots))
        while level:
            results = self._map(self._fetch_manifest, level, None)
            for digest, manifest in zip(level, results, strict=True):
                found[digest] = manifest or _Manifest(digest, error=f"manifest {digest}: failed")
            level = list(
                dict.fromkeys(
                    child for d in level for child in found[d].children if child not in found
                )
            )
        return found

    def _copy_blob(self, ref: BlobRef) -> str:
        """Copy one blob unless present with the same size: "ok", "failed" or "absent".

        "absent" is an optional (foreign) layer that the source does not have either.
        """
        digest = ref.digest
        src_key, dst_key = self.src_layout.blob_data(digest), self.dst_layout.blob_data(digest)
        try:
            dst_size = self._head_size(self.dest, self.dst_loc.bucket, dst_key)
            size = ref.size
            if size is None or dst_size != size:
                size = self._head_size(self.source, self.src_loc.bucket, src_key)
                if size is None:
                    if ref.optional:
                        return "absent"
                    self._problem(f"blob {digest}: source {src_key} does not exist")
                    return "failed"
            if dst_size == size:
                self.stats.add(blobs_skipped=1)
                return "ok"
            self._say(f"copy blob {digest} ({size} bytes)")
            if self.dry_run:
                return "ok"
            if self.server_side:
                self._server_copy(src_key, dst_key, size)
            else:
                self._stream_copy(digest, src_key, dst_key, size)
        except _CopyMismatchError as exc:
            self._problem(f"blob {digest}: {exc}")
            return "failed"
        except Exception as exc:
            self._problem(f"blob {digest}: copy {src_key}: {_describe(exc)}")
            return "failed"
        self.stats.add(blobs_copied=1, bytes_copied=size)
        return "ok"

    def _transfer_config(self) -> Any:
        from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

        return TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_THRESHOLD,
            max_concurrency=4,
        )

    def _server_copy(self, src_key: str, dst_key: str, size: int) -> None:
        source: CopySourceTypeDef = {"Bucket": self.src_loc.bucket, "Key": src_key}
        if size < MULTIPART_THRESHOLD:
            self.dest.copy_object(Bucket=self.dst_loc.bucket, Key=dst_key, CopySource=source)
        else:  # managed multipart copy (UploadPartCopy): required above 5 GB
            self.dest.copy(source, self.dst_loc.bucket, dst_key, Config=self._transfer_config())

    def _stream_copy(self, digest: str, src_key: str, dst_key: str, size: int) -> None:
        algorithm, _ = check_digest(digest)
        body = self.source.get_object(Bucket=self.src_loc.bucket, Key=src_key)["Body"]
        reader = _HashingReader(body, algorithm)
        if size < MULTIPART_THRESHOLD:
            data = reader.read()
            self._check_content(reader, digest, size, dst_key, written=False)
            self.dest.put_object(Bucket=self.dst_loc.bucket, Key=dst_key, Body=data)
            return
        self.dest.upload_fileobj(
            reader,  # type: ignore[arg-type]
            self.dst_loc.bucket,
            dst_key,
            Config=self._transfer_config(),
        )
        self._check_content(reader, digest, size, dst_key, written=True)

    def _check_content(
        self, reader: _HashingReader, digest: str, size: int, dst_key: str, *, written: bool
    ) -> None:
        got = f"{digest.partition(':')[0]}:{reader.hash.hexdigest()}"
        if got == digest and reader.size == size:
            return
        if written:
            self.dest.delete_object(Bucket=self.dst_loc.bucket, Key=dst_key)
        raise _CopyMismatchError(f"source content has digest {got} and {reader.size} bytes")

    # -- the run -------------------------------------------------------------------------

    def replicate(self, changes: Changes, *, delete: bool = False) -> bool:
        """Apply ``changes`` to the destination. True when everything succeeded."""
        pushed = changes.pushed_manifests()
        plan = _Plan(self._discover(digest for _repo, digest in pushed))
        for manifest in plan.manifests.values():
            if manifest.error:
                self._problem(manifest.error)
        plan.wanted = [(repo, digest, plan.closure(digest)) for repo, digest in pushed]
        self._copy_blobs(plan)  # 1.
        self._write_layer_links(plan)  # 2.
        self._write_revision_links(plan)  # 3.
        for repo, digest, closure in plan.wanted:
            if closure is not None and not plan.revision_ok.get((repo, digest)):
                self._problem(f"{repo}@{digest}: incomplete in the destination, not linked")
        self._write_tags(plan, changes.tag_pushes())  # 4. and 5.
        if delete:
            self._map(self._delete_tag, changes.tag_deletes(), False)
            self._map(self._delete_revision, changes.manifest_deletes(), False)
        elif changes.tag_deletes() or changes.manifest_deletes():
            count = len(changes.tag_deletes()) + len(changes.manifest_deletes())
            print(f"{PROG}: {count} delete(s) not applied (no --delete)", file=self.out)
        return not self.problems

    def _copy_blobs(self, plan: _Plan) -> None:
        manifest_digests = sorted({m for _r, _d, c in plan.wanted if c for m in c[0]})
        blob_refs: dict[str, BlobRef] = {}
        for _r, _d, c in plan.wanted:
            for ref in c[1] if c else ():
                old = blob_refs.get(ref.digest)
                blob_refs[ref.digest] = ref if old is None or old.size is None else old
        self.stats.manifests = len(manifest_digests)

        def put_manifest(digest: str) -> bool:
            data = plan.manifests[digest].data
            assert data is not None
            key = self.dst_layout.blob_data(digest)
            ok = self._put(key, data, f"manifest blob {digest}")
            if ok:
                self.stats.add(blobs_copied=1, bytes_copied=len(data))
            return ok

        refs = list(blob_refs.values())
        results = self._map(self._copy_blob, refs, "failed")
        plan.blob_state = dict(zip(blob_refs, results, strict=True))
        manifest_results = self._map(put_manifest, manifest_digests, False)
        for digest, ok in zip(manifest_digests, manifest_results, strict=True):
            plan.blob_state[digest] = "ok" if ok else "failed"

    def _write_layer_links(self, plan: _Plan) -> None:
        layer_links = sorted(
            {
                (repo, ref.digest)
                for repo, _d, c in plan.wanted
                if c
                for ref in c[1]
                if plan.blob_state[ref.digest] != "absent"
            }
        )

        def write_layer_link(item: tuple[str, str]) -> bool:
            repo, digest = item
            if plan.blob_state[digest] != "ok":
                return False
            key = self.dst_layout.layer_link(repo, digest)
            return self._put(key, link_body(digest), f"layer link {repo}@{digest}")

        results = self._map(write_layer_link, layer_links, False)
        plan.link_ok = dict(zip(layer_links, results, strict=True))
        self.stats.add(links_written=sum(results))

    def _write_revision_links(self, plan: _Plan) -> None:
        """Leaves first, then each index once all its children are linked."""
        pending = sorted({(repo, m) for repo, _d, c in plan.wanted if c for m in c[0]})

        def write_revision(item: tuple[str, str]) -> bool:
            repo, digest = item
            children = plan.manifests[digest].children
            if not (all(plan.revision_ok[(repo, c)] for c in children) and plan.complete(item)):
                return False
            key = self.dst_layout.revision_link(repo, digest)
            return self._put(key, link_body(digest), f"revision link {repo}@{digest}")

        while pending:
            ready = [
                (repo, m)
                for repo, m in pending
                if all((repo, child) in plan.revision_ok for child in plan.manifests[m].children)
            ]
            if not ready:  # closure() refuses cycles, so this cannot happen; be safe anyway
                break
            results = self._map(write_revision, ready, False)
            plan.revision_ok.update(zip(ready, results, strict=True))
            self.stats.add(links_written=sum(results))
            pending = [item for item in pending if item not in plan.revision_ok]

    def _write_tags(self, plan: _Plan, tag_pushes: list[tuple[str, str, str]]) -> None:
        tags = []
        for repo, tag, digest in tag_pushes:
            if plan.revision_ok.get((repo, digest)):
                tags.append((repo, tag, digest))
            else:
                self._problem(f"{repo}:{tag}: not updated, {digest} is not complete")

        def write_tag_index(item: tuple[str, str, str]) -> bool:
            repo, tag, digest = item
            key = self.dst_layout.tag_index_link(repo, tag, digest)
            return self._put(key, link_body(digest), f"tag index link {repo}:{tag}@{digest}")

        def write_tag_current(item: tuple[str, str, str]) -> bool:
            repo, tag, digest = item
            key = self.dst_layout.tag_current_link(repo, tag)
            return self._put(key, link_body(digest), f"tag {repo}:{tag} -> {digest}")

        index_ok = self._map(write_tag_index, tags, False)
        current = [t for t, ok in zip(tags, index_ok, strict=True) if ok]
        current_ok = self._map(write_tag_current, current, False)
        self.stats.add(links_written=sum(index_ok) + sum(current_ok))

    def _delete_tag(self, item: tuple[str, str]) -> bool:
        repo, tag = item
        prefix = self.dst_layout.tag_dir(repo, tag)
        try:
            keys: list[str] = []
            paginator = self.dest.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.dst_loc.bucket, Prefix=prefix):
                keys.extend(obj["Key"] for obj in page.get("Contents", []))
            # current/link first: the tag disappears before its history does.
            keys.sort(key=lambda k: (not k.endswith("/current/link"), k))
            self._say(f"delete tag {repo}:{tag} ({len(keys)} objects)")
            if self.dry_run:
                return True
            for key in keys:
                self.dest.delete_object(Bucket=self.dst_loc.bucket, Key=key)
        except Exception as exc:
            self._problem(f"{repo}:{tag}: cannot delete {prefix}: {_describe(exc)}")
            return False
        self.stats.add(links_deleted=len(keys))
        return True

    def _delete_revision(self, item: tuple[str, str]) -> bool:
        repo, digest = item
        key = self.dst_layout.revision_link(repo, digest)
        self._say(f"delete revision link {repo}@{digest}")
        if self.dry_run:
            return True
        try:
            self.dest.delete_object(Bucket=self.dst_loc.bucket, Key=key)
        except Exception as exc:
            self._problem(f"{repo}@{digest}: cannot delete {key}: {_describe(exc)}")
            return False
        self.stats.add(links_deleted=1)
        return True


class _CopyMismatchError(Exception):
    """Copied content does not match its digest or size."""


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_events(path: str) -> tuple[list[Any], bool]:
    """Read an events file: ``(events, truncated)``. A bare registry envelope also works."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError("not an events file: no 'events' list")
    return data["events"], bool(data.get("truncated", False))


def run(args: argparse.Namespace, environ: dict[str, str] | os._Environ[str] | None = None) -> int:
    """``s3syncer replicate`` with parsed ``args``; returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        source, dest = parse_location(args.source), parse_location(args.dest)
        configs = {side: side_config(args, side, env) for side in SIDES}
        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        events_path = args.events or env.get("S3SYNCER_EVENTS_FILE")
        if not events_path:
            raise UsageError("no events: pass --events FILE or set S3SYNCER_EVENTS_FILE")
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        events, truncated = load_events(events_path)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: cannot read events file {events_path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if truncated:
        print(
            f"{PROG}: the events file was truncated ({len(events)} events kept, more were "
            "dropped): the changes are not all known; run a full sync (rclone sync / "
            "mc mirror) instead",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    changes = replay(events)
    for problem in changes.problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    try:
        import boto3  # noqa: F401, PLC0415
    except ImportError:
        print(f"{PROG}: boto3 is not installed; install it with: {INSTALL_HINT}", file=sys.stderr)
        return EXIT_USAGE
    counters = {side: RequestCounter() for side in SIDES}
    try:
        src_client, src_id = make_client(configs["source"], args.jobs, counters["source"])
        dst_client, dst_id = make_client(configs["dest"], args.jobs, counters["dest"])
    except Exception as exc:
        print(f"{PROG}: cannot set up S3 clients: {_describe(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    server_side = args.copy == "server" or (args.copy == "auto" and src_id == dst_id)
    replicator = Replicator(
        src_client,
        dst_client,
        source,
        dest,
        jobs=args.jobs,
        server_side=server_side,
        dry_run=args.dry_run,
        verbose=args.verbose,
    )
    ok = replicator.replicate(changes, delete=args.delete)
    for problem in replicator.problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    stats = replicator.stats
    print(
        f"{PROG}: {'dry run: ' if args.dry_run else ''}{len(events)} events, "
        f"{stats.manifests} manifests, {stats.blobs_copied} blobs copied "
        f"({stats.bytes_copied} bytes, {'server-side' if server_side else 'streamed'}), "
        f"{stats.blobs_skipped} already there, {stats.links_written} links written, "
        f"{stats.links_deleted} deleted, {counters['source'].count + counters['dest'].count} "
        f"S3 requests; {'ok' if ok and not changes.problems else 'FAILED'}",
        flush=True,
    )
    return EXIT_OK if ok and not changes.problems else EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``replicate`` on its own (``python -m s3syncer.replicate``)."""
    parser = argparse.ArgumentParser(prog=PROG)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
