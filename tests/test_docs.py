"""The documentation works: its code examples run, and Sphinx builds it without a warning.

* Every fenced ``python`` block of ``README.md``, ``docs/*.md`` and ``docs/examples/*.md`` is executed in a
  temporary working directory (files written by examples land there): each block in a fresh
  namespace on the pages listed in ``SELF_CONTAINED``; in order, one namespace per file, on the
  others (the blocks of a page share state, as a reader running them would). A block whose info
  string is not plain ``python`` (``python no-run``, ``text``, ``bash``, ...) is skipped.
* The Sphinx build runs with ``-W`` (warnings are errors), as CI does.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DOC_FILES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted(DOCS.glob("examples/*.md"))]

# An opening fence of three or more backticks or tildes with its info string, the body, and a
# closing fence of the same character at least as long (CommonMark). Fences may be indented by up
# to three spaces; the indentation is removed from the body.
_FENCE = re.compile(
    r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)"
    r"^ {0,3}(?P=fence)(?P<more>`*|~*)[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, source) of every fenced block whose info string is exactly ``python``."""
    blocks = []
    for m in _FENCE.finditer(text):
        info = m.group("info").strip().split()
        if info != ["python"] and info != ["py"] and info != ["{code-block}", "python"]:
            continue
        indent = len(m.group("indent"))
        body = "".join(
            line[min(indent, len(line) - len(line.lstrip(" "))) :]
            for line in m.group("body").splitlines(keepends=True)
        )
        line_no = text.count("\n", 0, m.start()) + 2
        blocks.append((line_no, body))
    return blocks


def test_block_extraction():
    text = (
        "intro\n"
        "```python\nx = 1\n```\n"
        "```python no-run\nraise SystemExit\n```\n"
        "````markdown\n```python\nnested = 1\n```\n````\n"
        "```text\nnot code\n```\n"
        "```bash\npip install mcem\n```\n"
        "  ```python\n  y = x + 1\n  ```\n"
    )
    blocks = python_blocks(text)
    assert [b for _, b in blocks] == ["x = 1\n", "y = x + 1\n"]
    assert blocks[0][0] == 3


#: Pages whose code blocks each run on their own (a reader may copy any one of them alone); they
#: are run block by block in fresh namespaces below, which is stricter than running them in order.
SELF_CONTAINED = [ROOT / "README.md", DOCS / "models.md", DOCS / "chains.md", DOCS / "vbem.md"]


@pytest.mark.parametrize("path", [p for p in DOC_FILES if p not in SELF_CONTAINED],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_run(path, tmp_path, monkeypatch):
    if not path.exists():
        pytest.skip(f"{path.name} does not exist yet")
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    if not blocks:
        pytest.skip(f"{path.name} has no python code block")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    namespace = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    rel = path.relative_to(ROOT)
    for line_no, source in blocks:
        code = compile(source, f"{rel}:{line_no}", "exec")
        try:
            exec(code, namespace)
        except Exception as exc:
            raise AssertionError(
                f"the python block at {rel}, line {line_no}, failed: {type(exc).__name__}: {exc}"
            ) from exc
    try:  # examples that draw figures must not leave them open
        import matplotlib.pyplot as plt
    except ImportError:
        pass
    else:
        plt.close("all")


@pytest.mark.parametrize("path", SELF_CONTAINED, ids=lambda p: str(p.relative_to(ROOT)))
def test_each_code_block_runs_on_its_own(path, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    rel = path.relative_to(ROOT)
    blocks = python_blocks(path.read_text(encoding="utf-8"))
    assert blocks
    for line_no, source in blocks:
        try:
            exec(compile(source, f"{rel}:{line_no}", "exec"), {"__name__": "docs_block"})
        except Exception as exc:
            raise AssertionError(
                f"the python block at {rel}, line {line_no}, does not run on its own: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def test_sphinx_build(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"sphinx-build -W failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr}"
    )
    for page in ("index", "getting-started", "theory", "api", "errors"):
        assert (out / f"{page}.html").is_file(), f"{page}.html was not built"


def test_the_design_page_names_every_module():
    """docs/design.md draws the package: every module and package of mcem is in its table, and
    every submodule of a package (models and datasets aside) is named in that package's row."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "design.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in page.splitlines()
            if line.startswith("| `mcem/")}
    missing = []
    for path in sorted((root / "mcem").iterdir()):
        if path.name.startswith("__pycache__") or (path.is_file() and path.suffix != ".py"):
            continue
        key = f"mcem/{path.name}/" if path.is_dir() else f"mcem/{path.name}"
        if key not in rows:
            missing.append(key)
            continue
        if path.is_dir() and path.name not in ("models", "datasets"):
            for sub in sorted(path.glob("*.py")):
                if sub.stem != "__init__" and f"`{sub.stem}`" not in rows[key]:
                    missing.append(f"{key}{sub.name}")
    assert not missing, f"docs/design.md does not name: {missing}"
