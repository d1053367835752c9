"""ETags do the cheap proof: when both sides' ETags derive from the MD5 of the bytes, different
ETags are different bytes, found from the listings alone. The real case (a registry's blob on
SeaweedFS, corrupted in the mirror at the same size) is in test_mirror_proof."""

from __future__ import annotations

import hashlib

from s3syncer.replicate.sides import Listed, md5_form


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _one_part(data: bytes) -> str:
    """The ETag of ``data`` uploaded as a one-part multipart upload (what a registry leaves)."""
    return hashlib.md5(bytes.fromhex(_md5(data)), usedforsecurity=False).hexdigest() + "-1"


def test_a_plain_and_a_one_part_etag_of_the_same_bytes_agree() -> None:
    data, other = b"a layer", b"a layex"
    assert md5_form(_md5(data)) == md5_form(_one_part(data))
    assert md5_form(_md5(other)) != md5_form(_one_part(data))
    assert not Listed(7, _md5(data)).differs(Listed(7, _one_part(data)))
    assert Listed(7, _md5(other)).differs(Listed(7, _one_part(data)))
    assert Listed(7, _md5(other)).differs(Listed(7, _md5(data)))


def test_etags_that_do_not_derive_from_the_md5_prove_nothing() -> None:
    data = b"a layer"
    for unknown in (_md5(data)[:31] + "-2", "not-an-etag", "", _md5(data).upper()):
        assert md5_form(unknown) is None
        assert not Listed(7, unknown).differs(Listed(7, _md5(b"other b")))
    assert Listed(7, "x").differs(Listed(8, "x"))  # a size always tells
    assert not Listed(7, _md5(data)).differs(None)  # nothing to compare with
