"""Bugs the fuzzer found in specc that are not fixed yet.

When a random test finds a bug, keep its spec in tests/regressions/ with a test marked
xfail(strict=True), and add a predicate here that recognises such cases, so the random
tests skip them (and stay able to find other bugs) until the fix lands: then the
regression test XPASSes, fails the run, and the marker and the predicate go.

Open: none.

Fixed (tests/regressions/ keeps them):
  tagged_scalar_not_a_number
                           `!!float 16|1-`, `!!int x`, `!!bool maybe`: PyYAML's constructor
                           raised inside the walker (exit 3); the text is now kept and the
                           schema says what the key needs (E202)
  select_token_only        layers.py of a model whose only layer class is SelectToken
                           had three blank lines after its imports (ruff check I001)
  repeats_one_class        repeats named `a_b` and `a__b` both became `class ABLayer`
                           (exit 0, the first without parameters); now E208
  placement_in_pipelined_repeat
                           a layer named `placement` replaced a repeat body's placement:
                           a TypeError at run time; now E207
  rmsnorm_long_signature   RMSNorm's __init__ line was longer than ruff format's 88
  tied_head_fills_no_stage a tied lm_head counted as a unit that can fill a stage, so
                           balancing cut 1 unit into 2 stages: ValueError, exit 3
  balanced_input_reader    balancing put a layer reading a second input on stage 1 and
                           then refused it (E313) in a spec that wrote no stage
  tied_head_unnamed_table  a head tied to an unnamed table (`tied_to: embedding_0`) was
                           not staged with it: a placement error at run time
  gather_in_a_graph        an all-gather after a `col` linear aborted OneFlow's CPU graph
                           training; gathers now state their gradient's SBP
  split_constants_per_rank one FEATURE_SPLIT constant served activations of every rank
  input_named_hidden       an input named like a generated local (hidden, residual,
                           layer) collided with it: duplicate argument, exit 3
  long_repeat_name_pipelined
                           a pipelined repeat's stage constant (with its trailing
                           comment) and ModuleList comprehension overran ruff's 88
  control_char_after_bom   a control character on line 1 of a file starting with a BOM
                           was reported one column to the right (the BOM was counted)
  name_with_newline        a refused name holding a line break was quoted raw by the
                           messages of lowering (W501, E303, ...), breaking their line
  empty_layer_name         `name: ""` on a layer was replaced by the default name
                           instead of being refused (E207)
  cr_line_ends             the text report split lines on \n only, YAML (whose marks
                           place every diagnostic) also on a lone \r, U+0085, U+2028 and
                           U+2029: the source line shown under a diagnostic was missing
  control_char_after_cr    a control character was located counting only \n as a line
                           break (1:138 for 3:7 in a file with lone CR line ends)
  nonprintable_in_comment  a control character made PyYAML raise outside specc's try:
                           exit 3 and a traceback instead of a located E100
  huge_mesh                lowering built every rank and looped over every node count:
                           65536 x 65536 ran out of memory (exit 3); 65536 x 1024 took 15 s
  world_size_cap           world_size was capped at 65536 but the mesh was not, so a
                           131072-rank mesh was valid only while its world size went unsaid
  kind_with_newline        E205 quoted an unknown kind raw, line breaks included
  version_true/_float      `specc: true` and `specc: 1.0` were read as version 1
  shape_nine_dims          a too-long list was E202 in pydantic's words, not E209
  layernorm_without_linear layers.py imported math without using it (ruff F401)
  node_counts_long_line    NODE_COUNTS was one line however long (ruff format)
  long_package_name        __main__.py's prog= line and the parenthesised LAUNCH_COMMAND
                           were not what ruff format writes for long package names
  rich_package, google_package
                           package names that cannot be imported beside OneFlow
                           (`from rich import box` in oneflow.profiler; protobuf's
                           nspkg.pth pre-imports the `google` namespace)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

# SPECC_FUZZ_KNOWN=1: do not skip anything, to see whether the open bugs are still there.
AVOID = os.environ.get("SPECC_FUZZ_KNOWN") != "1"

# (regression file, predicate on a tests.fuzz.strategies.Case), one per open bug.
OPEN: tuple[tuple[str, Callable[[Any], bool]], ...] = ()


def open_bugs(case: Any) -> list[str]:
    """The regression files of the open bugs `case` would run into (when avoiding them)."""
    if not AVOID:
        return []
    return [name for name, applies in OPEN if applies(case)]
