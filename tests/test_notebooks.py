"""The notebooks in notebooks/ execute without error on a fresh kernel.

Each notebook runs top to bottom in a new IPython kernel of this interpreter (``sys.executable``,
through a kernel spec written to a temporary folder, so a user's own ``python3`` spec cannot pick
another Python). A cell that raises fails the test with the cell and its traceback; the notebooks
also assert their own claims (the quickstart's agreement with scikit-learn).

The stored notebooks keep their outputs, which the docs site renders. To refresh them after a
change: ``.venv/bin/python tests/test_notebooks.py`` (executes each notebook and writes it back).
"""

import json
import os
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL_NAME = "bayesgmm-notebook-test"
# conftest.py's fast compilation (XLA's optimisation level 0) halves compile time but slows what
# the programs run: the notebooks' NUTS samplers run for seconds, and a sparse fit of Old Faithful
# (k = 6, 2 chains of 600 iterations) took 22.8 s warm at level 0 against 3.6 s at the default.
# So the kernels of the notebooks that sample (RUN_BOUND) compile at XLA's default level (the stored
# outputs were made so); the others, compile-bound, keep level 0 (messy_data 10.8 s against 13.0 s).
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")
RUN_BOUND = ("bayesian_diagnostics", "model_selection")  # 41 s -> 26 s and 107 s -> 67 s, run alone on 2 cores
CELL_TIMEOUT_S = 600  # one cell: the LOO comparison compiles and runs three samplers


def _write_kernel_spec(folder: Path, xla_flags: str) -> None:
    """A kernel spec that starts ipykernel in this interpreter with ``XLA_FLAGS``, under ``folder/kernels``."""
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major}.{sys.version_info.minor} (bayesgmm tests)",
        "language": "python",
        "env": {"XLA_FLAGS": xla_flags},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def execute_notebook(path: Path, kernel_folder: Path):
    """Run ``path`` on a fresh kernel; return the executed notebook (raises ``CellExecutionError``)."""
    import nbformat
    from nbclient import NotebookClient

    flags = os.environ.get("XLA_FLAGS", "").split()
    if path.stem in RUN_BOUND:
        flags = [flag for flag in flags if flag not in FAST_COMPILE_FLAGS]
    _write_kernel_spec(kernel_folder, " ".join(flags))
    notebook = nbformat.read(path, as_version=4)
    environment = {"JUPYTER_PATH": os.pathsep.join([str(kernel_folder), os.environ.get("JUPYTER_PATH", "")])}
    previous = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)  # the kernel spec manager reads JUPYTER_PATH when it is created
    try:
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name=KERNEL_NAME,
            record_timing=False,  # no timestamps in the stored cells' metadata
            resources={"metadata": {"path": str(path.parent)}},  # the notebook's folder as working directory
        )
        client.execute()
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    return notebook


@pytest.mark.slow
@pytest.mark.parametrize("name", ["quickstart", "bayesian_diagnostics", "model_selection", "messy_data"])
def test_notebook_executes(name, tmp_path):
    from nbclient.exceptions import CellExecutionError

    try:
        notebook = execute_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    except CellExecutionError as error:
        pytest.fail(f"notebooks/{name}.ipynb failed:\n{error}")
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors, f"notebooks/{name}.ipynb produced error outputs: {errors}"


def test_stored_notebooks_keep_outputs():
    """The docs render the stored outputs: every code cell ran, in order, and the plots are there."""
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        counts = [cell.execution_count for cell in code_cells]
        assert counts == list(range(1, len(code_cells) + 1)), f"{path.name}: not executed top to bottom ({counts})"
        outputs = [output for cell in code_cells for output in cell.outputs]
        assert not [output for output in outputs if output.output_type == "error"], f"{path.name}: stored errors"
        assert any("image/png" in output.get("data", {}) for output in outputs), f"{path.name}: no stored plot"


if __name__ == "__main__":  # refresh the stored outputs: python tests/test_notebooks.py [names...]
    import tempfile
    import time

    import nbformat

    names = sys.argv[1:] or [path.stem for path in sorted(NOTEBOOKS.glob("*.ipynb"))]
    for name in names:
        path = NOTEBOOKS / f"{name}.ipynb"
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            executed = execute_notebook(path, Path(folder))
        nbformat.write(executed, path)
        print(f"{path}: executed in {time.perf_counter() - start:.1f} s")
