"""The layer kinds, one module each; this registry finds them and answers for them all.

Every module of this package but `base` and `costs` (what kinds are made of) is a kind
(it defines `KIND`) or adds classes to the generated layers.py (`CLASSES`, a loss).
Adding a kind is adding its module: nothing else lists the kinds. See `specc.kinds.base`
for what a kind module holds and docs/architecture.md for how to add one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from specc.kinds.base import ClassTemplate, Kind, LayerModel, Twin


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name)
        if info.name not in ("base", "costs")
    ]


def _collect() -> tuple[tuple[Kind, ...], tuple[ClassTemplate, ...]]:
    modules = _modules()
    kinds = sorted((m.KIND for m in modules if hasattr(m, "KIND")), key=lambda k: k.order)
    orders = [k.order for k in kinds]
    assert len(set(orders)) == len(orders), f"two kinds share an order: {orders}"
    classes = [c for kind in kinds for c in kind.classes]
    classes += [c for m in modules if not hasattr(m, "KIND") for c in getattr(m, "CLASSES", ())]
    return tuple(kinds), tuple(classes)


KINDS, _CLASS_LIST = _collect()
# Every `kind:` value, in the order help texts list them.
NAMES: tuple[str, ...] = tuple(name for kind in KINDS for name in kind.names)
BY_NAME: dict[str, Kind] = {name: kind for kind in KINDS for name in kind.names}
BY_MODEL: dict[type[LayerModel], Kind] = {kind.model: kind for kind in KINDS}
# The generated layers.py's classes, in the order it defines them.
CLASSES: dict[str, ClassTemplate] = {c.name: c for c in _CLASS_LIST}
# Element-wise activations, also the choices of an mlp's `activation:`.
ACTIVATIONS: dict[str, Kind] = {kind.name: kind for kind in KINDS if kind.activation}
# What other frameworks call specc's kinds (PyTorch, Keras, Megatron, LiBai).
SYNONYMS: dict[str, str] = {s: kind.name for kind in KINDS for s in kind.synonyms}

assert len(CLASSES) == len(_CLASS_LIST), "two kinds define a class of the same name"
assert not any(name.endswith("Layer") for name in CLASSES), "Layer names repeat bodies"


def of(layer: LayerModel) -> Kind:
    """The kind of a validated layer."""
    return BY_MODEL[type(layer)]


def fitting(keys: Iterable[str]) -> list[str]:
    """The kinds that have every one of `keys` among their settings (`name`, `stage` and
    `kind` aside), in the order help texts list kinds: what a layer whose `kind` was
    forgotten may be. Empty when the keys say nothing of the kind."""
    own = set(keys) - set(LayerModel.model_fields) - {"kind"}
    if not own:
        return []
    return [kind.name for kind in KINDS if own <= set(kind.model.model_fields)]


def activation_reference(name: str) -> Callable[[Any, Any], Any]:
    """What activation `name` computes, as `(flow, x) -> y`, for the parity twin."""
    reference = ACTIVATIONS[name].reference
    assert reference is not None
    return lambda flow, x: reference(Twin(flow, x, {}, {}, {}, {}))


def needed_classes(used: set[str]) -> list[ClassTemplate]:
    """The classes `used` and those they build on, in the order layers.py defines them."""
    needed = set(used)
    frontier = list(used)
    while frontier:
        for name in CLASSES[frontier.pop()].needs:
            if name not in needed:
                needed.add(name)
                frontier.append(name)
    return [template for name, template in CLASSES.items() if name in needed]
