"""The book site (`make book`): built by the same command, served on localhost, and read in headless Chromium.

Every page must load without a console error, a page error or a failed request, and ask nothing of any host
but the local server; the index links every notebook in reading order; a notebook page shows its figures
(decoded images) and its math (typeset by the site's own MathJax, without TeX errors).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "docs" / "book"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; `make setup` installs it when run as root
# Without the background-networking flags Chromium calls Google's hosts, and logs errors on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Markup that makes a browser fetch something: a page of the book must never point it at another host.
EXTERNAL_LOAD = re.compile(r"<(?:script|img|iframe|source|embed|video|audio)\b[^>]*\ssrc=\"(?:https?:)?//"
                           r"|<link\b[^>]*\shref=\"(?:https?:)?//|(?:url\(|@import)\s*[\"']?(?:https?:)?//|import\(\s*[\"']https?:")

pytestmark = pytest.mark.slow  # a site build (~10 s) and a browser


def load_hooks():
    spec = importlib.util.spec_from_file_location("book_hooks", BOOK / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = load_hooks()


def build_book(site: Path) -> None:
    """What `make book` runs, into another folder."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "-f", str(BOOK / "mkdocs.yml"),
                    "--site-dir", str(site)], check=True, env=env)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("book")
    build_book(site)
    return site


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)  # port 0: a free one
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` as root, or `apt-get install chromium`", pytrace=False)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS)
        yield context
        context.close()


class Visit:
    """A page opened in the browser, with every problem it had while loading."""

    def __init__(self, browser, server: str, path: str):
        self.page = browser.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console error: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed request: {r.url} ({r.failure})"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.page.on("request", lambda r: r.url.startswith((server, "data:"))
                     or self.problems.append(f"request to another host: {r.url}"))
        self.page.goto(f"{server}/{path}", wait_until="load")
        if self.page.evaluate("'MathJax' in window"):
            self.page.wait_for_function("window.MathJax.startup?.promise")
            self.page.evaluate("MathJax.startup.promise")  # typesetting done
        self.page.wait_for_load_state("networkidle")  # the fonts MathJax asked for, the search index

    def count(self, selector: str) -> int:
        return self.page.locator(selector).count()


@pytest.fixture
def visit(browser, server):
    opened = []

    def open_page(path: str) -> Visit:
        opened.append(Visit(browser, server, path))
        return opened[-1]

    yield open_page
    for page in opened:
        page.page.close()


def test_reading_order_is_the_number_except_10_right_after_03():
    names = [Path(f"{n}_x.ipynb") for n in ("09", "10", "01", "03", "02", "04")]
    assert [p.name[:2] for p in hooks.reading_order(names)] == ["01", "02", "03", "10", "04", "09"]


def test_no_page_points_the_browser_at_another_host(site):
    for page in site.rglob("*.html"):
        match = EXTERNAL_LOAD.search(page.read_text(encoding="utf-8"))
        assert match is None, f"{page.relative_to(site)} loads from outside: ...{match.group(0)}..."


def test_index_links_every_notebook_in_reading_order(visit):
    index = visit("index.html")
    assert index.page.title() == "Mini-BERT, twice"
    links = index.page.locator("article li a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    notebooks = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert sorted(links) == [f"{stem}.html" for stem in notebooks]
    assert links == [f"{p.stem}.html" for p in hooks.notebooks()]
    assert not index.problems, index.problems


def test_notebook_page_shows_its_figures_and_math(visit):
    nb = visit("03_backward_by_hand.html")
    assert nb.page.title().startswith("03 · Backward passes by hand")
    assert nb.page.locator("h1").first.inner_text().startswith("03 · Backward passes by hand")
    sizes = nb.page.locator(".jp-OutputArea-output img").evaluate_all(
        "images => images.map(i => i.complete ? i.naturalWidth : 0)")
    assert sizes and all(width > 0 for width in sizes), f"figures not decoded: widths {sizes}"
    assert nb.count("mjx-container[display='true']") > 0 and nb.count("mjx-container:not([display])") > 0
    assert nb.count("mjx-merror") == 0, "MathJax could not typeset some TeX"
    assert not nb.problems, nb.problems


def test_every_page_loads_cleanly(site, visit):
    pages = sorted(str(p.relative_to(site)) for p in site.rglob("*.html") if p.name != "404.html")
    assert len(pages) > len(hooks.notebooks())
    problems = {page: found.problems for page in pages if (found := visit(page)).problems}
    assert not problems, problems
