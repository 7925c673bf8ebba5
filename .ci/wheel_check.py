"""Smoke test of an installed jaxconv wheel; run by .ci/wheel_test.sh.

Run it with the fresh venv's python from outside the source tree: it fails
if jaxconv is imported from anywhere but that venv, if the wheel lacks its
data (the cost model) or its py.typed marker, or if any method disagrees with
lax on this backend.
"""

import importlib.resources
import sys
import warnings
from pathlib import Path

import jax.numpy as jnp
import jaxconv
from jaxconv.testing import check_against_lax

pkg = Path(jaxconv.__file__).resolve().parent
assert Path(sys.prefix).resolve() in pkg.parents, f"jaxconv imported from {pkg}, not the venv"
for data in ("_data/cost_model.json", "py.typed"):
  assert importlib.resources.files("jaxconv").joinpath(data).is_file(), f"wheel lacks {data}"

# Every method (and auto) against lax: values, VJPs, JVP, second order.
for method in (*jaxconv.method_names(), "auto"):
  results = check_against_lax(method, (2, 4, 9, 9), (6, 2, 3, 3), groups=2, stride=2,
                              padding="SAME")
  print(f"check_against_lax({method!r}): {len(results)} quantities ok")

# auto reads the packaged cost model: an unreadable one warns and falls back to
# the generic profile, so warnings are errors while it is read. On a CPU
# other than the one it was measured on, auto uses it as the nearest profile.
from jaxconv import _profiles  # noqa: E402

_profiles.clear_caches()
with warnings.catch_warnings():
  warnings.simplefilter("error")
  shipped = _profiles.shipped()
assert shipped, "the wheel's cost model has no profiles"
with warnings.catch_warnings():
  warnings.simplefilter("ignore")   # the nearest-profile notice on another CPU
  prof = _profiles.profile("cpu")
  plan = jaxconv.select_method((8, 96, 56, 56), (96, 1, 7, 7), padding=3, groups=96,
                               backend="cpu")
  x, w = jnp.ones((1, 8, 16, 16)), jnp.ones((8, 1, 7, 7))
  y = jaxconv.conv(x, w, padding=3, groups=8, method="auto")
assert prof.key in shipped and prof.source in ("shipped", "nearest"), prof
assert "shipped profile" in plan.reasons[0], plan.reason
assert y.shape == x.shape and float(y[0, 0, 8, 8]) == 49.0
print(f"auto ({prof.source} profile {prof.key!r}): {plan}")
print(f"jaxconv {jaxconv.__version__} from {pkg}: wheel ok")
