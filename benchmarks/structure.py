"""Structure report of the package: lines per module, the largest functions, imports inside
functions, and cross-module imports of underscore names.

Run: ``python benchmarks/structure.py [PACKAGE_DIR]`` (default: ``bayesgmm`` beside this folder).
Optional dependencies imported inside functions are listed apart (they are allowed there).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OPTIONAL = (
    "matplotlib",
    "sklearn",
    "rich",
    "arviz",
    "arviz_base",
    "arviz_stats",
    "arviz_plots",
    "pandas",
    "pyarrow",
    "h5netcdf",
    "xarray",
    "numpyro",
    "platformdirs",
)


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def report(root: Path) -> None:
    lines, functions, inner, private = {}, [], [], []
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root)
        tree = ast.parse(path.read_text())
        lines[name] = len(path.read_text().splitlines())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) is not None and len(node.body) > 1 else node.body
                code = node.end_lineno - body[0].lineno + 1 + (body[0].lineno - node.lineno if body is node.body else 0)
                functions.append((node.end_lineno - node.lineno + 1, code, f"{name}.{node.name}"))
                for inner_node in ast.walk(node):
                    if isinstance(inner_node, (ast.Import, ast.ImportFrom)):
                        target = (
                            inner_node.module if isinstance(inner_node, ast.ImportFrom) else inner_node.names[0].name
                        )
                        target = target or ""
                        kind = "optional" if target.split(".")[0] in OPTIONAL else "package/other"
                        inner.append((kind, f"{name}.{node.name}: {target}"))
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayesgmm"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        # importing a private *module* (bayesgmm.em._state) is fine; a private name from a module is not
                        if (
                            not (root.parent / Path(*node.module.split("."), alias.name)).with_suffix(".py").exists()
                            and not (root.parent / Path(*node.module.split("."), alias.name)).is_dir()
                        ):
                            private.append(f"{name}: from {node.module} import {alias.name}")
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                if isinstance(node.value, ast.Name) and node.value.id in {
                    "em",
                    "init",
                    "streaming",
                    "missing",
                    "params",
                    "sharding",
                    "host_em",
                    "chunks",
                    "covariance",
                    "model",
                    "inference",
                }:
                    private.append(f"{name}: {node.value.id}.{node.attr}")
    print(f"{'module':40s} lines")
    for name, count in sorted(lines.items(), key=lambda item: -item[1]):
        print(f"{name:40s} {count}")
    print(
        f"\ntotal {sum(lines.values())} lines in {len(lines)} modules\n\nlargest functions (lines, without docstring):"
    )
    for length, code, name in sorted(functions, reverse=True)[:5]:
        print(f"  {length:4d} {code:4d}  {name}")
    print("largest function bodies (without docstring):")
    for length, code, name in sorted(functions, key=lambda item: -item[1])[:5]:
        print(f"  {length:4d} {code:4d}  {name}")
    package_inner = [item for kind, item in inner if kind != "optional"]
    print(f"\nimports inside functions: {len(inner)} ({len(package_inner)} not of optional dependencies)")
    for item in package_inner:
        print("  ", item)
    print(f"\ncross-module private imports/attributes: {len(private)}")
    for item in private:
        print("  ", item)


if __name__ == "__main__":
    report(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "bayesgmm")
