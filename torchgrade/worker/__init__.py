"""The untrusted side: the only place where student code runs.

``python -m torchgrade.worker`` (:mod:`torchgrade.worker.__main__`) serves the grader's requests;
:class:`~torchgrade.worker.session.WorkerSession` executes them (also in-process, ``--isolation none``);
:mod:`~torchgrade.worker.loader` imports the submission under a private package name. This package
imports nothing of the grader side: only :mod:`torchgrade.wire` and :mod:`torchgrade.probes` (what an
``apply`` request may run).
"""
