"""s3syncer: run a sync command when a container registry says something changed."""

from functools import cache

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # __version__ is looked up on first use, not on import: importlib.metadata costs about
    # 0.1 s (0.25 s under load), which `serve` would spend before it can catch a SIGHUP
    # and `replicate`, run on every push, would spend for nothing
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("s3syncer")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0+unknown"
