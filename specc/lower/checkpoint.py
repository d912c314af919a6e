"""The checkpoint mapping: every parameter read from a tensor of a pretrained checkpoint.

The spec names parameters with `*` standing for a repetition of a repeat
(`h.*.attn.query_key_value.weight`); each entry must name parameters the model has,
every parameter must be named exactly once, and the steps must fit the parameter's
shape. Only the checkpoint's own shapes wait for the files, at load time.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Sequence

from specc.diagnostics import KEY, Clause, Help, Values
from specc.lower.reporter import Reporter
from specc.plan import Checkpoint, Parameter, TensorMapping
from specc.spec import Spec
from specc.spec.models import TensorSource

_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")


def checkpoint_plan(
    spec: Spec, parameters: Sequence[Parameter], report: Reporter
) -> Checkpoint | None:
    if spec.checkpoint is None:
        return None
    by_name = {p.name: p for p in parameters}
    patterns = sorted({_INDEX.sub("*", name) for name in by_name})
    covered: dict[str, str] = {}
    mappings = []
    for key, value in spec.checkpoint.tensors.items():
        path = ("checkpoint", "tensors", key)
        source = value if isinstance(value, TensorSource) else TensorSource(tensor=value)
        tensors = (source.tensor,) if isinstance(source.tensor, str) else tuple(source.tensor)
        written = _written(key)
        matched = [name for name in by_name if written.fullmatch(name)]
        if not matched:
            close = difflib.get_close_matches(key, patterns, n=1, cutoff=0.6)
            rule = "`*` stands for a repetition; `specc plan --json` lists the parameters"
            report.error(
                "E317",
                f"checkpoint.tensors maps `{key}`, which names no parameter of the model",
                path,
                help=Help.of(
                    Clause(f"did you mean `{{}}`? {rule}", Values(path, tuple(close), action=KEY)),
                    otherwise=rule,
                ),
                key=True,
            )
            continue
        for name in matched:
            if name in covered:
                report.error(
                    "E317",
                    f"parameter `{name}` is mapped twice: by `{covered[name]}` and `{key}`",
                    path,
                    help="map each parameter once",
                    key=True,
                )
            covered[name] = key
        problem = _problem(source, tensors, key, by_name[matched[0]])
        if problem:
            report.error("E317", problem[0], path, help=problem[1])
            continue
        mappings.append(
            TensorMapping(
                parameter=key,
                tensors=tensors,
                transpose=source.transpose,
                parts=source.parts,
                interleave=source.interleave,
                rows=None if source.rows is None else tuple(source.rows),
                shape=None if source.shape is None else tuple(source.shape),
                source=report.where(path),
            )
        )
    missing = list(dict.fromkeys(_INDEX.sub("*", n) for n in by_name if n not in covered))
    if missing:
        shown = ", ".join(f"`{name}`" for name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        report.error(
            "E317",
            f"{len(missing)} parameter(s) have no checkpoint tensor: {shown}{more}",
            ("checkpoint", "tensors"),
            help=f"map each, e.g. `{missing[0]}: <name in the checkpoint>`",
            key=True,
        )
    config = dict(spec.checkpoint.config)
    return Checkpoint(spec.checkpoint.format, tuple(mappings), config)


def _written(key: str) -> re.Pattern[str]:
    """The parameter names a mapping key covers: `*` stands for any repetition's index.

    One pattern per key, matched against every parameter (compiling one per pair cost
    GPT-2's validate 7-13 ms)."""
    return re.compile("\\d+".join(re.escape(part) for part in key.split("*")))


def _problem(
    source: TensorSource, tensors: tuple[str, ...], key: str, parameter: Parameter
) -> tuple[str, str] | None:
    """What makes the steps unable to give the parameter's shape, with the fix."""
    shape = parameter.layout.shape
    stars = key.count("*")
    for tensor in tensors:
        if tensor.count("*") != stars:
            return (
                f"`{tensor}` has {tensor.count('*')} `*` but the parameter `{key}` has {stars}",
                "`*` stands for the same repetition on both sides",
            )
    if source.parts is not None and len(tensors) != 1:
        return (
            f"`parts` cuts one tensor, but `{key}` reads {len(tensors)}",
            "give one `tensor` with `parts`, or a list of tensors without it",
        )
    count = source.parts or len(tensors)
    if source.rows is not None and len(source.rows) != count:
        return (
            f"`rows` lists {len(source.rows)} sizes for {count} tensors",
            "give the rows of each tensor, in order",
        )
    stored_rows = shape[0] if source.shape is None else source.shape[0]
    if source.rows is not None and sum(source.rows) != stored_rows:
        return (
            f"`rows` adds up to {sum(source.rows)}, but `{key}` has {stored_rows} rows",
            "list the rows each tensor gives",
        )
    if source.interleave is not None and shape[0] % source.interleave:
        return (
            f"`{key}` has {shape[0]} rows, which `interleave: {source.interleave}` does not "
            "divide into groups",
            "interleave by kv_heads (attention) or by ffn (a gated MLP)",
        )
    if source.shape is not None:
        squeezed = [size for size in source.shape if size != 1]
        if squeezed != [size for size in shape if size != 1] or math.prod(source.shape) != (
            math.prod(shape)
        ):
            return (
                f"`shape: {list(source.shape)}` differs from the parameter's {list(shape)} "
                "by more than dimensions of size 1",
                f"give the stored shape, which holds the parameter's {list(shape)}",
            )
    return None
