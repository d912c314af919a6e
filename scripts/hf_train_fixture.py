"""Write tests/fixtures/hf/gpt2_train/: the tiny GPT-2 fixture trained 5 steps in torch.

Run by `make hf-fixtures` after scripts/hf_fixtures.py, in .venv-hf (torch); specc never
imports this file. It is the field's own implementation of specc's training recipe, for
tests/test_recipe_parity.py: the weights of tests/fixtures/hf/gpt2, in train mode (its
dropout is 0), trained on fixed token batches with shifted next-token labels by

  torch.optim.AdamW (and, as a second case, torch.optim.SGD with momentum), weight decay
      on the matrices only: biases and layer-norm weights are in a group without decay,
      which is specc's rule (a norm's scale and every bias), and GPT-2's tied wte/lm_head
      is one parameter, decayed once;
  torch.nn.utils.clip_grad_norm_ over all parameters (the global L2 norm);
  the learning rate specc's make_schedule gives inside the graph (OneFlow's WarmupLR,
      linear from 0, prefixed to CosineDecayLR; see `learning_rate`), set before each step.

reference.safetensors holds the batches (`tokens`, [steps, batch, seq + 1]: the inputs
are tokens[..., :-1], the labels tokens[..., 1:]) and per optimizer the loss, learning
rate and gradient norm (before clipping) of every step, and the final values of a few
tensors (HF checkpoint names). reference.json holds the recipes, as a spec writes
them, and for every tensor the L2 norm and sum of its change over the run.
Deterministic: one thread, deterministic algorithms, seeded batches.
"""

from __future__ import annotations

import json
import math
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
import torch.nn.functional as F
from hf_fixtures import OUT, ROOT, versions
from safetensors.numpy import save_file
from transformers import GPT2LMHeadModel

STEPS, BATCH, SEQ = 5, 4, 16
SCHEDULE = {"kind": "cosine", "warmup": 2, "steps": STEPS, "min_lr": 2.0e-4}
# The recipes, in the words of a spec's `training:` (tests/cases/gpt2_recipe.yaml).
RECIPES = {
    "adamw": {
        "optimizer": {
            "kind": "adamw",
            "lr": 2.0e-3,
            "betas": [0.9, 0.95],
            "eps": 1.0e-8,
            "weight_decay": 0.1,
        },
        "schedule": SCHEDULE,
        "clip_grad_norm": 1.25,
    },
    "sgd": {
        "optimizer": {"kind": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1},
        "schedule": {**SCHEDULE, "min_lr": 0.01},
        "clip_grad_norm": 1.25,
    },
}
# Tensors whose final values are stored whole (the rest by the norm and sum of their
# change): the tied embedding (lookups and LM head), a fused q/k/v weight and its bias,
# the position table, a norm's weight and bias.
KEPT = (
    "transformer.wte.weight",
    "transformer.wpe.weight",
    "transformer.h.0.attn.c_attn.weight",
    "transformer.h.0.attn.c_attn.bias",
    "transformer.h.1.ln_2.weight",
    "transformer.ln_f.bias",
)


def learning_rate(recipe: dict, step: int) -> float:
    """The learning rate of step `step` (from 0), as OneFlow's schedules compute it.

    WarmupLR(warmup_factor=0, linear, warmup_prefix=True): lr x step / warmup while
    step < warmup, so step 0 trains with 0. Then CosineDecayLR(decay_steps=steps -
    warmup, alpha=min_lr / lr) on step - warmup: lr x ((1 - alpha) x (1 + cos(pi x
    t / decay_steps)) / 2 + alpha), min_lr once t reaches decay_steps. nanoGPT's cosine
    is the same; its warmup is lr x (step + 1) / (warmup + 1), which never trains with 0.
    """
    lr, schedule = recipe["optimizer"]["lr"], recipe["schedule"]
    warmup, steps, min_lr = schedule["warmup"], schedule["steps"], schedule["min_lr"]
    if step < warmup:
        return lr * step / warmup
    decay_steps = max(1, steps - warmup)
    done = min(step - warmup, decay_steps)
    alpha = min_lr / lr
    return lr * ((1 - alpha) * 0.5 * (1 + math.cos(math.pi * done / decay_steps)) + alpha)


def no_decay(name: str) -> bool:
    """specc's rule: biases and the layer norms' weights."""
    return name.endswith(".bias") or (".ln_" in name and name.endswith(".weight"))


def optimizer(model: torch.nn.Module, recipe: dict) -> torch.optim.Optimizer:
    named = list(model.named_parameters())  # wte once: lm_head is the same tensor
    skipped = [n for n, p in named if no_decay(n)]
    if skipped != [n for n, p in named if p.dim() < 2]:
        raise AssertionError("the parameters without decay are not exactly the 1-D ones")
    settings = dict(recipe["optimizer"])
    kind, decay = settings.pop("kind"), settings.pop("weight_decay")
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": decay},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    if kind == "adamw":
        settings["betas"] = tuple(settings["betas"])
        return torch.optim.AdamW(groups, foreach=False, **settings)
    return torch.optim.SGD(groups, foreach=False, **settings)


def checkpoint_state(model: GPT2LMHeadModel) -> dict[str, np.ndarray]:
    """The tensors as the checkpoint names them (lm_head is wte: not stored)."""
    return {
        name: tensor.detach().numpy().copy()
        for name, tensor in model.state_dict().items()
        if name != "lm_head.weight"
    }


def train(recipe: dict, tokens: np.ndarray) -> dict:
    model = GPT2LMHeadModel.from_pretrained(str(OUT / "gpt2"), attn_implementation="eager")
    model.float().train()
    if any(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)):
        raise AssertionError("the fixture's dropout is not 0")
    before = checkpoint_state(model)
    opt = optimizer(model, recipe)
    losses, lrs, norms = [], [], []
    for step in range(STEPS):
        lr = learning_rate(recipe, step)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = torch.from_numpy(tokens[step])
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_grad_norm"])
        opt.step()
        losses.append(loss.item())
        lrs.append(lr)
        norms.append(float(norm))
    after = checkpoint_state(model)
    changes = {
        name: {
            "change_l2": float(np.linalg.norm((after[name] - before[name]).astype(np.float64))),
            "change_sum": float((after[name] - before[name]).astype(np.float64).sum()),
        }
        for name in after
    }
    return {"losses": losses, "lrs": lrs, "grad_norms": norms, "final": after, "changes": changes}


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(3101)
    config = json.loads((OUT / "gpt2" / "config.json").read_text())
    tokens = rng.integers(0, config["vocab_size"], size=(STEPS, BATCH, SEQ + 1), dtype=np.int64)
    case = OUT / "gpt2_train"
    if case.exists():
        shutil.rmtree(case)
    case.mkdir()
    tensors: dict[str, np.ndarray] = {"tokens": tokens}
    meta: dict = {
        "case": "gpt2_train",
        "weights": "../gpt2/model.safetensors (the initial weights)",
        "versions": versions(),
        "steps": STEPS,
        "batch": BATCH,
        "seq": SEQ,
        "tokens": "int64 [steps, batch, seq + 1]: step s trains on inputs tokens[s, :, :-1] "
        "and labels tokens[s, :, 1:], the mean cross-entropy over all batch x seq tokens",
        "recipes": RECIPES,
        "kept": list(KEPT),
        "runs": {},
    }
    for name, recipe in RECIPES.items():
        run = train(recipe, tokens)
        tensors[f"{name}/losses"] = np.array(run["losses"], dtype=np.float32)
        tensors[f"{name}/lrs"] = np.array(run["lrs"], dtype=np.float64)
        tensors[f"{name}/grad_norms"] = np.array(run["grad_norms"], dtype=np.float32)
        for kept in KEPT:
            tensors[f"{name}/final/{kept}"] = run["final"][kept]
        meta["runs"][name] = {
            "losses": run["losses"],
            "lrs": run["lrs"],
            "grad_norms_before_clipping": run["grad_norms"],
            "changes": run["changes"],
        }
        print(f"hf-train-fixture: {name} losses {[round(x, 6) for x in run['losses']]}")
        print(f"hf-train-fixture: {name} grad norms {[round(x, 4) for x in run['grad_norms']]}")
    meta["notes"] = [
        "Losses are each step's loss before its update, as specc's TrainGraph returns it.",
        "lrs: the learning rate each step used (OneFlow's WarmupLR + CosineDecayLR, which "
        "specc's make_schedule builds): step 0 of a warmup trains with lr 0.",
        "Weight decay: AdamW decoupled (p -= lr * wd * p), SGD as L2 added to the clipped "
        "gradient; never on biases and layer-norm weights.",
        "changes: for every checkpoint tensor, the L2 norm and sum of final - initial "
        "(float64); the tensors in `kept` are stored whole under <optimizer>/final/<name>.",
    ]
    save_file(tensors, str(case / "reference.safetensors"), metadata={"case": "gpt2_train"})
    (case / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")
    total = sum(p.stat().st_size for p in case.iterdir())
    print(f"hf-train-fixture: {case.relative_to(ROOT)} holds {total} bytes")


if __name__ == "__main__":
    main()
