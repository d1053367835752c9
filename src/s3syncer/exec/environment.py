"""The environment a command's process gets: what it inherits, what it is told, and what
it never sees.

A command that prints its environment puts it in the log and on ``/status``. The daemon's
own secrets (``S3SYNCER_TOKEN``, and any inherited variable holding the webhook token,
however it was read) are therefore dropped from what a command inherits. A variable the
operator names in ``env:`` is kept as written: that is a choice, not an accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..model.config import CommandConfig

# What s3syncer itself reads as a secret from its environment.
SECRET_VARIABLES = frozenset({"S3SYNCER_TOKEN"})
# A secret this long is sought inside values too (`Bearer TOKEN`); a shorter one only as a
# whole value, or a two-letter token would strip every PATH that happens to contain it.
SEARCHED_LENGTH = 8


def command_environment(
    daemon_env: Mapping[str, str],
    command: CommandConfig,
    run_vars: Mapping[str, str],
    secrets: Iterable[str] = (),
) -> dict[str, str]:
    """The environment of one run of ``command``: inherited, less secrets, plus its own."""
    env: dict[str, str] = {}
    if command.inherit_env:
        hidden = [secret for secret in secrets if secret]
        env = {
            name: value
            for name, value in daemon_env.items()
            if name not in SECRET_VARIABLES and not _holds_any(value, hidden)
        }
    for name in command.unset_env:
        env.pop(name, None)
    env.update(command.env)
    env.update(run_vars)
    return env


def _holds_any(value: str, secrets: list[str]) -> bool:
    return any(
        value == secret or (len(secret) >= SEARCHED_LENGTH and secret in value)
        for secret in secrets
    )
