"""Fixtures of the fault suite (helpers in faultkit.py)."""

from faultkit import built, finer, oracle  # noqa: F401  (the fixtures)
