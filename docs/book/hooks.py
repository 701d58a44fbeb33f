"""MkDocs hooks that make the book out of notebooks/ as it is (see mkdocs.yml beside this file).

* every notebooks/NN_name.ipynb becomes a page NN_name.html, in reading order, in the nav and on the index;
* every notebooks/solutions/*.py becomes a page of code under solutions/;
* MathJax is served from the site itself (the django-static-mathjax package ships it), never from a CDN.
"""

import json
import re
from importlib.resources import files as package_files
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# Reading order is the number, except notebooks read right after another one: 10 (BERT on one page) sums up 01-03.
READ_AFTER = {10: 3}
INDEX_PLACEHOLDER = "<!-- notebooks -->"
# The files of MathJax that a page loads: the TeX-to-HTML component with every extension built in, and its fonts.
MATHJAX = package_files("mathjax") / "static" / "mathjax" / "es5"
MATHJAX_FILES = ["tex-chtml-full.js", *(f"output/chtml/fonts/woff-v2/{f.name}" for f in
                                       (MATHJAX / "output/chtml/fonts/woff-v2").iterdir())]
# nbconvert's loader of mermaid diagrams, which imports mermaid from a CDN (the notebooks have no diagrams).
MERMAID_LOADER = re.compile(r'<script type="module">(?:(?!</script>).)*?jp-Mermaid.*?</script>', re.DOTALL)


def reading_order(notebooks: list[Path]) -> list[Path]:
    """NN_name notebooks sorted by NN, except that those in READ_AFTER come right after the one they follow."""
    def key(path: Path) -> float:
        number = int(path.name.split("_", 1)[0])
        return READ_AFTER[number] + 0.5 if number in READ_AFTER else number

    return sorted(notebooks, key=key)


def notebooks() -> list[Path]:
    return reading_order(list(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")))


def solutions() -> list[Path]:
    return sorted((NOTEBOOKS / "solutions").glob("*.py"))


def notebook_title(path: Path) -> str:
    """The notebook's first level-1 heading ("03 · Backward passes by hand, ..."), as on its page."""
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def on_config(config):
    config.nav = [
        {"Home": "index.md"},
        {"Notebooks": [path.name for path in notebooks()]},
        *([{"Solutions": [f"solutions/{path.stem}.md" for path in solutions()]}] if solutions() else []),
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns the .ipynb files into pages
def on_files(files, config):
    # Files of another folder rather than File.generated: mkdocs-jupyter's wrapper loses a generated file's path.
    for path in notebooks():
        files.append(File(path.name, str(NOTEBOOKS), config.site_dir, config.use_directory_urls))
    for path in solutions():
        page = f"# Solutions: {path.stem}\n\n````python\n{path.read_text(encoding='utf-8')}\n````\n"
        files.append(File.generated(config, f"solutions/{path.stem}.md", content=page))
    for name in MATHJAX_FILES:
        files.append(File(name, str(MATHJAX), config.site_dir, False, dest_uri=f"mathjax/{name}"))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri == "index.md":
        listing = "\n".join(f"* [{notebook_title(path)}]({path.name})" for path in notebooks())
        markdown = markdown.replace(INDEX_PLACEHOLDER, listing)
    return markdown


def on_page_content(html, page, config, files):
    return MERMAID_LOADER.sub("", html)
