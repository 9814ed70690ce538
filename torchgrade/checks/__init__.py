"""Checks: grader-side oracles and assertions (shapes, closeness, independent implementations,
thresholds). They never run next to student objects; what must, lives in :mod:`torchgrade.probes`."""
