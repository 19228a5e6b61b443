"""The engine stands apart from the training lab: no module of the engine (core/ outside
core/training/, the CLI aside), of webui/ or of the pages imports core.training, directly or
through another engine module. Checked two ways: statically (every import statement, also the
ones inside functions) and at run time (what importing the app's modules pulls in)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAB = "core.training"


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)  # `from core import training`
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                out.add(str(node.args[0].value))
    return out


def _engine_files() -> list[Path]:
    core = [p for p in (REPO / "core").rglob("*.py")
            if "training" not in p.relative_to(REPO / "core").parts and p.name != "__main__.py"]
    app = [REPO / "Home.py", *(REPO / "pages").glob("*.py"), *(REPO / "webui").glob("*.py")]
    return core + app


def test_the_import_walker_sees_relative_and_lazy_imports(tmp_path):
    lab_user = REPO / "core" / "training" / "train.py"
    assert "core.metrics" in _imports(lab_user) and "core.training.oof" in _imports(lab_user)
    assert "core.inference" in _imports(lab_user)          # a lazy import inside a function


def test_no_engine_module_imports_the_training_lab():
    files = _engine_files()
    assert len(files) > 20
    offenders = {str(p.relative_to(REPO)): sorted(m for m in _imports(p) if m == LAB or m.startswith(LAB + "."))
                 for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_loading_the_app_modules_pulls_in_no_training_code():
    code = ("import sys, runpy; sys.path.insert(0, '.');"
            "import core.inference, core.batch, core.ray_engine, core.paths, core.loading, core.weights;"
            "import webui.state, webui.tables, webui.plots, webui.cards, webui.display;"
            "print(sorted(m for m in sys.modules if m.startswith('core.training')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_cli_still_reaches_the_lab():
    out = subprocess.run([sys.executable, "-m", "core", "train", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--data" in out.stdout and "Not available here" not in out.stdout
