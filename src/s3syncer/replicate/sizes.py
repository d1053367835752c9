"""The sizes blob copies are cut to, and S3's own limits on them."""

from __future__ import annotations

MIB = 1024 * 1024
SERVER_PART = 64 * MIB  # an UploadPartCopy part: few requests, each still quick to retry
SERVER_COPY_LIMIT = 5 * 1024 * MIB  # the largest object one CopyObject may copy
MIN_PART = 5 * MIB  # S3 refuses smaller parts, but for the last
STREAM_PART = 5 * MIB  # a streamed part, the smallest S3 takes (as rclone): 2 x jobs in memory
