"""Event type patterns, matched exactly as the core matches them.

A pattern is an exact event type ("device.state_changed"), a prefix ending in ".*"
("device.*": any type that starts with "device." and has something after the dot,
however many dots follow), or "*" (every event)."""

import re

_TYPE_RE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def type_valid(event_type):
    """True if event_type is a valid event type: 1..128 characters of [a-z0-9_-.],
    no leading, trailing or doubled dot."""
    return (isinstance(event_type, str) and 0 < len(event_type) <= 128
            and _TYPE_RE.match(event_type) is not None)


def pattern_valid(pattern):
    """True if pattern is "*", a valid type, or a valid type followed by ".*"."""
    if pattern == "*":
        return True
    if isinstance(pattern, str) and len(pattern) > 2 and pattern.endswith(".*"):
        return type_valid(pattern[:-2])
    return type_valid(pattern)


def match(pattern, event_type):
    """True if event_type matches pattern (exact, "prefix.*" or "*")."""
    if pattern == "*":
        return True
    if len(pattern) > 2 and pattern.endswith(".*"):
        prefix = pattern[:-1]  # keeps the dot: "device."
        return event_type.startswith(prefix) and len(event_type) > len(prefix)
    return pattern == event_type
