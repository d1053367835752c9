"""What a command says its run found, in a small JSON file the daemon reads after the run.

The daemon names the file in ``S3SYNCER_RESULT_FILE``; a command that has something to
report writes there, for example ``s3syncer replicate`` after a full pass::

    {"fullPass": true, "tags": {"checked": 1200, "repaired": 1, "deleted": 0, "kept": 2}}

``repaired`` counts the tags a full pass had to copy or fix: each is a change no event
brought, so a notification was lost (or the mirror was damaged). ``refused`` counts the
tags it would not copy (a hostile closure), ``broken`` those a proof (``verify``) found
that no restore could pull. The file is a report,
never a verdict: the run's exit code alone says whether it succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

TAG_COUNTS = ("checked", "repaired", "deleted", "kept", "refused", "broken")
RESULT_FILE_LIMIT = 64 * 1024  # bytes read at most; a larger file is no report


@dataclass(frozen=True)
class PassReport:
    """A run's own account of the tags it looked at, by what it did with them."""

    full_pass: bool
    tags: Mapping[str, int] = field(default_factory=dict)  # by the names in TAG_COUNTS

    @classmethod
    def from_document(cls, document: object) -> PassReport:
        """Read a result file's JSON document; ValueError says what is wrong with it.

        Counts other than :data:`TAG_COUNTS` are left out, so a newer command's file still
        reads; a count that is not a whole number from 0 up is an error.
        """
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        full_pass = document.get("fullPass", False)
        if not isinstance(full_pass, bool):
            raise ValueError('"fullPass" is not true or false')
        tags = document.get("tags", {})
        if not isinstance(tags, dict):
            raise ValueError('"tags" is not an object')
        counts: dict[str, int] = {}
        for name in TAG_COUNTS:
            value = tags.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f'"tags.{name}" is not a count')
            counts[name] = value
        return cls(full_pass, counts)

    def describe(self) -> str:
        """``"120 tags checked, 1 repaired, 0 deleted, 2 kept"``: what the page shows."""
        parts = [f"{count} {name}" for name, count in self.tags.items()]
        if not parts:
            return "no tag counted"
        first, *rest = parts
        number, _, name = first.partition(" ")
        head = f"{number} tag{'' if number == '1' else 's'} {name}"
        return ", ".join([head, *rest])
