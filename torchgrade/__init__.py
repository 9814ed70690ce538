"""torchgrade: a test-driven autograder for deep-learning assignments in PyTorch.

Graders are pytest modules (``graders/``) that talk to a submission through proxies
(:mod:`torchgrade.engine.proxy`); student code runs in a worker (:mod:`torchgrade.worker`); results go to a
JSON report validated against ``schema/report.schema.json`` (:mod:`torchgrade.reporting.report`).
"""

__version__ = "0.1.0"
