"""The two S3 sides: a botocore S3 client each, and the few reads every step shares.

botocore is imported here, lazily, so that ``s3syncer serve`` never loads it: it comes with
boto3, the optional ``replicate`` extra. boto3 itself is not imported: its sessions add
nothing a run uses, and importing it (s3transfer with it) costs a tenth of a second a run.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .arguments import Location, SideConfig
from .layout import Layout

# Listed and md5_form moved to .listing with the compact listing: importable from here still
from .listing import Listed as Listed  # noqa: PLC0414 - a re-export
from .listing import ListedTree
from .listing import md5_form as md5_form  # noqa: PLC0414 - a re-export

if TYPE_CHECKING:
    import botocore.session
    from botocore.loaders import Loader
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
# botocore retries a request until its response starts, never a body that breaks after: a
# GET whose body does is sent again, as many times as the client tries a request
BODY_ATTEMPTS = 5

INSTALL_HINT = (
    "pip install '.[replicate]' in a clone of s3syncer, "
    "or pip install 'boto3>=1.34' into the environment s3syncer runs from"
)


class RequestCounter:
    """Counts the HTTP requests a boto3 client sends (retries included)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, **_kwargs: Any) -> None:
        with self._lock:
            self.count += 1


def botocore_missing() -> bool:
    """Whether boto3's botocore is absent (the caller says how to install it)."""
    try:
        import botocore.session  # noqa: F401, PLC0415
    except ImportError:
        return True
    return False


class SharedLoader:
    """One botocore data loader for both sides' sessions: the S3 model loads once a run.

    Each side keeps a session of its own (its profile, credentials and region), and botocore
    caches the JSON it loads (the S3 service model, endpoint data) in the session's loader: two
    sessions would each read and decode the same megabytes, a third of a run's start-up.
    A session whose ``data_path`` (``AWS_DATA_PATH``, or the profile's) is the first one's
    reads the same files, so it is given the first one's loader, through botocore's public
    ``register_component``.
    """

    def __init__(self) -> None:
        self._loader: Loader | None = None
        self._data_path: object = None

    def share(self, session: botocore.session.Session) -> None:
        """Keep the first session's loader; give it to a later session that reads the same."""
        data_path = session.get_config_variable("data_path")
        if self._loader is None:
            self._loader, self._data_path = session.get_component("data_loader"), data_path
        elif data_path == self._data_path:
            session.register_component("data_loader", self._loader)


def make_client(
    config: SideConfig, jobs: int, counter: RequestCounter, loader: SharedLoader
) -> tuple[S3Client, Any]:
    """An S3 client for one side, and an identity (endpoint, credentials) to compare."""
    import botocore.session  # noqa: PLC0415 - optional dependency
    from botocore.config import Config  # noqa: PLC0415

    # what boto3.session.Session would set up, without boto3's resource layer
    session = botocore.session.get_session()
    if config.profile is not None:
        session.set_config_variable("profile", config.profile)
    if config.access_key and config.secret_key:  # both or neither: arguments.side_config
        session.set_credentials(config.access_key, config.secret_key, config.session_token)
    loader.share(session)
    client_config = Config(
        region_name=config.region,
        # the run's request pool and its transfer pool each hold up to `jobs` requests
        max_pool_connections=max(10, jobs * 2),
        retries={"max_attempts": 5, "mode": "standard"},
        # every body is checked by a checksum header instead (CRC32 per part, the blob's own
        # sha256 for a whole blob), so an http endpoint need not hash each body a second time
        s3={"payload_signing_enabled": False, "addressing_style": "path"}
        if config.path_style
        else {"payload_signing_enabled": False},
    )
    client = cast(
        "S3Client",
        session.create_client("s3", endpoint_url=config.endpoint, config=client_config),
    )
    client.meta.events.register("before-send", counter)
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    identity = (client.meta.endpoint_url, client.meta.region_name, frozen)
    return client, identity


def describe(exc: BaseException) -> str:
    """A one-line reason for an S3 or network error, with the notes added to it."""
    notes = getattr(exc, "__notes__", ())
    return "; ".join([_reason(exc), *map(str, notes)])


def _reason(exc: BaseException) -> str:
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


def _error_code(exc: BaseException) -> str:
    """The S3 error code of ``exc``, or "" when it is not an S3 error."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_not_found(exc: BaseException) -> bool:
    """Whether an S3 error says the object is not there."""
    return _error_code(exc) in ("404", "NoSuchKey", "NotFound")


def refused_digest(exc: BaseException) -> bool:
    """Whether an S3 error says the bytes sent do not match the checksum sent with them."""
    return _error_code(exc) in ("BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch")


def broken_body(exc: BaseException) -> bool:
    """Whether ``exc`` is a response body that broke midway (reset, cut short, timed out)."""
    from botocore.exceptions import HTTPClientError, IncompleteReadError  # noqa: PLC0415

    return isinstance(exc, HTTPClientError | IncompleteReadError)


class TooLargeError(Exception):
    """An object that should be small (a manifest, a link) is not."""


# Storage classes a GET cannot read until the object is restored (GLACIER_IR can be read).
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})


def _listed(obj: Mapping[str, Any]) -> Listed:
    """A listing entry as :class:`Listed`."""
    etag = str(obj.get("ETag", "")).strip('"')
    tiered = obj.get("StorageClass") == "INTELLIGENT_TIERING"
    modified = obj.get("LastModified")
    when = modified.timestamp() if modified is not None else 0.0
    return Listed(obj["Size"], etag, archive_of(obj), tiered, when)


def archive_of(found: Mapping[str, Any]) -> str | None:
    """The archive a listed or HEADed object sits in, that no GET reads until it is restored.

    ``StorageClass`` of a listing entry or a HEAD; a HEAD also gives the ``ArchiveStatus`` of
    an INTELLIGENT_TIERING object moved to one of its archive tiers.
    """
    status = found.get("ArchiveStatus")
    if status:
        return str(status)
    storage_class = found.get("StorageClass")
    return str(storage_class) if storage_class in ARCHIVE_CLASSES else None


# An encrypted object's ETag looks like an MD5 but is not one (SSE-KMS, SSE-C).
_NOT_MD5_ENCRYPTION = frozenset({"aws:kms", "aws:kms:dsse"})


def etags_are_md5(source: Side, dest: Side, keys: tuple[str, str]) -> bool:
    """Whether both objects' ETags are their MD5s, so that different ETags are other bytes.

    Asked only of two listings whose ETags differ: a HEAD each shows the encryption that
    would make an ETag something else; an object that cannot be HEADed proves nothing.
    """
    for side, key in ((source, keys[0]), (dest, keys[1])):
        try:
            found = side.client.head_object(Bucket=side.bucket, Key=key)
        except Exception:
            return False
        if found.get("ServerSideEncryption") in _NOT_MD5_ENCRYPTION:
            return False
        if found.get("SSECustomerAlgorithm"):
            return False
    return True


@dataclass(frozen=True)
class Head:
    """One object as a HEAD shows it: its size, and the archive it sits in if any."""

    size: int
    archive: str | None = None


@dataclass(frozen=True)
class Side:
    """One registry storage: a client, the bucket and root, and its key layout."""

    client: S3Client
    location: Location
    layout: Layout = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", Layout(self.location.root))

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self.location.bucket

    def head_size(self, key: str) -> int | None:
        """The size of ``key``, or None when it does not exist; other errors raise."""
        found = self.head(key)
        return None if found is None else found.size

    def head(self, key: str) -> Head | None:
        """The size and archive of ``key``, or None when it does not exist; other errors raise."""
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return Head(response["ContentLength"], archive_of(response))

    def get(self, key: str, read: Callable[[Any], T], byte_range: str | None = None) -> T:
        """``read(response)`` of a GET of ``key``; the GET again if its body breaks midway."""
        extra: dict[str, Any] = {"Range": byte_range} if byte_range else {}
        attempt = 1
        while True:
            response = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
            try:
                return read(response)
            except Exception as exc:
                if attempt == BODY_ATTEMPTS or not broken_body(exc):
                    raise
            finally:
                response["Body"].close()
            attempt += 1

    def read_small(self, key: str, limit: int) -> bytes:
        """The whole of a small object; TooLargeError above ``limit`` bytes."""

        def read(obj: Any) -> bytes:
            if obj["ContentLength"] > limit:
                raise TooLargeError(f"{key} is larger than {limit} bytes")
            data: bytes = obj["Body"].read()
            return data

        return self.get(key, read)

    def content_digest(self, key: str, algorithm: str) -> str:
        """The ``algorithm:hex`` digest of the bytes ``key`` holds, read 1 MiB at a time."""

        def read(obj: Any) -> str:
            hasher = hashlib.new(algorithm)
            for chunk in obj["Body"].iter_chunks(1024 * 1024):
                hasher.update(chunk)
            return f"{algorithm}:{hasher.hexdigest()}"

        return self.get(key, read)

    def put(self, key: str, body: bytes) -> None:
        """Write a small object."""
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def delete(self, key: str) -> None:
        """Remove one object."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def list_objects(self, prefix: str, keep: Callable[[str], bool] | None = None) -> ListedTree:
        """Every key under ``prefix`` (those ``keep`` keeps, if given), its size and ETag, in
        key order (one paginated listing), held compactly: a pass holds several whole."""
        found = ListedTree(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if keep is None or keep(obj["Key"]):
                    found.add(obj["Key"], _listed(obj))
        return found.done()

    def has_keys(self, prefix: str) -> bool:
        """Whether any key starts with ``prefix`` (one listing request of one key)."""
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return listed.get("KeyCount", 0) > 0

    def url(self, key: str) -> str:
        """``key`` as an operator finds it: its layout's keys hold the root already."""
        return f"s3://{self.bucket}/{key}"

    def list_keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix``, in key order (one paginated listing)."""
        return list(self.list_objects(prefix))

    def __str__(self) -> str:
        return str(self.location)
