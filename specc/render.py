"""Stage 4: render a plan into the source files of the generated package.

Templates only place what the plan computed; `specc.layout` writes the plan's calls,
assignments and imports as Python text, and the filters below only spell values
(shapes, layouts, numbers). The classes of layers.py come from the layer kinds'
modules (`specc.kinds`), as templates named `classes/<Class>`. Rendering is pure: the
same plan gives the same bytes, whatever the hash seed or the machine.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from specc import kinds, layout
from specc.plan import Layout, Plan

# The package's files, in the order they are rendered and written.
PACKAGE_FILES = (
    "__init__.py",
    "__main__.py",
    "parallel.py",
    "layers.py",
    "model.py",
    "training.py",
    "shards.py",
    "checkpoint.py",
    "pretrained.py",
    "data.py",
    "train.py",
)
_CLASSES = "classes/"


def template_dir() -> Path:
    """Templates ship inside the wheel as specc/templates; in a checkout they sit beside specc/."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def _class_template(name: str) -> str | None:
    if not name.startswith(_CLASSES):
        return None
    template = kinds.CLASSES.get(name[len(_CLASSES) :])
    return None if template is None else template.source


@functools.lru_cache(maxsize=4096)
def _layout_text(value: Layout) -> str:
    """A layout as comments show it; a model has few distinct ones, written once per layer."""
    return Layout.text(value, ", ")


FILTERS = {
    **layout.FILTERS,
    "layout": _layout_text,
    "thousands": lambda number: f"{number:,}",
}


@functools.cache
def environment() -> jinja2.Environment:
    """The one environment of a process: Jinja2 compiles each template once, on first use,
    which costs more than rendering a package of a thousand layers (issue 17)."""
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(str(template_dir())),
                jinja2.FunctionLoader(_class_template),
            ]
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    return env


def render(plan: Plan) -> dict[str, str]:
    """The package's files as {path relative to the package directory: text}."""
    env = environment()
    optional = set(PACKAGE_FILES) - {"__init__.py", "__main__.py", "parallel.py", "model.py"}
    files = tuple(n for n in PACKAGE_FILES if n not in optional or n in plan.files)
    return {name: env.get_template(f"package/{name}.jinja").render(plan=plan) for name in files}
