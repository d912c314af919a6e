"""The naming authority: the only place that decides which spec strings may become code.

A name from a spec reaches generated code only after `check_identifier` accepted it, so
a spec cannot inject code, shadow a builtin the generated module relies on, or collide
with an `nn.Module` attribute. Everything else the templates print is either a
fixed identifier or a literal rendered with `repr`.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata

MAX_LENGTH = 32
MAX_LABEL = 40  # a spec's file name, as generated headers and comments show it
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")

# Public attributes of oneflow.nn.Module (0.9.0): a layer named like one would replace it.
_MODULE_ATTRIBUTES = frozenset(
    "add_module apply buffers children cpu cuda double eval extra_repr float forward half "
    "load_state_dict modules named_buffers named_children named_modules named_parameters "
    "parameters register_buffer register_forward_hook register_forward_pre_hook "
    "register_parameter requires_grad_ state_dict to to_consistent to_global to_local train "
    "training zero_grad".split()
)
# The identifiers generated code makes up itself. Templates and lowering take them from
# here, and no input or layer may be named like one.
HIDDEN = "hidden"  # the stream, a local of every forward
RESIDUAL = "residual"  # what a residual keeps; residual_<n> inside another residual
LOOP_VARIABLE = "layer"  # a repeat's loop over its instances
STAGE_VARIABLE = "stage"  # the comprehension that builds a pipelined repeat's instances
UNUSED_VARIABLE = "_"  # ... and an unpipelined one's
PLACEMENT = "placement"  # a repeat body's constructor argument and attribute
SELF = "self"

# Names the generated modules use themselves: modules, and the local variables of
# every forward (the stream, what a residual keeps, a repeat's loop variable), which
# an input of the same name, a parameter of forward, would collide with, and the
# attributes of a repeat body's class, which a layer of the same name would replace.
_GENERATED = frozenset(
    {SELF, HIDDEN, RESIDUAL, LOOP_VARIABLE, PLACEMENT}
    | set("flow nn math oneflow model parallel layers main".split())
)
_GENERATED_PATTERN = re.compile(r"residual_\d+\Z")  # residuals inside residuals
# Package names that would shadow what the generated code or its user imports.
# OneFlow imports rich and google (protobuf) itself; the rest are common neighbours.
_PACKAGES = frozenset(sys.stdlib_module_names) | {
    "google",
    "jinja2",
    "libai",
    "numpy",
    "nvidia",
    "oneflow",
    "pip",
    "pkg_resources",
    "pydantic",
    "pytest",
    "requests",
    "rich",
    "setuptools",
    "specc",
    "test",
    "tests",
    "torch",
    "tqdm",
    "typing_extensions",
    "yaml",
}


# Letters from other scripts that look like Latin ones; a name that uses them reads
# right but is not the identifier its author thinks it is.
_LOOKALIKES = str.maketrans("аеорсухіјѕԁԛԝαεοριυνκτχ", "aeopcyxijsdqwaeopiuvktx")


def identifier_problem(name: str, *, package: bool = False) -> str | None:
    """Why `name` cannot be used as an identifier in generated code, or None if it can."""
    foreign = next((c for c in name if not c.isascii()), None)
    if foreign is not None:
        described = unicodedata.name(foreign, f"U+{ord(foreign):04X}")
        return f"it contains the non-ASCII character {foreign!r} ({described})"
    if not _IDENTIFIER.match(name):
        return "it must start with a lower-case letter and hold only a-z, 0-9 and _"
    if len(name) > MAX_LENGTH:
        return f"it is longer than {MAX_LENGTH} characters"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "it is a Python keyword"
    if package and name in _PACKAGES:
        return "it would shadow an existing module"
    generated = name in _GENERATED or _GENERATED_PATTERN.match(name)
    if not package and (name in _MODULE_ATTRIBUTES or generated):
        return "it is already used by nn.Module or by the generated code"
    return None


def suggest_identifier(text: str, *, package: bool = False) -> str:
    """A valid identifier close to `text`, offered in the `help:` line of name errors."""
    latin = unicodedata.normalize("NFKD", text.translate(_LOOKALIKES))
    ascii_text = latin.encode("ascii", "ignore").decode()
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", ascii_text).lower()
    snake = re.sub(r"[^a-z0-9]+", "_", snake).strip("_")[:MAX_LENGTH]
    if not snake or not snake[0].isalpha():
        snake = ("model_" if package else "layer_") + snake
        snake = snake.rstrip("_")[:MAX_LENGTH]
    if identifier_problem(snake, package=package) is not None:
        snake = snake[: MAX_LENGTH - 1] + "_"
    if identifier_problem(snake, package=package) is not None:
        return "my_model" if package else "my_layer"
    return snake


def class_name(identifier: str) -> str:
    """The PascalCase class name of an accepted snake_case identifier: `blocks` -> `Blocks`."""
    return "".join(part[:1].upper() + part[1:] for part in identifier.split("_"))


def body_class(repeat: str) -> str:
    """The class of one repetition of repeat `repeat`: `h` -> `HLayer`.

    Distinct repeats can give the same class (`a_b` and `a__b` both give `ABLayer`);
    `spec` refuses such pairs before anything is generated.
    """
    return class_name(repeat) + "Layer"


def stages_constant(repeat: str) -> str:
    """The module constant listing the pipeline stage of each repetition: `H_STAGES`."""
    return f"{repeat.upper()}_STAGES"


def residual_variable(depth: int) -> str:
    """What a residual keeps, at `depth` residuals inside others: `residual`, `residual_1`."""
    return RESIDUAL if depth == 0 else f"{RESIDUAL}_{depth}"


def attribute(name: str) -> str:
    """How a module's own layer is reached: `self.<name>`."""
    return f"{SELF}.{name}"


def distinct_name(name: str, taken: set[str]) -> str:
    """`name` with the smallest numeric suffix that makes it (and its class) new."""
    for number in range(2, 1000):
        suffix = f"_{number}"
        candidate = name[: MAX_LENGTH - len(suffix)] + suffix
        if candidate not in taken and body_class(candidate) not in {body_class(t) for t in taken}:
            return candidate
    return suggest_identifier(name + "_x")


def default_layer_name(kind: str, index: int) -> str:
    """The attribute name of an unnamed layer: its kind and its position in the spec."""
    return f"{kind}_{index}"


def file_label(path: str) -> str:
    """The spec's file name as generated comments and headers show it.

    Only the base name is kept (no absolute paths in output), and any character that
    could end a comment or a string is replaced, since file names are user input too.
    """
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", base) or "spec"
    if len(label) > MAX_LABEL:  # keep the header line within the line length
        label = label[: MAX_LABEL // 2 - 2] + "..." + label[-(MAX_LABEL - MAX_LABEL // 2 - 1) :]
    return label


def shown(name: str) -> str:
    """`name` as a message quotes it: escaped when it holds what would break the line."""
    if name and name.isprintable() and "`" not in name:
        return f"`{name}`"
    return json.dumps(name, ensure_ascii=True)
