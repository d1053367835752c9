"""The webhook benchmark: s3syncer against a bare Hypercorn-Trio app, measured in one run.

``benchmarks/run`` (or ``python -m benchmarks.webhook`` from the repository root) starts
the servers (:mod:`.servers`), drives the load of each figure (:mod:`.scenarios`, with the
clients in :mod:`.load` and the external tools found by :mod:`.tools`), optionally records a
profile (:mod:`.profiling`), then prints the table and writes the results files
(:mod:`.report`). It installs nothing and never edits a README: a person copies figures
from ``benchmarks/results/`` into ``benchmarks/README.md``.
"""


class BenchmarkError(RuntimeError):
    """Something kept a figure from being measured."""
