"""The package's shape, as docs/architecture.md draws it: a small core, one folder per command
family, imports that only go down, and a render start-up path without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from kit.build import REPO_ROOT, sops_env

PACKAGE = REPO_ROOT / "compiler" / "connc"
FAMILIES = ("validate", "render", "check", "diff", "author", "keys")
# What each part may import besides the core (and itself). The core imports no family; the
# CLI imports every family, each inside its command. `schema` is part of the core.
MAY_IMPORT = {
    "validate": set(),
    "render": set(),
    "check": {"render"},  # a probe renders the one-connection bundle a pipeline would get
    "diff": {"validate"},  # each side is read as validate reads it
    "author": {"validate", "render"},  # validated as validate would, sealed as render reads it
    "keys": {"validate", "author"},  # the keyring validate checks; resealed as `connc seal` does
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that `name` imports, at module level or inside functions."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + [base]).strip(".")
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m in known and m != name and not name.startswith(m + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _part(module: str) -> str:
    """The family a module belongs to, or "core", or "cli"."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FAMILIES:
        return parts[1]
    return "cli" if parts[1:2] in (["cli"], ["__main__"]) else "core"


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for following in sorted(graph[node]):
                if following == start:
                    cycles.append(" -> ".join([*path, start]))
                elif following > start and following not in path:
                    stack.append((following, [*path, following]))
    assert cycles == []


def test_imports_go_down_only() -> None:
    wrong = []
    for module, imported in sorted(_graph().items()):
        source = _part(module)
        if source == "cli":
            continue
        allowed = {"core", source} | MAY_IMPORT.get(source, set())
        wrong += [f"{module} imports {target}" for target in sorted(imported)
                  if _part(target) not in allowed]
    assert wrong == []


def test_the_top_level_is_a_small_core() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__"))
    # Sixteen modules, and room for two more: a concern that needs more than a module gets a
    # core subpackage of its own, as github and sops did.
    assert len(top) <= 18, top
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    # Core subpackages: the schemas; the CI identity that render, check and `connc id-token`
    # share (secretless connections); the GitHub API client; sops and what it records.
    assert packages == sorted([*FAMILIES, "schema", "identity", "github", "sops"])


def test_render_loads_no_heavy_library(tmp_path: Path) -> None:
    # Render runs at every pipeline start: the models and the round-trip YAML library are
    # validate's and new's (render checks files against the generated schemas instead), and
    # a plain render command line is parsed without click (connc.__main__).
    code = ("import sys\nfrom connc.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(sorted(m.split('.')[0] for m in sys.modules "
            "if m.split('.')[0] in ('pydantic', 'ruamel', 'click', 'jinja2')"
            " or m.startswith('connc.identity')))")
    argv = ["render", "--pipeline", "demo", "--out", str(tmp_path / "bundle")]
    ran = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO_ROOT,
                         env=sops_env(REPO_ROOT / "demo" / "demo-age-key.txt"),
                         capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().splitlines()[-1] == "[]"


def _documented_core() -> dict[str, set[str]]:
    """docs/architecture.md's core table: module -> what it says the module imports."""
    table: dict[str, set[str]] = {}
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The core", 1)[1].split("\n## ", 1)[0]
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`") or cells[0] == "`module`":
            continue
        imports = cells[-1].split("(")[0]  # "http (types only)": the module is what counts
        named = {name.strip().split(" ")[0] for name in imports.split(",")
                 if name.strip() and name.strip() != "—"}
        for module in cells[0].split(","):  # "`identity/aws`, `identity/sigv4`": one row
            table[module.strip().strip("`").replace("/", ".")] = named
    return table


def test_the_core_table_says_what_each_core_module_imports() -> None:
    """Every core module has its row in docs/architecture.md, and the row names each part of
    connc the module imports (a subpackage's modules by the subpackage or by their names)."""
    graph = _graph()
    documented = _documented_core()
    core = {name.removeprefix("connc.") for name in graph
            if _part(name) == "core" and name != "connc" and not name.endswith("__init__")
            and (PACKAGE / Path(*name.split(".")[1:])).with_suffix(".py").exists()}
    assert sorted(core - documented.keys()) == []
    wrong = []
    for module in sorted(core):
        for target in sorted(graph[f"connc.{module}"]):
            name = target.removeprefix("connc.")
            if name == "__init__" or not name:
                continue
            said = documented[module]
            if not ({name, name.split(".")[0]} & said or any(n.startswith(name + ".")
                                                             for n in said)):
                wrong.append(f"{module} imports {name}, which its row does not name")
    assert wrong == []
