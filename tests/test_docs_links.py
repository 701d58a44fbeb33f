"""The Markdown pages hold together: every relative link and image points at a file that exists, every
anchor (``page.md#heading``) at a heading of that page as GitHub slugs it, and the README links every page
of docs/. Code (fenced blocks and inline spans) is text, not links.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", ROOT / "notebooks" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^ *(```|~~~).*?^ *\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
HTML_LINK = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=\"([^\"]+)\"")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def _prose(markdown: str) -> str:
    return FENCE.sub("", markdown)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to hyphens, -1, -2 ... for repeats."""
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(_prose(markdown)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def broken_links(page: Path, markdown: str | None = None) -> list[str]:
    """The targets in ``page`` (or in ``markdown``, read as if it were ``page``) that lead nowhere."""
    markdown = page.read_text(encoding="utf-8") if markdown is None else markdown
    text = INLINE_CODE.sub("", _prose(markdown))
    broken = []
    for target in LINK.findall(text) + HTML_LINK.findall(text):
        if EXTERNAL.match(target):
            continue
        path, _, anchor = unquote(target).partition("#")
        file = (page.parent / path).resolve() if path else page
        if path and not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md":
            headings = anchors(file.read_text(encoding="utf-8") if path else markdown)
            if anchor not in headings:
                broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    return broken


def test_the_checker_finds_what_is_broken_and_only_that():
    page = ROOT / "docs" / "example.md"  # read as if it lived in docs/; never written
    markdown = "\n".join([
        "# A title", "## Two `words`, here", "## Two `words`, here",
        "[ok](../README.md) ![ok](parity-errors.png) [ok](#two-words-here) [ok](#two-words-here-1)",
        "[gone](missing.md) ![gone](missing.png) [bad anchor](#nowhere) [bad anchor](../README.md#nowhere)",
        "[web](https://example.org/x) `[code](missing-in-code.md)`",
        "```", "[fenced](missing-in-fence.md)", "```",
    ])
    assert broken_links(page, markdown) == ["missing.md: no such file", "missing.png: no such file",
                                            "#nowhere: no heading #nowhere in docs/example.md",
                                            "../README.md#nowhere: no heading #nowhere in README.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_and_images_resolve(page):
    assert page.is_file(), page
    assert not broken_links(page), f"{page.relative_to(ROOT)}: " + "; ".join(broken_links(page))


def test_the_readme_links_every_docs_page():
    text = INLINE_CODE.sub("", _prose((ROOT / "README.md").read_text(encoding="utf-8")))
    linked = {(ROOT / unquote(t).partition("#")[0]).resolve() for t in LINK.findall(text) if not EXTERNAL.match(t)}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"README.md links no {missing}"
