"""Checks: pure functions that measure a property of a submitted object, usable outside pytest."""
