"""Argument normalisation and validation, done once, into a frozen `Geometry`.

Everything here works on static Python values (shapes, ints, strings), never on
array values, so it is safe under `jit`/`vmap`/`grad`. All shape arithmetic of
the library lives here; methods read it from `Geometry`, never re-derive it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._typing import Padding, Size

if TYPE_CHECKING:  # typing.TypeIs is Python >= 3.13
  from typing_extensions import TypeIs

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER", "FULL")

Pairs = tuple[tuple[int, int], ...]


def _entry(field: str, index: int, doc: str) -> property:
  """A read-only property: entry `index` of the shape field `field`."""
  return property(lambda self: getattr(self, field)[index], doc=doc)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Everything static about one convolution: hashable, so usable under `jit`.

  Layout is always channels-first: `x` is `(N, C_in, *spatial)` and `w` is
  `(C_out, C_in // groups, *kernel)`. `padding` is the *zero* padding a method
  applies (lax semantics: `(lo, hi)` per spatial dim, negative crops); padding
  modes other than zeros are applied before a method runs, so a method's
  geometry always has `padding_mode == "zeros"` for the padding it sees.

  Attributes:
    in_shape: `(N, C_in, *spatial)` of the input a method receives.
    kernel_shape: `(C_out, C_in // groups, *kernel)`.
    stride: window strides, one per spatial dim.
    padding: `(lo, hi)` zero padding per spatial dim (may be negative).
    dilation: kernel (rhs) dilation per spatial dim.
    lhs_dilation: input (lhs) dilation per spatial dim (transposed convs).
    groups: feature groups.
    padding_mode: the user's padding mode; 'zeros' in the geometry a method's
      `conv` receives (`_padding.method_geometry`).
    flip: True for true convolution (kernel flipped) rather than correlation.
      The public functions flip the kernel before a method runs.
    dtype: dtype of `x` (and `w`).
    precision: passed to every dot/einsum; as lax's `precision`.
    preferred_element_type: accumulation/output dtype, as lax's.
  """

  in_shape: tuple[int, ...]
  kernel_shape: tuple[int, ...]
  stride: tuple[int, ...]
  padding: Pairs
  dilation: tuple[int, ...]
  lhs_dilation: tuple[int, ...]
  groups: int = 1
  padding_mode: str = "zeros"
  flip: bool = False
  dtype: Any = np.dtype("float32")
  precision: Any = None
  preferred_element_type: Any = None

  # --- sizes -------------------------------------------------------------
  @property
  def rank(self) -> int:
    """Number of spatial dimensions."""
    return len(self.in_shape) - 2

  batch = _entry("in_shape", 0, "N, the batch size.")
  in_channels = _entry("in_shape", 1, "C_in, all groups together.")
  out_channels = _entry("kernel_shape", 0, "C_out, all groups together.")
  in_channels_per_group = _entry("kernel_shape", 1,
                                 "C_in // groups: the channels each output channel reads.")

  @property
  def out_channels_per_group(self) -> int:
    """C_out // groups."""
    return self.kernel_shape[0] // self.groups

  @property
  def in_spatial(self) -> tuple[int, ...]:
    return tuple(self.in_shape[2:])

  @property
  def kernel_size(self) -> tuple[int, ...]:
    return tuple(self.kernel_shape[2:])

  @property
  def effective_kernel_size(self) -> tuple[int, ...]:
    """Kernel extent after rhs dilation: `d * (k - 1) + 1`."""
    return tuple(dilate_dim(k, d) for k, d in zip(self.kernel_size, self.dilation))

  @property
  def padded_spatial(self) -> tuple[int, ...]:
    """Input extent after lhs dilation and zero padding."""
    return tuple(
        dilate_dim(n, ld) + lo + hi
        for n, ld, (lo, hi) in zip(self.in_spatial, self.lhs_dilation, self.padding))

  @property
  def out_spatial(self) -> tuple[int, ...]:
    """Output spatial shape: the seeds' floor formula, per dim (`out_size`)."""
    return out_size(self.padded_spatial, self.kernel_size, self.stride, self.dilation)

  @property
  def out_shape(self) -> tuple[int, ...]:
    return (self.batch, self.out_channels, *self.out_spatial)

  @property
  def is_depthwise(self) -> bool:
    """One input channel per group (depthwise / channel-multiplier convs)."""
    return self.in_channels_per_group == 1 and self.groups > 1

  @property
  def is_unit(self) -> bool:
    """No stride, dilation or padding: the plainest 'VALID' correlation."""
    return (all(s == 1 for s in self.stride) and all(d == 1 for d in self.dilation)
            and all(d == 1 for d in self.lhs_dilation)
            and all(p == (0, 0) for p in self.padding))

  @property
  def flops(self) -> int:
    """Multiply-adds x 2 of the direct definition (no skipped zeros)."""
    return (2 * self.batch * self.out_channels * math.prod(self.out_spatial)
            * self.in_channels_per_group * math.prod(self.kernel_size))

  def replace(self, **changes) -> Geometry:
    return dataclasses.replace(self, **changes)


def dilate_dim(n: int, d: int) -> int:
  """Extent of `n` samples spread `d` apart: `d * (n - 1) + 1` (0 for none)."""
  return 0 if n == 0 else 1 + d * (n - 1)


def out_size(padded: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int],
             dilation: Sequence[int]) -> tuple[int, ...]:
  """The one output-size rule (seed 003's floor formula), per dim:
  `floor((padded - dilation * (k - 1) - 1) / stride) + 1`, where `padded`
  already includes the padding (and lhs dilation); 0 (an empty output, as lax
  computes it) when the dilated kernel is larger than the padded input.

  Example:
    >>> from jaxconv._geometry import out_size
    >>> out_size((34, 10), (3, 3), (1, 2), (1, 2))
    (32, 3)
    >>> out_size((2,), (3,), (1,), (1,))
    (0,)
  """
  return tuple(max(0, (p - dilate_dim(k, d)) // s + 1)
               for p, k, s, d in zip(padded, kernel_size, stride, dilation))


# --- normalisers ------------------------------------------------------------

def is_int(v: object) -> TypeIs[int | np.integer]:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def brief(value) -> str:
  """`repr(value)` for an error message, short: an array (anything with a
  non-empty shape) as its shape and dtype, since its repr can run to thousands
  of lines; other reprs are cut at 200 characters.

  Example:
    >>> import numpy as np
    >>> from jaxconv._geometry import brief
    >>> brief((3, 3)), brief(np.zeros((8, 3, 32, 32), np.float32))
    ('(3, 3)', 'an array of shape (8, 3, 32, 32) and dtype float32')
  """
  shape = getattr(value, "shape", None)
  if isinstance(shape, tuple) and shape and not isinstance(value, jax.ShapeDtypeStruct):
    return f"an array of shape {shape} and dtype {getattr(value, 'dtype', '?')}"
  text = repr(value)
  return text if len(text) <= 200 else text[:200] + "..."


def ntuple(value, rank: int, name: str, fn: str, *, minimum: int = 1) -> tuple[int, ...]:
  """An int or a per-dim sequence of ints -> a `rank`-tuple, each >= `minimum`."""
  if is_int(value):
    out = (int(value),) * rank
  elif _int_sequence(value):
    if not all(is_int(v) for v in value):
      raise TypeError(
          f"{fn}: `{name}` must be an int or a sequence of ints; got {name}={brief(value)}.")
    if len(value) != rank:
      raise ValueError(
          f"{fn}: `{name}` must have one entry per spatial dimension ({rank}); "
          f"got {name}={tuple(value)!r} of length {len(value)}.")
    out = tuple(int(v) for v in value)
  else:
    raise TypeError(
        f"{fn}: `{name}` must be an int or a sequence of ints; got {name}={brief(value)}.")
  if any(v < minimum for v in out):
    what = "positive" if minimum == 1 else f">= {minimum}"
    raise ValueError(f"{fn}: `{name}` must be {what}; got {name}={value!r}.")
  return out


def _int_sequence(value) -> bool:
  """A sequence that may hold ints: not a string; a 1-D integer NumPy array
  counts (lax takes one for `window_strides` and the dilations)."""
  if isinstance(value, np.ndarray):
    return value.ndim == 1 and value.dtype.kind in "iu"
  return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def normalize_padding(padding, in_spatial: Sequence[int], kernel_size: Sequence[int],
                      stride: Sequence[int], dilation: Sequence[int],
                      fn: str, name: str = "padding") -> Pairs:
  """Any accepted padding form -> `((lo, hi), ...)`, one pair per spatial dim.

  Strings are case-insensitive: 'VALID', 'SAME' and 'SAME_LOWER' exactly as
  `lax.padtype_to_pads` computes them (on the undilated input, dilated kernel),
  and 'FULL', which pads `d * (k - 1)` on both sides.
  """
  rank = len(in_spatial)
  eff = [dilate_dim(k, d) for k, d in zip(kernel_size, dilation)]
  if isinstance(padding, str):
    upper = padding.upper()
    if upper == "FULL":
      return tuple((e - 1, e - 1) for e in eff)
    if upper in ("VALID", "SAME", "SAME_LOWER"):
      pads = lax.padtype_to_pads(tuple(in_spatial), tuple(eff), tuple(stride), upper)
      return tuple((int(lo), int(hi)) for lo, hi in pads)
    raise ValueError(
        f"{fn}: unknown `{name}` string; got {name}={padding!r}, expected one of "
        f"{', '.join(repr(p) for p in PADDING_STRINGS)} (case-insensitive), an int, "
        "per-dim ints or per-dim (lo, hi) pairs.")
  if is_int(padding):
    return ((int(padding), int(padding)),) * rank
  if isinstance(padding, Sequence):
    if len(padding) != rank:
      raise ValueError(
          f"{fn}: `{name}` must have one entry per spatial dimension ({rank}); "
          f"got {name}={padding!r} of length {len(padding)}.")
    pairs = []
    for p in padding:
      if is_int(p):
        pairs.append((int(p), int(p)))
      elif (isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2
            and all(is_int(v) for v in p)):
        pairs.append((int(p[0]), int(p[1])))
      else:
        raise TypeError(
            f"{fn}: each entry of `{name}` must be an int or a (lo, hi) pair of ints; "
            f"got {name}={padding!r}.")
    return tuple(pairs)
  raise TypeError(
      f"{fn}: `{name}` must be an int, a sequence of ints or (lo, hi) pairs, or a "
      f"string; got {name}={padding!r}.")


def shape_of(a, name: str, fn: str) -> tuple[int, ...]:
  shape = getattr(a, "shape", None)
  dtype = getattr(a, "dtype", None)
  if shape is None or dtype is None:
    raise TypeError(
        f"{fn}: `{name}` must be an array (jax.Array, np.ndarray or tracer); "
        f"got {type(a).__name__}.")
  return tuple(int(s) for s in shape)


def array_arg(a: Any, name: str, fn: str, *, array_like: bool = False) -> Any:
  """`a`, checked to be an array argument of `fn`: a `jax.Array`, NumPy array
  or tracer, of numbers (TypeError otherwise).

  A `jax.ShapeDtypeStruct` is refused with a pointer to `jax.eval_shape`:
  it has a shape but no values. With `array_like=True` (scipy-style
  functions) a number or a nested list/tuple of numbers is accepted too: a
  Python number is returned as it is (JAX's weak type), anything else as a
  NumPy array.
  """
  if isinstance(a, jax.ShapeDtypeStruct):
    raise TypeError(
        f"{fn}: `{name}` must be an array, not a jax.ShapeDtypeStruct (for shapes only, "
        f"use jax.eval_shape({fn}, ...)); got {name}={a!r}.")
  is_array = getattr(a, "shape", None) is not None and getattr(a, "dtype", None) is not None
  if array_like and isinstance(a, (bool, int, float, complex)):
    return a
  if array_like and not is_array and (
      isinstance(a, (list, tuple, np.generic))):
    try:
      a = np.asarray(a)
    except ValueError:   # ragged nesting
      raise TypeError(
          f"{fn}: `{name}` must be an array or a nested list of numbers of one shape; "
          f"got a ragged {type(a).__name__}.") from None
    is_array = True
  if not is_array:
    kinds = ("an array, a number or a nested list of numbers" if array_like
             else "an array (jax.Array, np.ndarray or tracer)")
    raise TypeError(f"{fn}: `{name}` must be {kinds}; got {type(a).__name__}.")
  if isinstance(a, np.ndarray) and a.dtype.kind not in "biufcV":
    raise TypeError(
        f"{fn}: `{name}` must hold numbers; got an array of dtype {a.dtype} "
        f"({name}.shape={a.shape}).")
  return a


def as_jax(a: Any) -> jax.Array:
  """An `array_arg` result as a `jax.Array`, tracing nothing: a NumPy array is
  `device_put` (`jnp.asarray` traces and compiles a conversion for each new
  shape, which would come before the remaining checks); jax arrays and
  tracers pass through."""
  return jax.device_put(a) if isinstance(a, np.ndarray) else jnp.asarray(a)


def shape_arg(value, name: str, fn: str) -> tuple[int, ...]:
  """An array shape given as a sequence of ints (`x_shape`, ...) -> a tuple."""
  if not _int_sequence(value) or not all(is_int(v) for v in value):
    hint = " (pass the array's `.shape`)" if hasattr(value, "shape") else ""
    raise TypeError(
        f"{fn}: `{name}` must be a sequence of ints{hint}; got {name}={brief(value)}.")
  return tuple(int(v) for v in value)


def dtype_arg(dtype, fn: str, name: str = "dtype") -> np.dtype:
  """`dtype` as a NumPy dtype: a dtype, a scalar type or its name (TypeError
  otherwise; None too: the public functions default to a dtype, not None)."""
  try:
    if dtype is None:
      raise TypeError
    return np.dtype(dtype)
  except TypeError:
    raise TypeError(
        f"{fn}: `{name}` must be a NumPy/JAX dtype or its name; got {name}={dtype!r}."
    ) from None


def check_bool(value, name: str, fn: str) -> bool:
  """`value` must be a bool (a NumPy bool too): TypeError for 1, 'yes', None."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{fn}: `{name}` must be a bool; got {name}={value!r}.")
  return bool(value)


def check_key(key, name: str, fn: str):
  """`key` must be one PRNG key: a typed key (`jax.random.key`) of shape (),
  or a raw key (`jax.random.PRNGKey`) of the default implementation's shape."""
  dtype = getattr(key, "dtype", None)
  shape = getattr(key, "shape", None)
  if dtype is not None and shape is not None and not isinstance(key, jax.ShapeDtypeStruct):
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
      if tuple(shape) == ():
        return key
    elif np.dtype(dtype) == np.uint32 and tuple(shape) == _raw_key_shape():
      return key
  what = (f"an array of dtype {dtype} and shape {tuple(shape)}"
          if dtype is not None and shape is not None
          and not isinstance(key, jax.ShapeDtypeStruct) else f"{name}={key!r}")
  raise TypeError(
      f"{fn}: `{name}` must be one PRNG key, jax.random.key(seed) (or a raw uint32 "
      f"jax.random.PRNGKey(seed)); got {what}.")


def _raw_key_shape() -> tuple[int, ...]:
  """The shape of a raw key of the default PRNG implementation (`(2,)` for
  threefry; `jax_default_prng_impl` may change it), from an abstract
  evaluation: nothing runs."""
  return tuple(jax.eval_shape(lambda: jax.random.PRNGKey(0)).shape)


_PRECISION_NAMES = ("highest", "float32", "high", "bfloat16_3x", "tensorfloat32", "default",
                    "bfloat16", "fastest")
"""The strings lax's `precision` takes as a `lax.Precision` (lower case, as lax)."""


def check_precision(precision, fn: str):
  """`precision` checked by lax's rules, hashable (a list becomes a tuple).

  Accepted, as `lax.conv_general_dilated` accepts them: None, a
  `lax.Precision`, a precision string ('highest', 'high', 'default', ...), a
  `lax.DotAlgorithmPreset` or its name, a `lax.DotAlgorithm`, or a pair of
  `lax.Precision`s or of precision strings (one per operand).

  Raises:
    ValueError: anything else (lax raises ValueError too).
  """
  if precision is None or isinstance(
      precision, (lax.Precision, lax.DotAlgorithm, lax.DotAlgorithmPreset)):
    return precision
  if isinstance(precision, str) and (precision in _PRECISION_NAMES
                                     or precision in lax.DotAlgorithmPreset.__members__):
    return precision
  if (isinstance(precision, (list, tuple)) and len(precision) == 2
      and (all(isinstance(p, lax.Precision) for p in precision)
           or all(isinstance(p, str) and p in _PRECISION_NAMES for p in precision))):
    return tuple(precision)
  raise ValueError(
      f"{fn}: `precision` must be None, a lax.Precision, one of "
      f"{', '.join(repr(p) for p in _PRECISION_NAMES)}, a lax.DotAlgorithmPreset (or "
      "its name), a lax.DotAlgorithm, or a pair of lax.Precision values or strings "
      f"(one per operand); got precision={precision!r}.")


def check_preferred_element_type(preferred, dtype, fn: str):
  """`preferred_element_type` as a NumPy dtype (None stays None), by lax's rules.

  As `lax.conv_general_dilated`: integer inputs may accumulate in a wider or
  equal integer of the same signedness, or in any float; float inputs in a
  wider or equal float; complex in a wider or equal complex; never narrower
  than the input.

  Raises:
    TypeError: not a dtype, or a combination lax refuses (lax raises TypeError).
  """
  if preferred is None:
    return None
  try:
    pref = jnp.dtype(preferred)
  except TypeError:
    raise TypeError(
        f"{fn}: `preferred_element_type` must be None or a dtype; got "
        f"preferred_element_type={preferred!r}.") from None
  dtype = np.dtype(dtype)
  got = f"got preferred_element_type={pref.name} for inputs of dtype {dtype.name}."
  if not (jnp.issubdtype(dtype, np.integer) and jnp.issubdtype(pref, np.floating)):
    for kind in (np.integer, np.floating, np.complexfloating):
      if jnp.issubdtype(dtype, kind) and not jnp.issubdtype(pref, kind):
        raise TypeError(
            f"{fn}: `preferred_element_type` must be of a kind the inputs can accumulate "
            "in: (integer, integer), (integer, floating), (floating, floating) or "
            f"(complex, complex), as lax; {got}")
    if jnp.issubdtype(dtype, np.signedinteger) and not jnp.issubdtype(pref, np.signedinteger):
      raise TypeError(
          f"{fn}: `preferred_element_type` must have the signedness of the inputs, as "
          f"lax; {got}")
  if pref.itemsize < dtype.itemsize:
    raise TypeError(
        f"{fn}: `preferred_element_type` must not be narrower than the inputs' dtype, "
        f"as lax; {got}")
  return pref


def make_geometry(fn: str, x, w, *, stride=1, padding=0, dilation=1, lhs_dilation=1,
                  groups=1, padding_mode="zeros", flip=False, precision=None,
                  preferred_element_type=None, allow_empty=False) -> Geometry:
  """Validate arguments of `fn` against the shapes of `x` and `w`.

  `x` is `(N, C_in, *spatial)`, `w` is `(C_out, C_in // groups, *kernel)`;
  both may be arrays, tracers or `jax.ShapeDtypeStruct`s. A zero batch or
  zero channels are always accepted (the result is empty, or zeros where the
  contraction is empty). `allow_empty=True` (lax's rules, for
  `conv_general_dilated`) also accepts zero-size input spatial dims and an
  empty output; padding may then crop at most the whole (dilated) input, as
  in lax.

  Raises:
    TypeError: a non-array input, an argument of the wrong kind, a
      `preferred_element_type` lax refuses for the input dtype.
    ValueError: shapes or values that do not make a convolution, a `precision`
      lax does not know.
  """
  x_shape = shape_of(x, "x", fn)
  w_shape = shape_of(w, "w", fn)
  if len(x_shape) < 3:
    raise ValueError(
        f"{fn}: `x` must be (N, C_in, *spatial) with at least one spatial dim; "
        f"got x.shape={x_shape}.")
  if len(w_shape) != len(x_shape):
    raise ValueError(
        f"{fn}: `w` must have the same rank as `x`, (C_out, C_in // groups, *kernel); "
        f"got x.shape={x_shape} (rank {len(x_shape)}) and w.shape={w_shape} "
        f"(rank {len(w_shape)}).")
  if np.dtype(x.dtype) != np.dtype(w.dtype):
    raise TypeError(
        f"{fn}: `x` and `w` must have the same dtype; got x.dtype={np.dtype(x.dtype)} "
        f"and w.dtype={np.dtype(w.dtype)}.")
  rank = len(x_shape) - 2
  groups = positive_int(groups, "groups", fn)
  c_in, c_out = x_shape[1], w_shape[0]
  if c_in % groups:
    raise ValueError(
        f"{fn}: `groups` must divide the input channels; {groups} does not divide "
        f"C_in={c_in} (x.shape={x_shape}).")
  if c_out % groups:
    raise ValueError(
        f"{fn}: `groups` must divide the output channels; {groups} does not divide "
        f"C_out={c_out} (w.shape={w_shape}).")
  if w_shape[1] * groups != c_in:
    raise ValueError(
        f"{fn}: w has {w_shape[1]} input channels per group but x has {c_in} channels "
        f"and groups={groups} (expected w.shape[1] == {c_in // groups}).")
  if any(k < 1 for k in w_shape[2:]):
    raise ValueError(f"{fn}: kernel spatial sizes must be positive; got w.shape={w_shape}.")
  if any(n < 1 for n in x_shape[2:]) and not allow_empty:
    raise ValueError(f"{fn}: input spatial sizes must be positive; got x.shape={x_shape}.")
  precision = check_precision(precision, fn)
  preferred_element_type = check_preferred_element_type(preferred_element_type, x.dtype, fn)

  stride = ntuple(stride, rank, "stride", fn)
  dilation = ntuple(dilation, rank, "dilation", fn)
  lhs_dilation = ntuple(lhs_dilation, rank, "lhs_dilation", fn)
  if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
    raise ValueError(
        f"{fn}: unknown `padding_mode`; got padding_mode={padding_mode!r}, expected one "
        f"of {', '.join(repr(m) for m in PADDING_MODES)}.")
  check_bool(flip, "flip", fn)
  # As lax.conv_general_dilated: padding strings see the undilated input shape.
  pads = normalize_padding(padding, x_shape[2:], w_shape[2:], stride, dilation, fn)
  if padding_mode != "zeros":
    _check_mode_padding(fn, padding_mode, pads, x_shape[2:], lhs_dilation)

  g = Geometry(
      in_shape=x_shape, kernel_shape=w_shape, stride=stride, padding=pads,
      dilation=dilation, lhs_dilation=lhs_dilation, groups=groups,
      padding_mode=padding_mode, flip=bool(flip), dtype=np.dtype(x.dtype),
      precision=precision, preferred_element_type=preferred_element_type)
  padded = g.padded_spatial
  if allow_empty:
    if any(p < 0 for p in padded):
      raise ValueError(
          f"{fn}: negative padding crops more than the (dilated) input, as lax refuses; "
          f"padded input spatial {padded} (x.shape={x_shape}, padding={pads}, "
          f"lhs_dilation={lhs_dilation}).")
  elif any(p < ek for p, ek in zip(padded, g.effective_kernel_size)):
    raise ValueError(
        f"{fn}: the kernel is larger than the padded input, so the output is empty; "
        f"padded input spatial {padded} vs dilated kernel {g.effective_kernel_size} "
        f"(x.shape={x_shape}, w.shape={w_shape}, padding={pads}, dilation={dilation}).")
  return g


def make_transpose_geometry(fn: str, x, w, *, stride=1, padding=0, output_padding=0,
                            dilation=1, groups=1, precision=None) -> Geometry:
  """Validate `conv_transpose`'s arguments; the geometry of the equivalent conv.

  `x` is `(N, C_in, *spatial)` and `w` PyTorch's `(C_in, C_out // groups,
  *kernel)`. The transposed convolution is the correlation of the
  stride-dilated (`lhs_dilation`) input, padded by `dilation * (k - 1) - pad`
  (plus `output_padding` on the high side), with the flipped kernel whose
  in/out channels are swapped within each group (`transpose_kernel_shape`).

  Raises:
    TypeError: non-array inputs, a string `padding`, arguments of the wrong kind.
    ValueError: mismatched shapes, bad arguments, `output_padding` too large.
  """
  x_shape, w_shape = shape_of(x, "x", fn), shape_of(w, "w", fn)
  if len(x_shape) < 3 or len(w_shape) != len(x_shape):
    raise ValueError(
        f"{fn}: `x` must be (N, C_in, *spatial) and `w` (C_in, C_out // groups, *kernel) "
        f"of the same rank; got x.shape={x_shape} and w.shape={w_shape}.")
  groups = positive_int(groups, "groups", fn)
  if w_shape[0] != x_shape[1]:
    raise ValueError(
        f"{fn}: w.shape[0] must equal the input channels C_in={x_shape[1]} (PyTorch's "
        f"(C_in, C_out // groups, *kernel) layout); got w.shape={w_shape}.")
  if x_shape[1] % groups:
    raise ValueError(
        f"{fn}: `groups` must divide the input channels; {groups} does not divide "
        f"C_in={x_shape[1]}.")
  rank = len(x_shape) - 2
  kernel = w_shape[2:]
  s = ntuple(stride, rank, "stride", fn)
  d = ntuple(dilation, rank, "dilation", fn)
  op = ntuple(output_padding, rank, "output_padding", fn, minimum=0)
  if any(o >= ss and o >= dd for o, ss, dd in zip(op, s, d)):
    raise ValueError(
        f"{fn}: `output_padding` must be smaller than either the stride or the "
        f"dilation; got output_padding={op}, stride={s}, dilation={d}.")
  if isinstance(padding, str):
    raise TypeError(
        f"{fn}: `padding` must be an int, per-dim ints or (lo, hi) pairs; got "
        f"padding={padding!r}.")
  crop = normalize_padding(padding, x_shape[2:], kernel, s, d, fn)
  pads = tuple((dd * (k - 1) - lo, dd * (k - 1) - hi + o)
               for (lo, hi), k, dd, o in zip(crop, kernel, d, op))
  w_conv = _Spec(transpose_kernel_shape(w_shape, groups), w.dtype)
  return make_geometry(fn, x, w_conv, stride=1, padding=pads, dilation=d, lhs_dilation=s,
                       groups=groups, flip=True, precision=precision)


def transpose_kernel_shape(w_shape: Sequence[int], groups: int) -> tuple[int, ...]:
  """`(C_in, C_out // G, *k)` -> `(C_out, C_in // G, *k)`: in/out swapped per group."""
  c_in, cout_g, *kernel = w_shape
  return (groups * cout_g, c_in // groups, *kernel)


def input_gradient_geometry(g: Geometry) -> Geometry:
  """The geometry of `g`'s input gradient, as a correlation.

  The cotangent `dy` (`g.out_shape`), dilated by `g.stride`, is correlated
  with the flipped kernel whose in/out channels are swapped within each group
  (`transpose_kernel_shape`): `conv_transpose`'s geometry
  (`make_transpose_geometry`), with the high padding that reaches the inputs
  no window read, so its output is `g.in_shape`. For `g` without lhs dilation.

  Example:
    >>> from jaxconv._geometry import geometry_of, input_gradient_geometry
    >>> g = geometry_of((2, 6, 9), (4, 3, 3), stride=2, padding=1, groups=2)
    >>> t = input_gradient_geometry(g)
    >>> t.in_shape, t.kernel_shape, t.lhs_dilation, t.padding, t.out_shape
    ((2, 4, 5), (6, 2, 3), (2,), ((1, 1),), (2, 6, 9))
  """
  pads = tuple(
      (d * (k - 1) - lo, d * (k - 1) - hi + (n + lo + hi - dilate_dim(k, d)) % s)
      for n, k, s, d, (lo, hi) in zip(g.in_spatial, g.kernel_size, g.stride, g.dilation,
                                      g.padding))
  return g.replace(in_shape=(g.batch, g.out_channels, *g.out_spatial),
                   kernel_shape=transpose_kernel_shape(g.kernel_shape, g.groups),
                   stride=(1,) * g.rank, padding=pads, lhs_dilation=g.stride)


@dataclasses.dataclass(frozen=True)
class _Spec:
  """A shape and dtype standing in for an array whose layout is still to change."""

  shape: tuple[int, ...]
  dtype: Any


@dataclasses.dataclass(frozen=True)
class LaxCall:
  """`conv_general_dilated`'s arguments, validated and normalised.

  Attributes:
    dimension_numbers: lax's `ConvDimensionNumbers` for the shapes.
    batch_group_count: batch groups (folded into feature groups of `geometry`).
    geometry: the convolution of the channels-first input (after batch groups
      became feature groups) with the `OI...` kernel.
  """

  dimension_numbers: Any
  batch_group_count: int
  geometry: Geometry


def make_lax_geometry(fn: str, lhs, rhs, window_strides, padding, lhs_dilation=None,
                      rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                      batch_group_count=1, precision=None,
                      preferred_element_type=None) -> LaxCall:
  """Validate `lax.conv_general_dilated`-style arguments (lax's names).

  Empty inputs and outputs are accepted as lax accepts them (`allow_empty` of
  `make_geometry`): zero-size spatial dims, and a kernel larger than the
  padded input (an empty output).

  Raises:
    TypeError: non-array inputs, `window_strides` that is not a sequence, bad
      `dimension_numbers`, the wrong number of `padding` pairs, a
      `preferred_element_type` lax refuses, arguments of the wrong kind.
    ValueError: shapes or values lax would refuse, named by lax's argument
      names: a `padding` that is neither a string nor (lo, hi) pairs (an int
      included), an unknown `precision`, padding that crops more than the input.
  """
  lhs_shape, rhs_shape = shape_of(lhs, "lhs", fn), shape_of(rhs, "rhs", fn)
  if len(lhs_shape) < 3 or len(rhs_shape) != len(lhs_shape):
    raise ValueError(
        f"{fn}: `lhs` and `rhs` must have the same rank >= 3; got lhs.shape={lhs_shape} "
        f"and rhs.shape={rhs_shape}.")
  rank = len(lhs_shape) - 2
  dnums = _dimension_numbers(lhs_shape, rhs_shape, dimension_numbers, fn)
  if isinstance(padding, np.ndarray):   # lax takes an int array of (lo, hi) rows too
    padding = (tuple(tuple(row) for row in padding.tolist()) if padding.ndim == 2
               else padding.tolist())
  _check_lax_padding(padding, rank, fn)
  feature_group_count = positive_int(feature_group_count, "feature_group_count", fn)
  batch_group_count = positive_int(batch_group_count, "batch_group_count", fn)
  if feature_group_count > 1 and batch_group_count > 1:
    raise ValueError(
        f"{fn}: at most one of `feature_group_count` and `batch_group_count` may be > 1; "
        f"got {feature_group_count} and {batch_group_count}.")
  if isinstance(window_strides, (int, np.integer)) or window_strides is None:
    raise TypeError(
        f"{fn}: `window_strides` must be a sequence of {rank} ints; got "
        f"window_strides={window_strides!r}.")
  # Checked here under lax's names (make_geometry would call them stride/dilation).
  window_strides = ntuple(window_strides, rank, "window_strides", fn)
  rhs_dilation = ntuple(1 if rhs_dilation is None else rhs_dilation, rank, "rhs_dilation", fn)
  lhs_dilation = ntuple(1 if lhs_dilation is None else lhs_dilation, rank, "lhs_dilation", fn)
  if isinstance(padding, str) and any(d != 1 for d in lhs_dilation):
    raise ValueError(
        f"{fn}: string `padding` is ambiguous with `lhs_dilation` (as in lax); got "
        f"padding={padding!r} and lhs_dilation={lhs_dilation}. Give explicit "
        "(lo, hi) pairs or use jaxconv.conv_transpose.")
  x_shape = tuple(lhs_shape[i] for i in dnums.lhs_spec)
  w_shape = tuple(rhs_shape[i] for i in dnums.rhs_spec)
  groups = feature_group_count
  if batch_group_count > 1:
    n, c = x_shape[:2]
    for what, size in (("batch size", n), ("output features", w_shape[0])):
      if size % batch_group_count:
        raise ValueError(
            f"{fn}: `batch_group_count` must divide the {what}; {batch_group_count} "
            f"does not divide {size}.")
    x_shape = (n // batch_group_count, batch_group_count * c, *x_shape[2:])
    groups = batch_group_count
  g = make_geometry(fn, _Spec(x_shape, lhs.dtype), _Spec(w_shape, rhs.dtype),
                    stride=window_strides, padding=padding, dilation=rhs_dilation,
                    lhs_dilation=lhs_dilation, groups=groups, precision=precision,
                    preferred_element_type=preferred_element_type, allow_empty=True)
  return LaxCall(dnums, batch_group_count, g)


_LAYOUTS = ("lhs", "NC"), ("rhs", "OI"), ("out", "NC")


def _dimension_numbers(lhs_shape, rhs_shape, dimension_numbers, fn: str):
  """lax's `ConvDimensionNumbers` for `dimension_numbers`, checked first by
  lax's rules so a bad one gets a jaxconv message (TypeError, as lax)."""
  given = f"got dimension_numbers={dimension_numbers!r}"
  if dimension_numbers is None or isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  if not isinstance(dimension_numbers, (tuple, list)) or len(dimension_numbers) != 3:
    raise TypeError(
        f"{fn}: `dimension_numbers` must be None, a lax.ConvDimensionNumbers or three "
        f"layout strings (lhs, rhs, out) such as ('NCHW', 'OIHW', 'NCHW'); {given}.")
  if not all(isinstance(spec, str) for spec in dimension_numbers):
    raise TypeError(
        f"{fn}: `dimension_numbers` must be three layout strings (lhs, rhs, out); {given}.")
  ndim = len(lhs_shape)
  spatial = []
  for spec, (name, special) in zip(dimension_numbers, _LAYOUTS):
    if len(spec) != ndim or len(set(spec)) != ndim:
      raise TypeError(
          f"{fn}: each layout in `dimension_numbers` must name each of the {ndim} dims of "
          f"`lhs` and `rhs` once; the {name} layout {spec!r} does not ({given}).")
    if not all(c in spec for c in special):
      raise TypeError(
          f"{fn}: the {name} layout in `dimension_numbers` must contain "
          f"{special[0]!r} and {special[1]!r}; {given}.")
    spatial.append(set(spec) - set(special))
  if not spatial[0] == spatial[1] == spatial[2]:
    raise TypeError(
        f"{fn}: the layouts in `dimension_numbers` must share the same spatial "
        f"characters; {given}.")
  return lax.conv_dimension_numbers(lhs_shape, rhs_shape, tuple(dimension_numbers))


def _check_lax_padding(padding, rank: int, fn: str) -> None:
  """lax's padding forms only: a string, or one `(lo, hi)` pair of ints per
  spatial dim. No int shorthand (that is `jaxconv.conv`'s); the classes are
  lax's: ValueError for another form, TypeError for the wrong number of pairs."""
  if isinstance(padding, str):
    return
  pairs = (isinstance(padding, Sequence)
           and all(isinstance(p, Sequence) and not isinstance(p, str) and len(p) == 2
                   and all(is_int(v) for v in p) for p in padding))
  if not pairs:
    raise ValueError(
        f"{fn}: `padding` must be 'VALID', 'SAME', 'SAME_LOWER', 'FULL' or a sequence of "
        f"(lo, hi) pairs of ints, one per spatial dimension, as lax (no int shorthand: "
        f"that is jaxconv.conv's); got padding={padding!r}.")
  if len(padding) != rank:
    raise TypeError(
        f"{fn}: `padding` must have one (lo, hi) pair per spatial dimension ({rank}), as "
        f"lax; got padding={padding!r} of length {len(padding)}.")


def positive_int(value, name: str, fn: str, *, minimum: int = 1) -> int:
  """`value` as an int >= `minimum` (1: positive, 0: non-negative): TypeError
  for a non-int (a bool included), ValueError below the minimum."""
  if not is_int(value):
    raise TypeError(f"{fn}: `{name}` must be an int; got {name}={brief(value)}.")
  if value < minimum:
    what = {1: "positive", 0: "non-negative"}.get(minimum, f">= {minimum}")
    raise ValueError(f"{fn}: `{name}` must be {what}; got {name}={value}.")
  return int(value)


def positive_real(value, name: str, fn: str) -> float:
  """`value` as a finite float > 0 (`sigma`, `tol`): TypeError for anything but
  a Python or NumPy real number (a bool, a string, a JAX array), ValueError for
  0, negatives, inf and NaN."""
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, float, np.integer, np.floating)):
    raise TypeError(
        f"{fn}: `{name}` must be a Python or NumPy real number (it is static); "
        f"got {name}={brief(value)}.")
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{fn}: `{name}` must be finite and > 0; got {name}={value!r}.")
  return float(value)


def geometry_of(x_shape: Sequence[int], w_shape: Sequence[int], dtype="float32", *,
                fn: str = "jaxconv", **conv_kwargs) -> Geometry:
  """`make_geometry` from shapes alone (no arrays): for cost models and examples.

  Example:
    >>> from jaxconv._geometry import geometry_of
    >>> geometry_of((1, 2, 6, 6), (4, 2, 3, 3), padding=1).out_shape
    (1, 4, 6, 6)
  """
  return make_geometry(fn, _Spec(tuple(x_shape), np.dtype(dtype)),
                       _Spec(tuple(w_shape), np.dtype(dtype)), **conv_kwargs)


def array_shape(a, name: str, fn: str, layout: str, *, min_rank: int = 0,
                rank: int | None = None) -> tuple[int, ...]:
  """`a`'s static shape, checked to have `rank` (or at least `min_rank`) dims.

  The `ValueError` quotes `layout`, e.g. '(N, C, *spatial) with at least one
  spatial dim'; `_windows` checks its arrays with it too.
  """
  shape = shape_of(array_arg(a, name, fn), name, fn)
  if len(shape) < min_rank or (rank is not None and len(shape) != rank):
    raise ValueError(f"{fn}: `{name}` must be {layout}; got {name}.shape={shape}.")
  return shape


def spatial_sizes(value, name: str, fn: str) -> tuple[int, ...]:
  """A spatial shape given as an int (1-D) or a sequence of ints -> positive
  ints, at least one."""
  if is_int(value):
    return (positive_int(value, name, fn),)
  if not _int_sequence(value):
    raise TypeError(
        f"{fn}: `{name}` must be an int or a sequence of ints; got {name}={brief(value)}.")
  if len(value) == 0:
    raise ValueError(
        f"{fn}: `{name}` must name at least one spatial dim; got {name}={value!r}.")
  return ntuple(value, len(value), name, fn)


def unfold_geometry(fn, spatial, kernel_size, dilation, padding, stride):
  """Validate `unfold`/`fold` arguments: `(kernel, dilation, pads, stride, out)`."""
  rank = len(spatial)
  k = ntuple(kernel_size, rank, "kernel_size", fn)
  d = ntuple(dilation, rank, "dilation", fn)
  s = ntuple(stride, rank, "stride", fn)
  pads = normalize_padding(padding, spatial, k, s, d, fn)
  if any(lo < 0 or hi < 0 for lo, hi in pads):
    raise ValueError(f"{fn}: `padding` must be non-negative; got padding={padding!r}.")
  padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads))
  out = out_size(padded, k, s, d)
  if any(p < dilate_dim(kk, dd) for p, kk, dd in zip(padded, k, d)):
    raise ValueError(
        f"{fn}: the kernel is larger than the padded input, so there are no patches; "
        f"got spatial shape {tuple(spatial)}, kernel_size={k}, dilation={d}, "
        f"padding={pads}.")
  return k, d, pads, s, out


def _check_mode_padding(fn, mode, pads, spatial, lhs_dilation):
  if any(d != 1 for d in lhs_dilation):
    raise ValueError(
        f"{fn}: padding_mode={mode!r} cannot be combined with lhs_dilation "
        f"{lhs_dilation}; use padding_mode='zeros'.")
  for (lo, hi), n in zip(pads, spatial):
    if lo < 0 or hi < 0:
      raise ValueError(
          f"{fn}: padding_mode={mode!r} needs non-negative padding; got padding={pads}.")
    if mode == "reflect" and max(lo, hi) >= n:
      raise ValueError(
          f"{fn}: padding_mode='reflect' needs padding smaller than the input size; "
          f"got padding={pads} for spatial shape {tuple(spatial)}.")
    if mode == "circular" and max(lo, hi) > n:
      raise ValueError(
          f"{fn}: padding_mode='circular' needs padding at most the input size; "
          f"got padding={pads} for spatial shape {tuple(spatial)}.")


def output_shape(input_size: Size, kernel_size: Size, *, stride: Size = 1,
                 padding: Padding = 0, dilation: Size = 1) -> tuple[int, ...]:
  """Spatial output shape of a convolution (the floor formula of the seeds).

  `out = floor((n + lo + hi - dilation * (k - 1) - 1) / stride) + 1` per dim,
  where `padding=p` means `lo = hi = p`.

  Args:
    input_size: spatial input size, an int (1-D) or a tuple of ints.
    kernel_size: an int (same for every dim) or a tuple of ints.
    stride: int or per-dim ints. Default 1.
    padding: int, per-dim ints, per-dim (lo, hi) pairs or 'VALID'/'SAME'/'FULL'.
    dilation: int or per-dim ints. Default 1.

  Returns:
    A tuple of ints, one per spatial dim.

  Raises:
    ValueError: non-positive sizes, or an empty output.

  Example:
    >>> import jaxconv
    >>> jaxconv.output_shape((32, 32), 3, padding=1)
    (32, 32)
    >>> jaxconv.output_shape(224, 7, stride=2, padding=3)
    (112,)
  """
  fn = "jaxconv.output_shape"
  sizes = spatial_sizes(input_size, "input_size", fn)
  rank = len(sizes)
  k = ntuple(kernel_size, rank, "kernel_size", fn)
  s = ntuple(stride, rank, "stride", fn)
  d = ntuple(dilation, rank, "dilation", fn)
  pads = normalize_padding(padding, sizes, k, s, d, fn)
  out = out_size([n + lo + hi for n, (lo, hi) in zip(sizes, pads)], k, s, d)
  if any(o < 1 for o in out):
    raise ValueError(
        f"{fn}: the kernel is larger than the padded input, so the output is empty; "
        f"got input_size={sizes}, kernel_size={k}, padding={pads}, dilation={d}.")
  return out

