"""A headless Chromium for the tests that look at a page as a person does (``tests/test_summary_browser.py``).

The browser is the system's Chromium (Debian's ``chromium`` package, :data:`CHROMIUM`) driven by Playwright
(PyPI's ``playwright``, in the ``test`` extra: its wheel carries the driver). Playwright's own browser download
(``playwright install``) is never used: CI and this machine reach package registries only. ``.ci/run``
installs the package and sets ``TORCHGRADE_REQUIRE_BROWSER``; where :func:`require_browser` finds no browser
the tests fail under CI (``CI`` or ``TORCHGRADE_REQUIRE_BROWSER`` set) and are skipped elsewhere, both with
how to install it.

A page is opened from a local HTTP server (:func:`serve`) on 127.0.0.1, as an instructor opens a batch's
folder that a course server, a CI artifact or ``python -m http.server`` serves: every request gets a status,
so a missing image or link target is a 404 the test sees. ``file://`` (an unzipped folder opened from disk)
has no statuses; a test opens the page that way too and checks links and images on disk.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import posixpath
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The browser: Debian's chromium launcher; ``TORCHGRADE_CHROMIUM`` names another Chromium binary.
CHROMIUM = Path(os.environ.get("TORCHGRADE_CHROMIUM", "/usr/bin/chromium"))
#: What Chromium needs here: no sandbox (root, in a container), no GPU, and none of its own connections
#: (updates, sync, QUIC probes), which a closed network refuses and which would show up as failed requests.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: Milliseconds any one page action may take before the test fails (a page of a batch loads in well under 1 s).
TIMEOUT_MS = 15_000
HOW_TO_INSTALL = (
    "install Chromium and Playwright: `apt-get install -y --no-install-recommends chromium libatomic1` (Debian; "
    "or set TORCHGRADE_CHROMIUM to a Chromium binary) and `pip install -e .[test]` (PyPI's playwright; "
    "`playwright install` is not needed)"
)
MSG_NO_BROWSER = "the browser tests need a headless Chromium: {problem}; {how}"


def no_browser(*problems: str) -> None:
    """Fail (under CI: ``CI`` or ``TORCHGRADE_REQUIRE_BROWSER`` set) or skip (elsewhere) the calling test,
    saying what is missing and how to install it."""
    message = MSG_NO_BROWSER.format(problem="; ".join(problems), how=HOW_TO_INSTALL)
    if os.environ.get("CI", "").lower() not in ("", "0", "false") or os.environ.get("TORCHGRADE_REQUIRE_BROWSER"):
        pytest.fail(message, pytrace=False)  # CI never skips the browser tests
    pytest.skip(message)


def require_browser() -> None:
    """:func:`no_browser` when Chromium or Playwright is missing."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is not an executable")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        problems.append(f"Playwright does not import ({exc})")
    if problems:
        no_browser(*problems)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright ``Browser``); closed, with its driver, on exit."""
    require_browser()
    from playwright.sync_api import sync_playwright  # here: the fast lane never imports Playwright

    try:
        manager = sync_playwright()
        playwright = manager.__enter__()
    except Exception as exc:  # its node driver did not start: on a bare Debian, libatomic.so.1 is missing
        no_browser(f"Playwright's driver did not start ({exc}; its node binary needs libatomic.so.1: libatomic1)")
    try:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)


# -- serving a folder -----------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    """A static file server for one folder that maps a URL's percent-escaped bytes to the file name's bytes
    (as a web server on Linux does; the standard handler decodes them as UTF-8, so a submission whose name is
    not UTF-8 would get a 404) and records each request's path and status."""

    def __init__(self, *args: Any, served: Served, **kwargs: Any) -> None:
        self.served = served
        super().__init__(*args, directory=str(served.folder), **kwargs)

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        name = os.fsdecode(urllib.parse.unquote_to_bytes(path))
        parts = [part for part in posixpath.normpath(name).split("/") if part not in ("", ".", "..")]
        return os.path.join(self.directory, *parts)

    def send_head(self) -> Any:
        if self.path == "/favicon.ico" and not (self.served.folder / "favicon.ico").exists():
            self.send_response(204)  # Chromium asks every site for one; no icon is not an error a person sees
            self.end_headers()
            return None
        return super().send_head()

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        self.served.requests.append((urllib.parse.unquote(self.path), int(code)))

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log on the test's stderr


@dataclass
class Served:
    """A folder served on 127.0.0.1: ``url(name)`` is a file's URL; ``requests`` lists (path, status)."""

    folder: Path
    base: str = ""
    requests: list[tuple[str, int]] = field(default_factory=list)

    def url(self, name: str = "") -> str:
        return self.base + urllib.parse.quote(os.fsencode(name))

    def failed(self) -> list[tuple[str, int]]:
        return [(path, code) for path, code in self.requests if code >= 400]


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[Served]:
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) from a thread, for the duration of the block."""
    served = Served(Path(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, served=served))
    thread = threading.Thread(target=server.serve_forever, name="tests-http-server", daemon=True)
    thread.start()
    served.base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# -- a page and what went wrong on it -----------------------------------------------------------------------
@dataclass
class Visit:
    """A page with what a person would notice went wrong: console errors, uncaught exceptions, requests
    that failed or got an error status, and dialogs (an ``alert`` a page's text should never trigger)."""

    page: Any
    problems: list[str] = field(default_factory=list)


@contextlib.contextmanager
def visit(browser: Any, url: str, *, width: int = 1280, height: int = 900) -> Iterator[Visit]:
    """Open ``url`` in a fresh context of ``browser`` with a ``width`` x ``height`` viewport, its images
    loaded; the page is closed on exit."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    seen = Visit(page)
    page.on("console", lambda msg: msg.type == "error" and seen.problems.append(f"console error: {msg.text}"))
    page.on("pageerror", lambda exc: seen.problems.append(f"uncaught exception: {exc}"))
    page.on("requestfailed", lambda req: seen.problems.append(f"request failed: {req.url} ({req.failure})"))
    page.on("response", lambda res: res.status >= 400 and seen.problems.append(f"HTTP {res.status}: {res.url}"))

    def on_dialog(dialog: Any) -> None:
        seen.problems.append(f"dialog ({dialog.type}): {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        page.goto(url, wait_until="load")
        yield seen
    finally:
        context.close()


#: Every ``<img>`` of the page: its source, whether it loaded (natural size), its size as shown, and whether
#: any of it is on screen once scrolled to.
IMAGES_JS = """() => [...document.images].map(img => {
    const box = img.getBoundingClientRect();
    return {src: img.getAttribute("src"), alt: img.alt, complete: img.complete,
            natural: [img.naturalWidth, img.naturalHeight], shown: [box.width, box.height]};
})"""
#: Whether the page is wider than its viewport (a horizontal scroll bar): document and viewport widths.
#: ``widest`` names the first elements that stick out of the viewport or whose own content sticks out of them.
OVERFLOW_JS = """() => ({scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
    widest: [...document.body.querySelectorAll("*")]
        .filter(el => el.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5
                      || (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1))
        .slice(0, 5).map(el => el.tagName + ": " + el.textContent.slice(0, 80))})"""
#: The href of every link, as the browser resolved it.
LINKS_JS = "() => [...document.links].map(a => ({text: a.textContent, href: a.href}))"
