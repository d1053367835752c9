"""``python -m s3syncer``: the same as the ``s3syncer`` command."""

import sys

from .cli import main

sys.exit(main())
