"""End-to-end: one optax training step of a small network, every conv via jaxconv.

Two networks, written as pure functions of a parameter pytree:

- `convnext`: ConvNeXt-style (Liu et al. 2022): 4x4/4 patchify stem, blocks of
  depthwise 7x7 -> LayerNorm -> 1x1 expand (4x) -> GELU -> 1x1 project ->
  layer scale -> residual, a 2x2/2 downsampling conv between two stages.
- `resnet`: ResNet-style (He et al. 2016): 3x3 stem, basic blocks of two 3x3
  convs with batch norm (batch statistics), a strided stage with a 1x1/2
  projection shortcut. SiLU instead of ReLU: ReLU's gradient jumps where a
  pre-activation crosses 0, so two correct implementations whose roundings
  differ by 1e-7 can flip a few units and differ by 1e-2 in a weight gradient
  (measured); with a smooth activation the gradient check is meaningful.

Every convolution goes through one `conv` argument with `jaxconv.conv`'s
signature, so the same network runs with `method="lax"`, `"auto"`,
`"autotune"`, or the independent reference (`jaxconv.testing.reference_conv`,
lax at HIGHEST). A training step is `value_and_grad` of softmax cross-entropy,
`optax.adamw` update, all under one `jax.jit`; the bench checks the loss and
every gradient against the reference network before timing the step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, Any]
ConvFn = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class Network:
  """A small classifier: input shape, classes, and its init and apply functions.

  Attributes:
    name: id used by `--networks` and in the tables.
    source: what it imitates.
    x_shape: the input batch `(N, C, H, W)`.
    classes: number of output classes.
    init: `rng -> params` (a numpy Generator; float32 leaves).
    apply: `(params, x, conv) -> logits`; `conv` has `jaxconv.conv`'s signature.
  """

  name: str
  source: str
  x_shape: tuple[int, ...]
  classes: int
  init: Callable[[np.random.Generator], Params]
  apply: Callable[[Params, jax.Array, ConvFn], jax.Array]


# --- layers ------------------------------------------------------------------

def _conv_params(rng, c_in: int, c_out: int, k: int, groups: int = 1,
                 bias: bool = True) -> Params:
  """PyTorch's default init: uniform(+-1/sqrt(fan_in)) for weight and bias.

  Convs followed by batch norm have no bias (as in ResNet): BN would cancel it,
  leaving a parameter whose exact gradient is zero.
  """
  fan_in = c_in // groups * k * k
  bound = 1.0 / math.sqrt(fan_in)
  w = rng.uniform(-bound, bound, (c_out, c_in // groups, k, k)).astype(np.float32)
  if not bias:
    return {"w": w}
  return {"w": w, "b": rng.uniform(-bound, bound, (c_out,)).astype(np.float32)}


def _norm_params(c: int) -> Params:
  return {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}


def _channel_layer_norm(p: Params, x, eps: float = 1e-6):
  """LayerNorm over the channel axis of `(N, C, H, W)` (ConvNeXt's)."""
  mean = x.mean(axis=1, keepdims=True)
  var = jnp.square(x - mean).mean(axis=1, keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + eps)
  return y * p["scale"][:, None, None] + p["bias"][:, None, None]


def _batch_norm(p: Params, x, eps: float = 1e-5):
  """BatchNorm in training mode: statistics of this batch over (N, H, W)."""
  mean = x.mean(axis=(0, 2, 3), keepdims=True)
  var = jnp.square(x - mean).mean(axis=(0, 2, 3), keepdims=True)
  y = (x - mean) * jax.lax.rsqrt(var + eps)
  return y * p["scale"][:, None, None] + p["bias"][:, None, None]


def _dense_params(rng, c_in: int, c_out: int) -> Params:
  bound = 1.0 / math.sqrt(c_in)
  return {"w": rng.uniform(-bound, bound, (c_in, c_out)).astype(np.float32),
          "b": np.zeros(c_out, np.float32)}


def _conv(conv: ConvFn, p: Params, x, **kwargs):
  return conv(x, p["w"], p.get("b"), **kwargs)


# --- ConvNeXt-style ----------------------------------------------------------

def _convnext_init(widths, depth, classes, rng) -> Params:
  stem = {"conv": _conv_params(rng, 3, widths[0], 4), "ln": _norm_params(widths[0])}
  stages = []
  for i, c in enumerate(widths):
    stage: Params = {"blocks": [{
        "dw": _conv_params(rng, c, c, 7, groups=c), "ln": _norm_params(c),
        "pw1": _conv_params(rng, c, 4 * c, 1), "pw2": _conv_params(rng, 4 * c, c, 1),
        "gamma": np.full(c, 0.1, np.float32)} for _ in range(depth)]}
    if i > 0:
      stage["down"] = {"ln": _norm_params(widths[i - 1]),
                       "conv": _conv_params(rng, widths[i - 1], c, 2)}
    stages.append(stage)
  return {"stem": stem, "stages": stages, "head_ln": _norm_params(widths[-1]),
          "head": _dense_params(rng, widths[-1], classes)}


def _convnext_apply(params: Params, x, conv: ConvFn):
  x = _conv(conv, params["stem"]["conv"], x, stride=4)
  x = _channel_layer_norm(params["stem"]["ln"], x)
  for stage in params["stages"]:
    if "down" in stage:
      x = _channel_layer_norm(stage["down"]["ln"], x)
      x = _conv(conv, stage["down"]["conv"], x, stride=2)
    for blk in stage["blocks"]:
      c = x.shape[1]
      y = _conv(conv, blk["dw"], x, padding=3, groups=c)
      y = _channel_layer_norm(blk["ln"], y)
      y = jax.nn.gelu(_conv(conv, blk["pw1"], y))
      y = _conv(conv, blk["pw2"], y)
      x = x + blk["gamma"][:, None, None] * y
  pooled = _layer_norm_last(params["head_ln"], x.mean(axis=(2, 3)))
  return pooled @ params["head"]["w"] + params["head"]["b"]


def _layer_norm_last(p: Params, x, eps: float = 1e-6):
  mean = x.mean(axis=-1, keepdims=True)
  var = jnp.square(x - mean).mean(axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + eps) * p["scale"] + p["bias"]


# --- ResNet-style ------------------------------------------------------------

def _resnet_init(widths, depth, classes, rng) -> Params:
  conv = functools.partial(_conv_params, rng, bias=False)
  params: Params = {"stem": conv(3, widths[0], 3),
                    "stem_bn": _norm_params(widths[0]), "stages": []}
  c_prev = widths[0]
  for c in widths:
    blocks = []
    for j in range(depth):
      c_in = c_prev if j == 0 else c
      blk = {"conv1": conv(c_in, c, 3), "bn1": _norm_params(c),
             "conv2": conv(c, c, 3), "bn2": _norm_params(c)}
      if c_in != c:
        blk["proj"] = conv(c_in, c, 1)
        blk["proj_bn"] = _norm_params(c)
      blocks.append(blk)
    params["stages"].append(blocks)
    c_prev = c
  params["head"] = _dense_params(rng, widths[-1], classes)
  return params


def _resnet_apply(params: Params, x, conv: ConvFn):
  x = jax.nn.silu(_batch_norm(params["stem_bn"], _conv(conv, params["stem"], x, padding=1)))
  for i, blocks in enumerate(params["stages"]):
    for j, blk in enumerate(blocks):
      stride = 2 if i > 0 and j == 0 else 1
      y = _conv(conv, blk["conv1"], x, stride=stride, padding=1)
      y = jax.nn.silu(_batch_norm(blk["bn1"], y))
      y = _batch_norm(blk["bn2"], _conv(conv, blk["conv2"], y, padding=1))
      if "proj" in blk:
        x = _batch_norm(blk["proj_bn"], _conv(conv, blk["proj"], x, stride=stride))
      x = jax.nn.silu(x + y)
  pooled = x.mean(axis=(2, 3))
  return pooled @ params["head"]["w"] + params["head"]["b"]


NETWORKS: dict[str, Network] = {n.name: n for n in (
    Network("convnext-small", "ConvNeXt-style: 4x4/4 stem, 2 stages (48, 96) x 2 blocks "
            "of dw7x7 + 1x1 MLP, 128x128 input", (16, 3, 128, 128), 10,
            functools.partial(_convnext_init, (48, 96), 2, 10), _convnext_apply),
    Network("resnet-small", "ResNet-style: 3x3 stem, 2 stages (32, 64) x 2 basic "
            "blocks with BN, 1x1/2 shortcut, 64x64 input", (16, 3, 64, 64), 10,
            functools.partial(_resnet_init, (32, 64), 2, 10), _resnet_apply),
)}


# --- the training step -------------------------------------------------------

def inputs(net: Network, seed: int = 0):
  """`(params, x, labels)`: deterministic float32 parameters and a random batch."""
  rng = np.random.default_rng(seed)
  params = jax.tree_util.tree_map(jnp.asarray, net.init(rng))
  x = jnp.asarray(rng.standard_normal(net.x_shape, dtype=np.float32))
  labels = jnp.asarray(rng.integers(0, net.classes, net.x_shape[0]), jnp.int32)
  return params, x, labels


def conv_fn(method: str | None) -> ConvFn:
  """`jaxconv.conv` with `method`, or the reference (lax at HIGHEST) for None."""
  import jaxconv
  from jaxconv.testing import reference_conv
  if method is None:
    return reference_conv
  return functools.partial(jaxconv.conv, method=method)


def loss_fn(net: Network, conv: ConvFn):
  """`(params, x, labels) -> mean softmax cross-entropy`."""
  import optax

  def loss(params, x, labels):
    logits = net.apply(params, x, conv)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss


def train_step(net: Network, conv: ConvFn, learning_rate: float = 1e-3):
  """`(params, opt_state, x, labels) -> (params, opt_state, loss, grads)` and the
  optimizer (`optax.adamw`): one forward + backward + update.

  The gradients are returned too, so the check compares exactly what the
  timed step computed (they cost nothing extra: the update needs them).
  """
  import optax
  opt = optax.adamw(learning_rate)
  loss = loss_fn(net, conv)

  def step(params, opt_state, x, labels):
    value, grads = jax.value_and_grad(loss)(params, x, labels)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value, grads
  return step, opt


def conv_calls(net: Network) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple]]:
  """`(x_shape, w_shape, sorted keyword items)` of every convolution of `net`'s
  forward pass, in call order (traced abstractly with a conv that records its
  arguments)."""
  from jaxconv.testing import reference_conv
  seen = []

  def recording_conv(x, w, b=None, **kwargs):
    seen.append((tuple(x.shape), tuple(w.shape), tuple(sorted(kwargs.items()))))
    return reference_conv(x, w, b, **kwargs)

  params, x, labels = inputs(net)
  jax.eval_shape(loss_fn(net, recording_conv), params, x, labels)
  return seen


def conv_geometries(net: Network):
  """The `Geometry` of every convolution of `net`, in call order."""
  from jaxconv._geometry import make_geometry
  spec = lambda s: jax.ShapeDtypeStruct(s, jnp.float32)  # noqa: E731
  return [make_geometry("bench.networks", spec(xs), spec(ws), **dict(kw))
          for xs, ws, kw in conv_calls(net)]
