"""Every notebook in notebooks/ executes top to bottom without an error.

Each notebook runs in a fresh IPython kernel through nbclient, in memory (the
files on disk, with their saved outputs, are left alone). The kernel is the
ipykernel installed in *this* interpreter's environment: the test builds its own
kernel manager whose spec search skips every kernelspec directory, so
jupyter_client falls back to ipykernel's built-in `python3` spec and launches
`sys.executable -m ipykernel_launcher`. Nothing is registered globally, and a
`python3` kernelspec installed elsewhere (user or system) cannot redirect the
run to another Python.

The training notebook must also report a held-out accuracy of at least 97% on
scikit-learn's digits (fixed seed, test split never trained on).
"""

from __future__ import annotations

import pathlib
import re
import sys
import time

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600  # per cell; generous, for a heavily loaded CI machine
ACCURACY_BAR = 0.97


def _kernel_manager() -> AsyncKernelManager:
  """A kernel manager for this interpreter's own ipykernel (see module docstring)."""
  specs = KernelSpecManager(kernel_dirs=[])
  spec = specs.get_kernel_spec("python3")  # ipykernel's built-in spec: argv[0] == "python"
  assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv
  return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _execute(path: pathlib.Path):
  nb = nbformat.read(path, as_version=4)
  client = nbclient.NotebookClient(
      nb, km=_kernel_manager(), timeout=CELL_TIMEOUT_S, kernel_name="python3",
      resources={"metadata": {"path": str(path.parent)}})
  start = time.perf_counter()
  client.execute()  # raises CellExecutionError on the first failing cell
  return nb, time.perf_counter() - start


def _stdout(nb) -> str:
  return "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []) if out.get("output_type") == "stream")


def test_notebooks_are_present():
  names = [p.stem for p in NOTEBOOKS]
  assert names == ["01_patches", "02_conv_as_matmul", "03_fft_and_crossover", "04_edges",
                   "05_backprop_as_convolution", "06_training", "07_sharding"], names


def test_saved_notebooks_have_outputs_and_no_errors():
  """The committed files keep their outputs (they are read on the web) and none is an error."""
  for path in NOTEBOOKS:
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), f"{path.name}: not executed"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: saved with an error output"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.get("outputs", [])), (
        f"{path.name}: no plot saved")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path):
  nb, seconds = _execute(path)
  print(f"{path.name}: executed in {seconds:.1f} s")
  if path.stem == "06_training":
    found = re.findall(r"held-out accuracy: ([0-9.]+)", _stdout(nb))
    assert found, "06_training did not print its held-out accuracy"
    assert float(found[-1]) >= ACCURACY_BAR, f"held-out accuracy {found[-1]} < {ACCURACY_BAR}"
