"""The seam: no module of interp outside interp/backend imports TransformerLens, in any form.

Every import statement is found by parsing each module (so imports inside functions, under TYPE_CHECKING
or in try blocks count too), and `importlib.import_module("transformer_lens...")` / `__import__` calls with
a literal name are caught as well.
"""

import ast
from pathlib import Path

import interp

ROOT = Path(interp.__file__).parent
SEAM = ROOT / "backend"
LIBRARY = "transformer_lens"


def _imports_library(name: str | None) -> bool:
    return name is not None and (name == LIBRARY or name.startswith(LIBRARY + "."))


def library_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """(line, statement) of every import of TransformerLens in `source`."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _imports_library(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _imports_library(node.module):
            found.append((node.lineno, f"from {node.module} import {', '.join(a.name for a in node.names)}"))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called in ("import_module", "__import__") and _imports_library(str(node.args[0].value)):
                found.append((node.lineno, f"{called}({node.args[0].value!r})"))
    return sorted(found)


def test_only_the_seam_imports_transformer_lens():
    offenders = [
        f"{path.relative_to(ROOT.parent)}:{line}: {statement}"
        for path in sorted(ROOT.rglob("*.py"))
        if SEAM not in path.parents
        for line, statement in library_imports(path.read_text(), str(path))
    ]
    assert not offenders, "only interp/backend may import transformer_lens; use interp.backend instead:\n" + "\n".join(
        offenders
    )


def test_the_seam_does_import_it():
    assert any(library_imports(p.read_text()) for p in SEAM.glob("*.py"))


def test_every_kind_of_import_is_caught():
    source = (
        "import transformer_lens\n"
        "import transformer_lens.utils as u\n"
        "from transformer_lens import HookedTransformer\n"
        "from transformer_lens.utils import get_act_name\n"
        "def f():\n"
        "    from transformer_lens.components import Unembed\n"
        "    return importlib.import_module('transformer_lens.patching')\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from transformer_lens import HookedTransformerConfig\n"
        "import transformer_lensish\n"
        "from interp.backend import Model\n"
    )
    assert [line for line, _ in library_imports(source)] == [1, 2, 3, 4, 6, 7, 10]
