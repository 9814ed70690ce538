"""The untrusted side: the only place where student code runs.

``python -m torchgrade.worker`` (:mod:`torchgrade.worker.__main__`) serves the grader's requests;
:class:`~torchgrade.worker.session.WorkerSession` executes them (also in the grader's process,
``--isolation none``, through :class:`torchgrade.isolation.transport.InProcessBackend`);
:mod:`~torchgrade.worker.loader` imports the submission under a private package name
(:class:`~torchgrade.worker.loader.LoadedSubmission`); :mod:`~torchgrade.worker.tracebacks` trims
student tracebacks to their own frames; :mod:`~torchgrade.worker.confine` is the ``unshare`` sandbox
tier's part inside the worker. This package imports nothing of the grader side: only
:mod:`torchgrade.wire`, its own modules and, when an ``apply`` request names one, a module of
:mod:`torchgrade.probes`.
"""
