"""The layout that shows the book: numpy_bert's top level is the lesson, its subpackages the machinery.

Checked from the source (no imports run): the dependency rules of "What is where" (docs/design.md),
the size of the book, and that the public names import from the top as transformers' do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMPY_BERT = ROOT / "numpy_bert"
# Bottom to top: a subpackage may import the book and the subpackages before it, never one after it.
MACHINERY = ("text", "data", "fast", "pipelines", "training", "cli", "exercises")
FACADES = ("__init__", "__main__")  # the package's public face and `python -m`: they may import anything
# The book's chapters: BERT (modeling, heads and what they stand on) and the family members built from its
# layers (roberta, albert, electra, distilbert), one module each, as transformers has one per model.
FAMILY = ("roberta", "albert", "electra", "distilbert")
MAX_BOOK_MODULES = 14 + len(FAMILY)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import heads`
    return names


def layer_of(module: str) -> int | None:
    """0 for the book, 1.. for the machinery in MACHINERY's order, None outside numpy_bert."""
    parts = module.split(".")
    if parts[0] != "numpy_bert" or len(parts) == 1:
        return None
    return MACHINERY.index(parts[1]) + 1 if parts[1] in MACHINERY else 0


def source_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_book_is_small():
    book = sorted(p.stem for p in NUMPY_BERT.glob("*.py"))
    assert len(book) <= MAX_BOOK_MODULES, f"numpy_bert/ has {len(book)} modules (at most {MAX_BOOK_MODULES}): {book}"
    folders = sorted(p.name for p in NUMPY_BERT.iterdir() if (p / "__init__.py").is_file())
    assert folders == sorted(MACHINERY), f"subpackages {folders}, expected {sorted(MACHINERY)}"


@pytest.mark.parametrize("path", source_files(NUMPY_BERT), ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_point_one_way(path: Path):
    if path.stem in FACADES and path.parent == NUMPY_BERT:
        return
    own = layer_of(".".join(path.relative_to(ROOT).with_suffix("").parts))
    imports = imported_modules(path)
    assert not {m for m in imports if m.split(".")[0] == "torch"}, f"{path.name} imports torch"
    upward = sorted(m for m in imports if (layer := layer_of(m)) is not None and layer > own)
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}, which sit above it: move the name down"


def class_summaries(path: Path) -> dict[str, str]:
    """Each class of a module, in order, with the first line of its docstring."""
    return {node.name: (ast.get_docstring(node) or "").split("\n")[0]
            for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}


@pytest.mark.parametrize("name", ["modeling", "heads", *FAMILY])
def test_torch_bert_mirrors_the_book(name: str):
    """torch_bert's model modules are the twins of numpy_bert's: the same classes, in the same order,
    each summed up by the same line (so ``diff`` shows the API translation and the backward passes)."""
    ours, twin = class_summaries(NUMPY_BERT / f"{name}.py"), class_summaries(ROOT / "torch_bert" / f"{name}.py")
    assert list(twin) == list(ours), f"torch_bert/{name}.py defines {list(twin)}, numpy_bert/{name}.py {list(ours)}"
    differ = {cls: (line, twin[cls]) for cls, line in ours.items() if twin[cls] != line}
    assert not differ, f"class docstrings differ between the twins: {differ}"


PUBLIC = ["BertConfig", "BertTokenizer", "BertModel", "BertForPreTraining", "BertForSequenceClassification",
          "BertForTokenClassification", "BertForQuestionAnswering",
          "RobertaConfig", "RobertaModel", "RobertaForMaskedLM", "RobertaTokenizer",
          "AlbertConfig", "AlbertModel", "AlbertForMaskedLM", "AlbertForPreTraining",
          "ElectraConfig", "ElectraForMaskedLM", "ElectraForPreTraining",
          "DistilBertConfig", "DistilBertModel", "DistilBertForMaskedLM"]


@pytest.mark.parametrize("package", ["numpy_bert", "torch_bert"])
def test_public_names_import_from_the_top(package: str):
    module = __import__(package)
    missing = [name for name in PUBLIC if not hasattr(module, name)]
    assert not missing, f"`from {package} import ...` lacks {missing}"
    assert set(PUBLIC) <= set(module.__all__)
