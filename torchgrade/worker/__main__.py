"""``python -m torchgrade.worker REQUEST_FD REPLY_FD``: the worker process's request loop.

Serves requests from the grader over two pipes (student ``print`` output goes to the worker's stdout,
never into the protocol) with a :class:`~torchgrade.worker.session.WorkerSession`.
"""

from __future__ import annotations

import os
import sys

from torchgrade.worker.confine import hide_paths, leave_root


def main(argv: list[str]) -> int:
    """Serve requests on the two file descriptors named in ``argv`` until the grader closes them."""
    request_fd, reply_fd = int(argv[0]), int(argv[1])
    options = dict(arg.removeprefix("--").split("=", 1) for arg in argv[2:] if arg.startswith("--"))
    if "writable" in options:  # the unshare tier: a read-only view with paths hidden, then not root
        hide_paths([arg.removeprefix("--hide=") for arg in argv[2:] if arg.startswith("--hide=")], options["writable"])
        leave_root(argv[:2])  # re-executes this worker as uid 65534 of a nested user namespace
    # Never import from the current directory: python -m put it at the front of sys.path.
    sys.path[:] = [p for p in sys.path if p not in ("", os.getcwd())]
    # torch is imported only now: the unshare tier re-executes this worker above, and a first import
    # of torch there (about a second) would be thrown away.
    import torch

    from torchgrade import wire
    from torchgrade.worker.session import WorkerSession

    threads = os.environ.get("TORCHGRADE_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    session = WorkerSession(isolated=True)
    # The loop holds what it calls in local names, bound before any submission code runs: code that
    # later replaces WorkerSession.handle or wire.write_frame (reachable as sys.modules["__main__"])
    # does not change what this loop calls. Replies carry the request's sequence number, so bytes a
    # student thread writes on the reply pipe are detected by the grader, not taken for a reply.
    handle, read_frame, write_frame, getpid, exit_now = (
        session.handle,
        wire.read_frame,
        wire.write_frame,
        os.getpid,
        os._exit,
    )
    worker = getpid()
    while True:
        try:
            frame = read_frame(request_fd)
        except EOFError:
            return 0
        reply = handle(frame)
        if getpid() != worker:  # a child the submission forked came back out of its call:
            exit_now(0)  # only the worker itself ever speaks to the grader
        write_frame(reply_fd, reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
