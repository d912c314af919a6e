"""Stage 4: render a plan into the source files of the generated package.

Templates only place what the plan computed; the filters below only spell values
(Python literals, shapes, layouts) and never decide anything. Rendering is pure:
the same plan gives the same bytes, whatever the hash seed or the machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from specc.plan import Layout, Plan

# The package's files, in the order they are rendered and written.
PACKAGE_FILES = (
    "__init__.py",
    "__main__.py",
    "parallel.py",
    "layers.py",
    "model.py",
    "training.py",
)


def template_dir() -> Path:
    """Templates ship inside the wheel as specc/templates; in a checkout they sit beside specc/."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(size) for size in shape) + "]"


def _layout(layout: Layout) -> str:
    return (
        f"{_shape(layout.shape)}, sbp ({', '.join(layout.sbp)}), local {_shape(layout.local_shape)}"
    )


def _py(value: object) -> str:
    """A Python literal for a str/int/float/bool, safe to paste into code.

    Strings use double quotes, as ruff format writes them; JSON's escapes are all
    valid Python escapes, so the literal reads back as the same string.
    """
    if isinstance(value, str):
        return json.dumps(value)
    if not isinstance(value, int | float | bool):
        raise TypeError(f"cannot render {type(value).__name__} as a literal")
    return repr(value)


FILTERS = {
    "py": _py,
    "shape": _shape,
    "layout": _layout,
    "thousands": lambda number: f"{number:,}",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
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
    files = tuple(
        name
        for name in PACKAGE_FILES
        if (name != "layers.py" or plan.layer_classes) and (name != "training.py" or plan.loss)
    )
    return {name: env.get_template(f"package/{name}.jinja").render(plan=plan) for name in files}
