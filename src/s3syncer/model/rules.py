"""A command's ``events`` rules, applied: which events trigger it."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from .event import Event

if TYPE_CHECKING:  # the replicate tool reads these events too, without the daemon's config
    from .config import EventRule


def rule_matches(rule: EventRule, event: Event) -> bool:
    """Whether every field that ``rule`` names matches ``event``, and its ``unless`` does not."""
    if rule.action is not None and rule.action != event.action:
        return False
    if rule.tagged is not None and rule.tagged != event.tagged:
        return False
    if rule.repository is not None and not fnmatchcase(event.repository, rule.repository):
        return False
    if rule.tag is not None and not fnmatchcase(event.tag or "", rule.tag):
        return False
    if rule.media_type is not None and not fnmatchcase(event.media_type or "", rule.media_type):
        return False
    return rule.unless is None or not rule_matches(rule.unless, event)


def matching(rules: Iterable[EventRule], events: Iterable[Event]) -> list[Event]:
    """The events that at least one of ``rules`` matches, in order."""
    rules = tuple(rules)
    return [event for event in events if any(rule_matches(rule, event) for rule in rules)]
