"""Griffe extension: read jaxconv's Google docstrings as doctest-modules does.

Two habits of the code base that griffe's Google parser reads otherwise:

* `Example:` (STYLE.md: "a doctest Example") is an admonition to griffe, whose
  `>>>` lines Markdown then turns into quotes; it is the examples section,
  as `Examples:` is.
* An Args entry naming several parameters (`stride, padding: as conv.`)
  becomes one entry per parameter with the same description, so griffe can
  still check every documented name against the signature.

Only the text griffe parses for the site changes; the sources stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")
_ARGS = re.compile(r"^(\s*)Args:\s*$")
_MULTI = re.compile(r"^(\s+)(\*{0,2}\w+(?:,\s*\*{0,2}\w+)+):(.*)$")


def _indent(line: str) -> int:
  return len(line) - len(line.lstrip())


def normalize(text: str) -> str:
  lines = text.split("\n")
  out: list[str] = []
  args_indent = None  # indent of the current `Args:` header, inside that section
  i = 0
  while i < len(lines):
    line = lines[i]
    if args_indent is not None and line.strip() and _indent(line) <= args_indent:
      args_indent = None
    if m := _ARGS.match(line):
      args_indent = len(m.group(1))
    elif m := _EXAMPLE.match(line):
      line = f"{m.group(1)}Examples:"
    elif args_indent is not None and (m := _MULTI.match(line)):
      indent, names, desc = m.group(1), m.group(2), m.group(3)
      block = [desc]
      while (i + 1 < len(lines) and lines[i + 1].strip()
             and _indent(lines[i + 1]) > len(indent)):
        i += 1
        block.append("\n" + lines[i])
      for name in re.split(r",\s*", names):
        out.append(f"{indent}{name}:{''.join(block)}")
      i += 1
      continue
    out.append(line)
    i += 1
  return "\n".join(out)


class JaxconvDocstrings(griffe.Extension):
  """Normalise every docstring of the loaded package before it is parsed."""

  def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
    if not obj.is_alias and obj.docstring is not None:
      obj.docstring.value = normalize(obj.docstring.value)
