"""The package's structure, checked on its source: layers, privacy, imports at the top.

- Imports between the package's modules form layers: each module imports only modules of
  lower layers (``LAYERS``), so there is no import cycle and a new module has to say where
  it sits.
- No module imports another module's underscore names (``from bayesgmm.x import _y``, or
  ``x._y`` on an imported module); private *modules* (``bayesgmm.em._state``) hold public
  names for the package's own use.
- No import inside a function, except of optional or heavy third-party dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "bayesgmm"

# Lowest first. A module may import modules of strictly lower layers, and the private
# modules of its own subpackage listed in an earlier layer.
LAYERS: list[tuple[str, ...]] = [
    ("bayesgmm._errors", "bayesgmm._arrays", "bayesgmm._cache", "bayesgmm._threads", "bayesgmm._rental"),
    ("bayesgmm._eigen",),
    ("bayesgmm.covariance", "bayesgmm.chunks", "bayesgmm.datasets", "bayesgmm.convert", "bayesgmm.em._hierarchical"),
    ("bayesgmm.families",),
    ("bayesgmm._validation", "bayesgmm._conditional"),
    ("bayesgmm.params", "bayesgmm.sharding"),
    ("bayesgmm.em._state", "bayesgmm.em._init", "bayesgmm.model", "bayesgmm.io", "bayesgmm.plot"),
    ("bayesgmm.em._config", "bayesgmm.em._estep", "bayesgmm.em._kernels", "bayesgmm._variational"),
    ("bayesgmm.em._data", "bayesgmm.em._memory"),
    ("bayesgmm.em._host", "bayesgmm.em._online"),
    ("bayesgmm.em._streaming",),
    ("bayesgmm.em._fit",),
    ("bayesgmm.em",),
    ("bayesgmm.inference",),
    ("bayesgmm.selection", "bayesgmm.resampling"),
    ("bayesgmm",),
    ("bayesgmm.sklearn", "bayesgmm.cli._render", "bayesgmm.cli._parser"),
    ("bayesgmm.cli._files",),
    ("bayesgmm.cli._commands",),
    ("bayesgmm.cli",),
    ("bayesgmm.cli.__main__",),
]

# Third-party packages that may be imported inside a function: extras (matplotlib, scikit-learn,
# rich, pyarrow), and ArviZ and pandas, which are heavy and needed only by some calls.
OPTIONAL = {"matplotlib", "sklearn", "rich", "pyarrow", "pandas", "arviz", "arviz_base", "arviz_stats", "arviz_plots"}

# The package's modules that a function may import when it needs them, and why: importing NumPyro
# takes about a third of ``import bayesgmm`` (0.4-0.6 s on 2 cores), and EM (em_fit, select by
# BIC, the GaussianMixture estimator) never needs it. ``bayesgmm/__init__.py`` loads ``infer``,
# ``Posterior`` and ``Priors`` on first use.
LAZY_MODULES = {"bayesgmm.inference"}


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), filename=str(path))
    return modules


MODULES = _modules()


def _imported_modules(name: str, tree: ast.Module) -> set[str]:
    """The package's modules that ``name`` imports at its top level."""
    imported = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayesgmm"):
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                imported.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names if alias.name.startswith("bayesgmm")}
    return imported - {name}


def test_every_module_has_a_layer():
    layered = {name for layer in LAYERS for name in layer}
    missing = sorted(set(MODULES) - layered - {"bayesgmm.data"})
    assert not missing, f"add these modules to LAYERS in {__file__}: {missing}"


def test_imports_only_go_down():
    rank = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    upward = [
        f"{name} (layer {rank[name]}) imports {other} (layer {rank.get(other)})"
        for name, tree in MODULES.items()
        if name in rank
        for other in _imported_modules(name, tree)
        if other in rank and rank[other] >= rank[name] and not other.startswith(name + ".")
    ]
    assert not upward, "\n".join(upward)


def test_no_private_names_across_modules():
    offences = []
    for name, tree in MODULES.items():
        imported_modules = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bayesgmm"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full in MODULES:
                        imported_modules[alias.asname or alias.name] = full
                    elif alias.name.startswith("_"):
                        offences.append(f"{name}: from {node.module} import {alias.name}")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("bayesgmm"):
                        imported_modules[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and f"{imported_modules[node.value.id]}.{node.attr}" not in MODULES
            ):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert not offences, "\n".join(offences)


def test_no_imports_inside_functions_but_optional_ones():
    offences = []
    for name, tree in MODULES.items():
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom):
                    targets = [node.module or ""]
                elif isinstance(node, ast.Import):
                    targets = [alias.name for alias in node.names]
                else:
                    continue
                offences += [
                    f"{name}.{function.name}: {target}"
                    for target in targets
                    if target.split(".")[0] not in OPTIONAL and target not in LAZY_MODULES
                ]
    assert not offences, "\n".join(sorted(set(offences)))


def test_lazy_imports_go_down():
    """A function's import of a lazily loaded module obeys the layers as a top-level import would."""
    rank = {name: index for index, layer in enumerate(LAYERS) for name in layer}
    upward = [
        f"{name} imports {node.module} inside a function"
        for name, tree in MODULES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in LAZY_MODULES and rank[node.module] >= rank[name]
    ]
    assert not upward, "\n".join(upward)


def test_em_and_select_leave_numpyro_and_pandas_unloaded():
    """``import bayesgmm``, ``em_fit`` and ``select`` by BIC leave NumPyro (and inference) and pandas
    unloaded; ``infer`` loads NumPyro on first use, and reading a selection's ``table`` pandas. In a
    fresh interpreter: this process has imported everything."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, bayesgmm\n"
        "X = np.random.default_rng(0).normal(size=(60, 2))\n"
        "bayesgmm.em_fit(X, 2); selection = bayesgmm.select(X, k=[1, 2])\n"
        "print(sorted(m for m in ('numpyro', 'bayesgmm.inference', 'bayesgmm.model', 'pandas') if m in sys.modules))\n"
        "print(type(selection.table).__name__, 'pandas' in sys.modules, len(selection.table))\n"
        "bayesgmm.infer\n"
        "print('numpyro' in sys.modules)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert completed.stdout.split() == ["[]", "DataFrame", "True", "8", "True"], completed.stdout + completed.stderr


@pytest.mark.parametrize("name", ["bayesgmm.em", "bayesgmm"])
def test_public_api_is_explicit(name):
    """``__all__`` lists the public names, each defined, none private."""
    import importlib

    module = importlib.import_module(name)
    assert all(not public.startswith("_") or public == "__version__" for public in module.__all__)
    assert all(hasattr(module, public) for public in module.__all__)
