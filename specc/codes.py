"""The table of diagnostic codes: stable identifiers users can search for and CI can match.

A code never changes meaning once released. The table in `docs/diagnostics.md` is what
`specc codes` prints, and a test keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """A diagnostic code, what it means, and an example message."""

    name: str
    summary: str
    example: str


_TABLE = [
    # E1xx: reading the YAML document.
    Code("E100", "YAML syntax error", "mapping values are not allowed here"),
    Code("E101", "duplicate key in a mapping", "duplicate key `tensor` (first given at 4:3)"),
    Code("E102", "YAML tag that constructs objects", "tag `!!python/object` is not allowed"),
    Code("E103", "document too large", "spec is 52,428,800 bytes; specc reads at most 8 MiB"),
    Code("E104", "document nested or aliased too deeply", "document nests deeper than 64 levels"),
    Code("E105", "top level is not a mapping", "a spec must be a mapping, found a list"),
    Code("E106", "empty document", "the file holds no YAML document"),
    Code("E107", "file cannot be read", "no such file: specs/missing.yaml"),
    Code("E108", "mapping key is not a string", "key 3 is not a string"),
    Code("E109", "number written with a decimal comma", "`0,1` reads as `p: 0` and a key `1`"),
    # E2xx: the shape of the spec (pydantic models).
    Code("E200", "unknown key", "unknown key `out_feature`; did you mean `out_features`?"),
    Code("E201", "missing required key", "linear layer is missing `in_features`"),
    Code("E202", "value of the wrong type", "`tensor` must be an integer, found '2'"),
    Code("E203", "value not among the allowed choices", "split `column` is not one of col, row"),
    Code("E204", "number out of range", "`data` must be at least 1, found 0"),
    Code("E205", "unknown layer kind", "unknown layer kind `conv`; valid kinds: linear, ..."),
    Code("E206", "unsupported format version", "format version 2 is not supported; use 1"),
    Code("E207", "invalid name", "`my-model` is not a valid package name; try `my_model`"),
    Code("E208", "duplicate name", "layer name `fc` is used twice (first at 9:11)"),
    Code("E209", "list too short or too long", "`layers` must hold at least 1 item"),
    Code("E210", "bad --set override", "--set hiddn=64: the spec has no size `hiddn`"),
    Code("E211", "unresolvable size reference", "cannot resolve `${hiden}`: no size named `hiden`"),
    # E3xx: the parallel plan.
    Code("E300", "world size does not match the mesh", "world_size 8 != data 2 x tensor 2"),
    Code("E301", "split dimension not divisible", "out_features 1000 is not divisible by tensor 3"),
    Code("E302", "batch not divisible by data", "batch 30 is not divisible by data 4"),
    Code("E303", "input size does not match", "in_features 512 != previous output 1024"),
    Code("E304", "normalized size does not match", "layernorm features 512 != input 1024"),
    Code("E305", "feature not supported yet", "inputs with different splits"),
    Code("E306", "input of the wrong kind", "embedding reads int64 [batch, seq], found float32"),
    Code("E307", "residual or repeat changes the shape", "residual adds [8, 16] to [8, 32]"),
    Code(
        "E308",
        "reference to an unknown input or layer",
        "attention reads input `mask`, not declared",
    ),
    Code("E309", "tied weights of different shapes", "lm_head tied to a [100, 64] table, input 32"),
    Code("E310", "position out of range", "sequence of 2048 positions, max_positions 1024"),
    Code("E311", "images do not fit the patch embedding", "image_size 224 not divisible by 14"),
    Code("E312", "hidden size not divisible by heads", "hidden size 770 not divisible by heads 12"),
    Code("E313", "layer in a place it cannot be", "repeat inside another repeat"),
    Code("E314", "pipeline stage out of range or going back", "stage 2 comes after stage 3"),
    Code("E315", "pipeline stage without a layer", "pipeline stage 1 has no layer"),
    Code("E316", "batch sizes do not multiply out", "global_batch 30 is not 4 x 2 x 4 = 32"),
    Code(
        "E317",
        "checkpoint mapping does not fit the parameters",
        "parameter `h.0.mlp.dense_4h_to_h.bias` has no checkpoint tensor",
    ),
    Code(
        "E318",
        "training recipe that cannot run",
        "a `cosine` schedule decays until `steps`, which is missing",
    ),
    Code(
        "E319",
        "sequence not divisible for sequence parallelism",
        "a sequence of 197 tokens split over tensor 2",
    ),
    # W5xx: warnings; they fail only under --strict.
    Code("W500", "all-gather inserted", "gathers [32, 16384] before layernorm `ln`"),
    Code("W501", "data-parallel ranks repeat work", "input `x` is not split but data is 2"),
    Code("W502", "input never used", "input `types` is never used by a layer"),
    Code("W503", "pipeline cannot fill", "1 micro-batch per step cannot fill a 2-stage pipeline"),
    Code("W504", "recipe setting without effect", "precision bf16 computes in fp32 on device cpu"),
]

CODES: dict[str, Code] = {code.name: code for code in _TABLE}


def markdown_table() -> str:
    """The documentation table of every code, one line each with an example."""
    lines = ["| code | meaning | example |", "| --- | --- | --- |"]
    lines += [f"| `{c.name}` | {c.summary} | {c.example} |" for c in _TABLE]
    return "\n".join(lines) + "\n"
