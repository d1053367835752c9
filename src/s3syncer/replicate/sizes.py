"""The sizes blob copies are cut to, and S3's own limits on them."""

from __future__ import annotations

MIB = 1024 * 1024
ONE_REQUEST_MAX = 5 * 1024 * MIB  # the largest object one CopyObject or PutObject may write
MIN_PART = 5 * MIB  # S3 refuses smaller parts, but for the last
MAX_PARTS = 10_000  # S3's most parts in one multipart upload
SERVER_PART = 64 * MIB  # an UploadPartCopy part: few requests, each still quick to retry
STREAM_PART = 8 * MIB  # a streamed part: `jobs` of them in memory at most
# Up to these, a blob is one request; above, parts go in parallel, which a store with more
# than one disk or core can copy faster (SeaweedFS on 2 cores: a 1 GiB CopyObject 4.5 s,
# 64 MiB parts 3.2 s on a fresh store; 3.5-4.5 s either way on a settled one, in
# benchmarks/README.md). rclone's cutoffs are 4.6 GiB for copies and 200 MiB for uploads.
SERVER_COPY_LIMIT = 128 * MIB
STREAM_PUT_LIMIT = 128 * MIB


def part_size(size: int, smallest: int) -> int:
    """The part size for a ``size``-byte blob: ``smallest``, or more when 10,000 would not do."""
    needed = -(-size // MAX_PARTS)
    return max(smallest, -(-needed // MIB) * MIB)
