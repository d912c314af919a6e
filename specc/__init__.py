"""specc: compile a YAML model spec into a package of parallel OneFlow modules.

The stages, each a module, with imports flowing one way:
source (YAML -> data with positions) -> spec (pydantic models, names) ->
lower (checks, shapes, SBP -> plan) -> render (plan -> source text) -> emit (disk).
`specc.api` strings them together for the CLI and for Python callers.
"""

__version__ = "0.1.0"
