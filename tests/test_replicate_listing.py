"""A compact listing (ListedTree) answers exactly as the dict of Listed it replaces; the run's
pool reads its items as the work goes."""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz_budget import examples
from s3syncer.replicate.arguments import Location
from s3syncer.replicate.catalog import list_both
from s3syncer.replicate.layout import Layout
from s3syncer.replicate.listing import CHUNK, Listed, ListedTree
from s3syncer.replicate.pool import WINDOW_PER_JOB, Pool
from s3syncer.replicate.sides import Side

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "reg/docker/registry/v2/blobs/"
_hex = st.text("0123456789abcdef", min_size=32, max_size=32)
etags = st.one_of(
    _hex,  # a plain MD5
    st.tuples(_hex, st.integers(1, 10_000)).map(lambda t: f"{t[0]}-{t[1]}"),  # multipart
    st.text(max_size=40),  # anything else: encrypted, a store's own, upper case, empty
    st.tuples(_hex, st.sampled_from(["0", "01", "10001", "x", ""])).map("-".join),
    _hex.map(str.upper),
)
entries = st.builds(
    Listed,
    st.integers(0, 2**62),
    etags,
    st.one_of(st.none(), st.sampled_from(["GLACIER", "DEEP_ARCHIVE", "ARCHIVE_ACCESS"])),
    st.booleans(),
    st.floats(allow_nan=False),
)
keys = st.text(st.characters(codec="utf-8"), max_size=30).map(lambda rel: PREFIX + rel)


@settings(max_examples=examples(500))
@given(st.lists(st.tuples(keys, entries), max_size=40))
def test_a_tree_answers_as_the_dict_it_replaces(listed: list[tuple[str, Listed]]) -> None:
    """Any order, keys listed twice (the last wins), any ETag: the same mapping, in key order."""
    tree = ListedTree(PREFIX)
    for key, entry in listed:
        tree.add(key, entry)
    tree.done()
    expected = dict(listed)
    assert dict(tree.items()) == expected
    assert list(tree) == sorted(expected)
    assert len(tree) == len(expected)
    for key, entry in expected.items():
        assert key in tree
        assert tree[key] == entry
        assert tree.get(key) == entry
    for missing in (PREFIX + "\uffff", "elsewhere/" + PREFIX, PREFIX[:-1]):
        if missing not in expected:
            assert missing not in tree
            assert tree.get(missing) is None


def test_a_tree_of_several_chunks_answers_every_key() -> None:
    """Past CHUNK keys, in order and out of it, with a key listed twice."""
    count = CHUNK * 2 + 7
    expected = {
        f"{PREFIX}{i:06d}/data": Listed(i, f"{i:032x}", None, False, i) for i in range(count)
    }
    in_order = ListedTree.of(expected, PREFIX)
    shuffled = list(expected.items())
    random.Random(27).shuffle(shuffled)
    twice = f"{PREFIX}{5:06d}/data"
    shuffled.append((twice, Listed(99, "x")))
    out_of_order = ListedTree(PREFIX)
    for key, entry in shuffled:
        out_of_order.add(key, entry)
    out_of_order.done()
    assert dict(in_order.items()) == expected
    expected[twice] = Listed(99, "x")
    assert dict(out_of_order.items()) == expected
    for tree in (in_order, out_of_order):
        assert list(tree) == sorted(expected)
        assert all(key in tree for key in expected)
        assert f"{PREFIX}{count:06d}/data" not in tree
    assert out_of_order[twice] == Listed(99, "x")


def test_an_entry_keeps_what_its_checks_use() -> None:
    """differs() and holds() answer from a tree's entry as from the Listed given to it."""
    body = b"sha256:" + b"0" * 64
    md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
    given_entry = Listed(len(body), md5, None, False, 1765100000.25)
    tree = ListedTree.of({PREFIX + "a": given_entry, PREFIX + "b": Listed(len(body), "x-2")})
    found = tree[PREFIX + "a"]
    assert found.holds(body) is True
    assert found.modified == 1765100000.25
    assert tree[PREFIX + "b"].etag == "x-2"
    assert not found.differs(Listed(len(body), md5))
    assert found.differs(Listed(len(body), "f" * 32))


def test_the_pool_reads_its_items_as_the_work_goes() -> None:
    """A map over many items holds a bounded window of them, not a future for each."""
    jobs, count = 2, 500
    limit = jobs * WINDOW_PER_JOB
    taken = finished = 0
    lock = threading.Lock()
    unfinished: list[int] = []

    def items() -> Iterator[int]:
        nonlocal taken
        for i in range(count):
            with lock:
                taken += 1
                unfinished.append(taken - finished)  # read, and not yet done
            yield i

    def work(i: int) -> int:
        nonlocal finished
        try:
            if i == 7:
                raise ValueError("one item fails")
            return i * 2
        finally:
            with lock:
                finished += 1

    errors: list[object] = []
    with Pool(jobs, lambda item, _exc: errors.append(item)) as pool:
        results = pool.map(work, items(), -1)
    assert results == [-1 if i == 7 else i * 2 for i in range(count)]
    assert errors == [7]
    assert max(unfinished) <= limit + 1


def test_a_slow_item_does_not_hold_the_other_threads() -> None:
    """The first item finishes only once every other one has: a window that waited for
    results in order would never reach the last ones (the wait is a guard, not a timing)."""
    count = 100
    others_done = threading.Event()
    done: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> bool:
        if i == 0:
            return others_done.wait(timeout=30)
        with lock:
            done.append(i)
            if len(done) == count - 1:
                others_done.set()
        return True

    with Pool(2, lambda _item, _exc: None) as pool:
        results = pool.map(work, range(count), False)
    assert results == [True] * count


class _Pages:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def paginate(self, *, Bucket: str, Prefix: str) -> Iterator[dict[str, object]]:  # noqa: N803
        contents = [
            {"Key": k, "Size": 71, "ETag": '"e"'} for k in self.keys if k.startswith(Prefix)
        ]
        yield {"Contents": contents}


class _Client:
    def __init__(self, keys: list[str]) -> None:
        self.keys = keys

    def get_paginator(self, _name: str) -> _Pages:
        return _Pages(self.keys)


def test_a_pass_keeps_of_the_source_s_tree_only_what_it_reads() -> None:
    """The tags' links always, the revision links for the sweep; never the layer and index
    links that are most of a registry's keys. The mirror's tree is kept whole."""
    layout, digest = Layout("reg"), "sha256:" + "a" * 64
    keys = sorted(
        [
            layout.tag_current_link("team/app", "v1"),
            layout.tag_index_link("team/app", "v1", digest),
            layout.revision_link("team/app", digest),
            layout.layer_link("team/app", digest),
            layout.blob_data(digest),
        ]
    )
    client = cast("S3Client", _Client(keys))
    source, dest = Side(client, Location("src", "reg")), Side(client, Location("dst", "reg"))
    tags = list_both(source, dest).source_tree
    assert list(tags) == [layout.tag_current_link("team/app", "v1")]
    for_the_sweep = list_both(source, dest, source_revisions=True).source_tree
    assert set(for_the_sweep) == {
        layout.tag_current_link("team/app", "v1"),
        layout.revision_link("team/app", digest),
    }
    assert len(list_both(source, dest).dest_tree) == 4  # every key under repositories/
