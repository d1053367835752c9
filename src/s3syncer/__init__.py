"""s3syncer: run a sync command when a container registry says something changed."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("s3syncer")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
