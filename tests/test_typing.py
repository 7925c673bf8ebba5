"""The public API is typed (PEP 561): annotations everywhere, and the marker.

mypy (`make test`) checks the bodies; this checks that no public signature is
left without annotations, which mypy's per-module flags cannot single out.
"""

import inspect
from importlib import resources

import pytest

import jaxconv
from jaxconv import kernels, nn, testing

PUBLIC = [(jaxconv, n) for n in jaxconv.__all__] + [
    (m, n) for m in (kernels, nn, testing) for n in m.__all__]


def _callables(module, name):
  """`(qualified name, function)` for a public function, or a class's public
  methods and properties."""
  obj = getattr(module, name)
  qual = f"{module.__name__}.{name}"
  if not inspect.isclass(obj):
    return [(qual, obj)]
  out = []
  for attr, member in vars(obj).items():
    if attr.startswith("_"):
      continue
    fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    if inspect.isfunction(fn):
      out.append((f"{qual}.{attr}", fn))
  return out


@pytest.mark.parametrize("module, name", PUBLIC, ids=[f"{m.__name__}.{n}" for m, n in PUBLIC])
def test_public_signatures_are_annotated(module, name):
  for qual, fn in _callables(module, name):
    sig = inspect.signature(fn)
    missing = [p.name for p in sig.parameters.values()
               if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")]
    assert not missing, f"{qual}: parameters without annotations: {missing}"
    assert sig.return_annotation is not inspect.Signature.empty, f"{qual}: no return annotation"


def test_submodules_declare_their_public_names():
  for module in (kernels, nn, testing):
    assert module.__all__, module.__name__
    for name in module.__all__:
      assert getattr(module, name).__doc__, f"{module.__name__}.{name}"


def test_py_typed_marker_ships():
  assert resources.files("jaxconv").joinpath("py.typed").is_file()
