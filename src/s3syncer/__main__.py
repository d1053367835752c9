"""``python -m s3syncer``: the same as the ``s3syncer`` command."""

from .cli.main import entry

entry()
