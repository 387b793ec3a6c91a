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


MOVED = {
    "interp.locate": "interp.locator.ranking",
    "interp.unit_scores": "interp.locator.units",
    "interp.ablation": "interp.locator.ablation",
    "interp.unit_ablation": "interp.locator.ablation",
    "interp.unit_masks": "interp.locator.mask_learning",
    "interp.gradient_scores": "interp.locator.gradient_scores",
    "interp.integrated_gradients": "interp.locator.integrated_gradients",
    "interp.patching": "interp.locator.patching",
    "interp.attention": "interp.locator.rare_tokens",
    "interp.injection": "interp.locator.injection",
    "interp.locator_validation": "interp.locator.validation",
    "interp.report.audit_step": "interp.report.steps.audit",
}
"""Old module paths kept one release as forwarding shims."""


def test_no_module_of_interp_imports_an_old_path():
    graph = import_graph()
    users = {m: sorted(graph[m] & set(MOVED)) for m in graph if m not in MOVED and graph[m] & set(MOVED)}
    assert users == {}


def test_every_old_path_forwards_with_a_warning():
    import importlib

    import pytest

    names = {
        "interp.locate": "locate_memorization_head",
        "interp.unit_ablation": "unit_ablation",
        "interp.ablation": "head_ablation",
        "interp.attention": "rare_token_attention",
        "interp.locator_validation": "validate_locator",
    }
    for old, new in MOVED.items():
        module = importlib.import_module(old)
        name = names.get(old) or next(n for n in vars(importlib.import_module(new)) if not n.startswith("_"))
        with pytest.warns(DeprecationWarning, match=f"moved to {new}"):
            assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_the_old_audit_step_path_still_works_and_warns():
    import pytest

    import interp.report.audit_step as old
    from interp.report.steps import audit
    from interp.report.types import Transient

    with pytest.warns(DeprecationWarning, match="moved to interp.report.steps.audit"):
        assert old.REPORT_AUDIT is audit.REPORT_AUDIT
    with pytest.warns(DeprecationWarning, match="moved to interp.report.types"):
        assert old.Transient is Transient


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
