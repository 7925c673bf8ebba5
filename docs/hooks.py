"""mkdocs hooks: repository files into the site, and the API coverage check.

* The notebooks and the benchmark results stay where they are in the
  repository; `on_files` adds them to the site under the same paths, so the
  README's relative links (`notebooks/...`, `bench/results/...`) work
  unchanged in the pages that include README sections.
* Each benchmark run's folder (`bench/results/DATE/`) gets a generated
  `index.md` showing its plots and linking its JSON, and a link to the folder
  itself (as the README has, for GitHub) points to that page.
* A nav entry whose value is a glob (`notebooks/*.ipynb`) lists the matching
  files (or, for `DIR/*/index.md`, the generated folder pages), so a new
  notebook or run gets its page without editing mkdocs.yml.
* `on_post_build` fails the strict build (a warning) when a public name --
  `jaxconv.__all__` and the `__all__` of `kernels`, `nn`, `testing` -- has no
  docstring, no doctest example (for a class: in its docstring or a public
  method's), or no entry (`::: jaxconv.NAME`, or its module's) on an API page.
"""

from __future__ import annotations

import importlib
import inspect
import json
import posixpath
import re
from pathlib import Path

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority, get_plugin_logger
from mkdocs.structure.files import File, Files

log = get_plugin_logger(__name__)

ROOT = Path(__file__).resolve().parent.parent
REPO_GLOBS = ("notebooks/*.ipynb", "bench/results/*.md", "bench/results/*/*.png",
              "bench/results/*/*.json")
RUN_DIRS = "bench/results/*/"
PUBLIC_MODULES = ("jaxconv", "jaxconv.kernels", "jaxconv.nn", "jaxconv.testing")
# Pytree protocol methods: public by name, not API (hidden by mkdocstrings' filters too).
PROTOCOL = ("tree_flatten", "tree_unflatten")
_DIRECTIVE = re.compile(r"^:::\s+([\w.]+)", re.MULTILINE)

_documented: set[str] = set()
_page = {"src_uri": ""}  # the page being rendered, for _FolderLinks


def _run_dirs() -> list[str]:
  return sorted(p.relative_to(ROOT).as_posix() for p in ROOT.glob(RUN_DIRS) if p.is_dir())


def _glob_nav(nav):
  """Expand every string entry containing `*` into the sorted matching files."""
  if isinstance(nav, list):
    return [_glob_nav(item) for item in nav]
  if isinstance(nav, dict):
    return {k: _glob_nav(v) for k, v in nav.items()}
  if isinstance(nav, str) and "*" in nav:
    if nav.endswith("/index.md"):  # generated folder pages
      folders = ROOT.glob(nav.removesuffix("index.md"))
      return sorted(f"{p.relative_to(ROOT).as_posix()}/index.md" for p in folders if p.is_dir())
    return [_titled(p.relative_to(ROOT).as_posix()) for p in sorted(ROOT.glob(nav))]
  return nav


def _titled(uri: str):
  """A notebook as `{title: uri}`, the title from its first Markdown heading
  (mkdocs-jupyter titles the page, but the nav is built before it renders)."""
  if not uri.endswith(".ipynb"):
    return uri
  for cell in json.loads((ROOT / uri).read_text())["cells"]:
    if cell["cell_type"] == "markdown":
      for line in "".join(cell["source"]).splitlines():
        if line.startswith("# "):
          return {line[2:].replace("`", "").strip(): uri}
  return uri


class _FolderLinks(Preprocessor):
  """`[text](bench/results/DATE/)` -> `.../DATE/index.md`, the generated page.

  A preprocessor after pymdownx.snippets (priority 32), so it also sees the
  README sections the pages include."""

  _LINK = re.compile(r"\]\(([^()\s:]+/)\)")

  def run(self, lines: list[str]) -> list[str]:
    base = posixpath.dirname(_page["src_uri"])
    folders = set(_run_dirs())

    def fix(m: re.Match) -> str:
      target = posixpath.normpath(posixpath.join(base, m.group(1)))
      return f"]({m.group(1)}index.md)" if target in folders else m.group(0)

    return [self._LINK.sub(fix, line) for line in lines]


class _FolderLinksExtension(Extension):
  def extendMarkdown(self, md) -> None:  # noqa: N802 -- Python-Markdown's name
    md.preprocessors.register(_FolderLinks(md), "jaxconv_folder_links", 20)


def on_config(config):
  config.nav = _glob_nav(config.nav)
  config.markdown_extensions.append(_FolderLinksExtension())
  _documented.clear()
  return config


def _run_page(folder: str) -> str:
  """A benchmark run's folder as a page: its plots, then its JSON files."""
  files = sorted((ROOT / folder).iterdir())
  lines = [f"# Benchmark run {Path(folder).name}", "",
           f"The files of `{folder}/`, as `python -m bench` wrote them (plots redrawn "
           "with `python -m bench.plots FILE.json`).", ""]
  lines += [f"- [`{p.name}`]({p.name})" for p in files if p.suffix == ".json"]
  for p in files:
    if p.suffix == ".png":
      lines += ["", f"## {p.stem}", "", f"![{p.stem}]({p.name})"]
  return "\n".join(lines) + "\n"


@event_priority(100)  # before mkdocs-jupyter's on_files, which must see the notebooks
def on_files(files: Files, config) -> Files:
  for pattern in REPO_GLOBS:
    for path in sorted(ROOT.glob(pattern)):
      uri = path.relative_to(ROOT).as_posix()
      if files.get_file_from_path(uri) is None:
        files.append(File(uri, src_dir=str(ROOT), dest_dir=config.site_dir,
                          use_directory_urls=config.use_directory_urls))
  for folder in _run_dirs():
    files.append(File.generated(config, f"{folder}/index.md", content=_run_page(folder)))
  return files


def on_page_markdown(markdown: str, page, config, files) -> str:
  _page["src_uri"] = page.file.src_uri
  _documented.update(_DIRECTIVE.findall(markdown))
  return markdown


def _public_names():
  """`(qualified name, object)` of every public name."""
  for modname in PUBLIC_MODULES:
    module = importlib.import_module(modname)
    for name in module.__all__:
      yield f"{modname}.{name}", getattr(module, name)


def _has_example(doc: str | None) -> bool:
  return bool(doc) and ">>>" in doc


def _members(cls):
  for attr, member in vars(cls).items():
    if attr.startswith("_") or attr in PROTOCOL:
      continue
    fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
    if inspect.isfunction(fn):
      yield attr, fn


def _problems(qual: str, obj) -> list[str]:
  out = []
  if not inspect.getdoc(obj):
    return [f"{qual} has no docstring"]
  examples = _has_example(obj.__doc__)
  if inspect.isclass(obj):
    for attr, fn in _members(obj):
      if not inspect.getdoc(fn):
        out.append(f"{qual}.{attr} has no docstring")
      examples = examples or _has_example(fn.__doc__)
  if not examples:
    out.append(f"{qual} has no example (a doctest `>>>` in its docstring)")
  module, _, _ = qual.rpartition(".")
  if qual not in _documented and module not in _documented - {"jaxconv"}:
    out.append(f"{qual} has no entry on an API page (`::: {qual}`)")
  return out


def on_post_build(config) -> None:
  problems = [p for qual, obj in _public_names() for p in _problems(qual, obj)]
  for problem in problems:
    log.warning(problem)
  if not problems:
    log.info("every public name has a docstring, an example and an API entry")
