"""Fixtures of the fault suite (helpers in faultkit.py)."""

from faultkit import finer  # noqa: F401  (the fixture)
