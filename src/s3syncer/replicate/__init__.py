"""``s3syncer replicate`` and ``s3syncer verify``: an S3-to-S3 registry mirror and its proof.

Tools a command runs, never part of the daemon. The parts, one concern each:

* the opening: :mod:`.arguments` (the flags, checked once into frozen values; with
  :mod:`.durations`), :mod:`.session` (flags, boto3, both clients: the same for both tools),
  :mod:`.sides` (the two S3 sides; boto3, loaded only here: the optional ``replicate`` extra)
  and :mod:`.roots` (a wrong root is named);
* what a run covers: :mod:`.run_input` (the events, or a full convergent pass),
  :mod:`.changes` (events replayed to their net effect), :mod:`.hints` (events are hints:
  the source is read first), :mod:`.keep` (deletes wait for their window), :mod:`.sweep`
  (what nothing references goes, after the window and one full pass);
* the plan: :mod:`.layout` (Distribution's storage keys, manifests' references),
  :mod:`.catalog` (the listings both sides start from, each held compactly by
  :mod:`.listing`), :mod:`.plan` (closures, bounded),
  :mod:`.cache` (what never changes, kept across runs) and :mod:`.screen` (gone or refused);
* the copier: :mod:`.pool` (the run's worker threads), :mod:`.transfer` (blob bodies),
  :mod:`.writes` (links, tags, deletes) and :mod:`.copier` (the order that keeps the mirror
  consistent), :mod:`.report` (what the run did) and :mod:`.result_file` (for the daemon);
* the commands: :mod:`.command` (``replicate``), :mod:`.verify` and :mod:`.verify_report`.
"""

from __future__ import annotations

from .arguments import Location, add_arguments, add_verify_arguments
from .command import run
from .copier import Replicator
from .verify import run as run_verify

__all__ = ["Location", "Replicator", "add_arguments", "add_verify_arguments", "run", "run_verify"]
