"""The training recipe: the spec's `training:` checked as a whole and made complete.

Each setting is checked against the others and against the device, so that a recipe
that cannot run, or a setting OneFlow 0.9 ignores on a CPU, is said before any process
starts: mixed precision computes in fp32 on a CPU, and ZeRO aborts there once it
shards anything (../shared/research/oneflow-cpu-features.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from specc.lower.reporter import Reporter
from specc.plan import Parameter, Recipe
from specc.spec import Spec
from specc.spec.models import Training

_INDEX = re.compile(r"(?<=\.)\d+(?=\.)")


def recipe(
    spec: Spec, parameters: Sequence[Parameter], has_repeat: bool, report: Reporter
) -> Recipe:
    training = spec.training or Training(micro_batch=1)
    given = spec.training is not None
    optimizer, schedule = training.optimizer, training.schedule
    path = ("training",)
    if schedule.kind != "constant" and schedule.steps is None:
        report.error(
            "E318",
            f"a `{schedule.kind}` schedule decays until `steps`, which is missing",
            (*path, "schedule", "kind"),
            help="give `steps:` (the length of the run, warmup included), or `kind: constant`",
        )
    if schedule.steps is not None and schedule.warmup > schedule.steps:
        report.error(
            "E318",
            f"the warmup of {schedule.warmup} steps is longer than the {schedule.steps} steps "
            "of the run",
            (*path, "schedule", "warmup"),
            help=f"use a warmup of at most {schedule.steps} steps",
        )
    if schedule.min_lr > optimizer.lr:
        report.error(
            "E318",
            f"min_lr {schedule.min_lr:g} is above the peak lr {optimizer.lr:g}",
            (*path, "schedule", "min_lr"),
            help="a decay goes down to min_lr: make it at most lr",
        )
    if optimizer.kind == "adamw" and "momentum" in optimizer.model_fields_set:
        report.error(
            "E318",
            "momentum is SGD's; AdamW's moments are set by `betas`",
            (*path, "optimizer", "momentum"),
            help="write `betas:` (AdamW's two moment decays), or `kind: sgd`",
        )
    if optimizer.kind == "sgd" and {"betas", "eps"} & optimizer.model_fields_set:
        report.error(
            "E318",
            "betas and eps are AdamW's; SGD takes `momentum`",
            (*path, "optimizer", "kind"),
            help="write `kind: adamw`, or `momentum:` for SGD",
        )
    if training.loss_scale is not None and training.precision != "fp16":
        report.error(
            "E318",
            f"loss scaling is fp16's, but precision is {training.precision}",
            (*path, "loss_scale"),
            help="set `precision: fp16`, or leave loss_scale out (bf16 needs none)",
        )
    _device_warnings(spec, training, report)
    if training.recompute and not has_repeat:
        report.warning(
            "W504",
            "`recompute` recomputes each repetition of a repeat, and the model has none",
            (*path, "recompute"),
            help="put the blocks in a `repeat`, or leave recompute out",
        )
    batching = {"micro_batch", "accumulation", "global_batch"}
    recipe_keys = sorted(training.model_fields_set - batching) if given else []
    if recipe_keys and spec.loss is None:
        report.warning(
            "W504",
            "the recipe trains with a loss, and the spec has none: the package gets no TrainGraph",
            (*path, recipe_keys[0]),
            help="add `loss: {kind: cross_entropy}`",
        )
    loss_scale = training.loss_scale
    if training.precision == "fp16" and loss_scale is None:
        loss_scale = "dynamic"
    return Recipe(
        optimizer=optimizer.kind,
        lr=optimizer.lr,
        betas=(optimizer.betas[0], optimizer.betas[1]),
        eps=optimizer.eps,
        momentum=optimizer.momentum,
        weight_decay=optimizer.weight_decay,
        no_decay=tuple(dict.fromkeys(_pattern(p.name) for p in parameters if not p.decay)),
        schedule=schedule.kind,
        warmup=schedule.warmup,
        steps=schedule.steps,
        min_lr=schedule.min_lr,
        clip_grad_norm=training.clip_grad_norm,
        precision=training.precision,
        loss_scale=loss_scale,
        recompute=training.recompute,
        zero=training.zero,
        seed=training.seed,
        sequence_parallel=spec.parallel.sequence and spec.parallel.tensor > 1,
    )


def _pattern(name: str) -> str:
    """The graph's variable name of a parameter, a regex for every repetition of it."""
    parts = [r"\d+" if part.isdigit() else re.escape(part) for part in name.split(".")]
    return "^model\\." + "\\.".join(parts) + "$"


def _device_warnings(spec: Spec, training: Training, report: Reporter) -> None:
    device, data = spec.device, spec.parallel.data
    if device == "cpu" and training.zero and data > 1:
        report.error(
            "E318",
            f"ZeRO stage {training.zero} shards over data ranks, which OneFlow 0.9 cannot do "
            "on device cpu (every rank aborts)",
            ("training", "zero"),
            help="use `device: cuda` (or auto on GPUs), or leave `zero` out",
        )
    if device == "cpu" and training.precision != "fp32":
        report.warning(
            "W504",
            f"precision {training.precision} computes in fp32 on device cpu (OneFlow 0.9 "
            "inserts no casts there)",
            ("training", "precision"),
            help="use `device: cuda` or auto on GPUs, or precision fp32",
        )
    if spec.parallel.sequence and spec.parallel.tensor == 1:
        report.warning(
            "W504",
            "sequence parallelism splits the sequence over tensor ranks, and tensor is 1",
            ("parallel", "sequence"),
            help="split over tensor ranks too (`parallel.tensor`), or leave sequence out",
        )
