"""The package's shape: no import cycle among interp's modules (counting imports inside functions too, and the
package `__init__` every import runs first), and every module importable first, in an interpreter that has
imported nothing of interp."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import interp

ROOT = Path(interp.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _packages_run_first(importer: str, target: str) -> set[str]:
    """The packages whose `__init__` importing `target` runs before `target` itself, leaving out the importer's
    own packages (already running when the importer runs): `interp.report.types` from `interp.views.x` runs
    `interp.report`'s `__init__` first."""
    parts = target.split(".")
    parents = {".".join(parts[:i]) for i in range(1, len(parts))}
    own = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 2)}
    return parents - own


def import_graph() -> dict[str, set[str]]:
    """Module -> the interp modules it imports (an imported name resolves to its module where it is one), and the
    packages whose `__init__` those imports run first."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("interp"):
                names = [f"{node.module}.{a.name}" for a in node.names]
                targets = [n if n in modules else resolve(node.module) for n in names]
            elif isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.startswith("interp")]
            else:
                continue
            targets = [t for t in targets if t and t != module]
            graph[module] |= set(targets) | {p for t in targets for p in _packages_run_first(module, t)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_an_import_runs_the_packages_above_its_target_that_the_importer_is_not_in():
    assert _packages_run_first("interp.views.sections.heads", "interp.report.types") == {"interp.report"}
    assert _packages_run_first("interp.report.runner", "interp.report.types") == set()


def test_interp_has_no_import_cycle():
    graph = import_graph()
    assert "interp.report.runner" in graph and "interp.report.types" in graph["interp.report.runner"]
    assert cycles(graph) == [], "import cycles (each a set of modules importing one another)"


def test_the_report_sections_depend_on_the_shared_types_not_on_the_runner():
    graph = import_graph()
    sections = [m for m in graph if m.startswith("interp.views.sections.")]
    assert sections
    assert not [
        m
        for m in sections
        if graph[m] & {"interp.report.runner"} or any(d.startswith("interp.report.steps") for d in graph[m])
    ]


REMOVED = (
    "interp.locate",
    "interp.unit_scores",
    "interp.ablation",
    "interp.unit_ablation",
    "interp.unit_masks",
    "interp.gradient_scores",
    "interp.integrated_gradients",
    "interp.patching",
    "interp.attention",
    "interp.injection",
    "interp.locator_validation",
    "interp.report.audit_step",
    "interp._moved",
    "interp.reft",
)
"""Old module paths that forwarded to interp.locator and interp.report.steps for a while, now gone; and interp.reft,
moved to interp.unlearning.reft beside the other unlearning methods (no release promised the old path)."""


def test_the_old_module_paths_are_gone_and_nothing_names_them():
    import importlib.util
    import re

    root = Path(interp.__file__).parent.parent
    assert [m for m in REMOVED if importlib.util.find_spec(m) is not None] == []
    names = "|".join(re.escape(m.removeprefix("interp.")) for m in REMOVED)
    pattern = re.compile(rf"\binterp\.({names})\b(?![\w(])")  # a call, interp.gradient_scores(...), is the function
    texts = [root / "README.md"]
    texts += [p for d in ("interp", "tests", "analyses", "benchmarks", "docs") for p in (root / d).rglob("*.py")]
    texts += [p for d in ("docs", "analyses") for p in (root / d).rglob("*.md")]
    users = {str(p.relative_to(root)) for p in texts if p.name != "test_structure.py" and pattern.search(p.read_text())}
    assert users == set()


FIRST_IMPORTS = """
import importlib, os, sys, traceback
# the third-party libraries interp's modules import, loaded once; each interp module is then imported first in a
# forked child that has loaded nothing of interp
import circuitsvis, einops, jaxtyping, numpy, plotly.graph_objects, scipy.stats, torch, tqdm
import transformer_lens, transformers
for name in ("HookedTransformer", "TransformerBridge"):  # TransformerLens 4 loads its model classes on first use
    try:
        getattr(transformer_lens, name)
    except (AttributeError, ImportError):
        pass
failed = []
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc(limit=-1).strip().splitlines()[-1].encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    if os.waitpid(pid, 0)[1] != 0:
        failed.append(name + ": " + message)
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _all_modules() -> list[str]:
    """Every module of interp but the other backend's (it imports a TransformerLens this environment lacks) and the
    `python -m interp` entry point (running it is the command line, not an import)."""
    from interp.backend import NAME

    other = {"interp.backend.bridge", "interp.backend.bridge_io"} if NAME == "hooked" else {
        "interp.backend.hooked", "interp.backend.hooked_io"}  # fmt: skip
    names = (_module_name(p) for p in ROOT.rglob("*.py"))
    return sorted(m for m in names if m not in other and not m.endswith("__main__"))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="imports each module in a forked interpreter")
def test_every_module_imports_first_in_a_fresh_interpreter():
    """A package cycle shows only when its module is the first imported (`import interp.views.sections` once
    failed so, whatever imported it second worked): each module is imported first, in its own process."""
    modules = _all_modules()
    assert "interp.views.sections" in modules and "interp.report.types" in modules
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", FIRST_IMPORTS, *modules], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_the_shared_report_types_are_one_leaf_under_their_old_paths_too():
    import interp.report.types as old_types
    import interp.report_types as types
    import interp.views.report_html as report_html

    graph = import_graph()
    assert not {m for m in graph["interp.report_types"] if m.startswith(("interp.report", "interp.views"))}
    for name in ("Bundle", "Skipped", "Step", "StepInputs", "Transient", "Section", "Table"):
        assert getattr(old_types, name) is getattr(types, name)
    assert report_html.Section is types.Section and report_html.Table is types.Table
