"""Shared test fixtures: the real registry bodies in tests/fixtures/distribution-2.8."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent
# In the repository, so that a clone runs its tests wherever it is (S3SYNCER_FIXTURES: others).
FIXTURES = Path(
    os.environ.get("S3SYNCER_FIXTURES", REPO / "tests" / "fixtures" / "distribution-2.8")
)
# Bodies whose events are tagged manifest pushes: the only ones the default rule accepts.
TAGGED_PUSHES = frozenset({"02-push-manifest-tag-v1.json", "05-push-manifest-tag-latest.json"})


def fixture_files() -> list[Path]:
    """Every real registry request body, in the order the registry sent them."""
    files = sorted(FIXTURES.glob("*.json"))
    if not files:
        raise RuntimeError(f"no registry fixtures in {FIXTURES}")
    return files


def fixture_body(name: str) -> bytes:
    """One real registry request body, by file name."""
    return (FIXTURES / name).read_bytes()


@pytest.fixture
def fixture_bodies() -> dict[str, bytes]:
    """File name -> exact body the registry POSTed."""
    return {path.name: path.read_bytes() for path in fixture_files()}


# Hypothesis: the full budget unless the fast loop asks for its profile
# (`pytest -m "not integration and not slow" --hypothesis-profile=fast`); CI runs both.
settings.register_profile("full", max_examples=100_000, deadline=None)
settings.register_profile("fast", max_examples=10, deadline=None)
settings.load_profile("full")
