"""Probes: functions the worker runs next to student objects (``Submission.apply``).

A probe computes and returns plain data (parameter values, a receptive field, the record of a
training run); the grader's checks (:mod:`torchgrade.checks`) decide. These probes name no
assignment: an assignment's own probes live with its graders, in a probe module
(``graders/_probes_<topic>.py``, which sets ``__torchgrade_probes__ = True``) whose source
``Submission.apply`` sends to the worker. The worker refuses to apply anything else.
"""
