"""``s3syncer replicate`` and ``s3syncer verify``: an S3-to-S3 registry mirror and its proof.

Tools a command runs, never part of the daemon. The parts, one concern each:

* :mod:`.arguments`: the flags of both tools, checked once into frozen values;
* :mod:`.sides`: the two S3 sides (boto3, loaded only here: the optional ``replicate`` extra);
* the plan: :mod:`.layout` (Distribution's storage keys, manifests' references),
  :mod:`.changes` (events replayed to their net effect), :mod:`.catalog` (the tags a storage
  holds) and :mod:`.plan` (closures, what a run copies);
* the copier: :mod:`.pool` (the run's worker threads), :mod:`.transfer` (blob bodies through
  one transfer manager) and :mod:`.copier` (the order that keeps the mirror consistent);
* the commands: :mod:`.command` (``replicate``) and :mod:`.verify`.
"""

from __future__ import annotations

from .arguments import Location, add_arguments, add_verify_arguments
from .command import run
from .copier import Replicator
from .verify import run as run_verify

__all__ = ["Location", "Replicator", "add_arguments", "add_verify_arguments", "run", "run_verify"]
