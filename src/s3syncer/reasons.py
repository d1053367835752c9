"""Why a run starts: the values of ``S3SYNCER_REASON`` (and of the runs metric's label)."""

from __future__ import annotations

from typing import Literal

Reason = Literal["startup", "event", "reconcile", "schedule", "manual", "retry", "recovered"]
