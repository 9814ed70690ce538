"""Probes: the only functions the worker runs next to student objects (``Submission.apply``).

A probe computes and returns plain data (parameter values, a receptive field, the record of a
training run); the grader's checks (:mod:`torchgrade.checks`) decide. The worker refuses to apply
anything outside this package.
"""
