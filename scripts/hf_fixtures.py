"""Write the HuggingFace reference fixtures under tests/fixtures/hf/ (`make hf-fixtures`).

Runs only in the separate environment .venv-hf (requirements/hf.txt: torch, transformers,
safetensors, numpy); specc never imports this file. The fixtures let the tests check,
without internet and without torch, that specc's generated GPT-2 / BERT / ViT / Llama
compute what transformers computes on the same weights.

Each case directory holds
  config.json, model.safetensors   exactly as save_pretrained(safe_serialization=True) writes them
  reference.safetensors            inputs and eval-mode outputs (safetensors.numpy)
  reference.json                   which tensors are inputs / outputs, versions, model class,
                                   the parameter names with shapes, notes

Everything is seeded: re-running on the same versions rewrites the same weights and inputs.
After transformers' own init every parameter gets random noise, so that layer-norm weights
are not exactly 1 and biases not 0: a twin that ignores a parameter cannot pass.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

# Never reach for the hub: everything here is built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import safetensors
import torch
import transformers
from safetensors.numpy import save_file
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    ViTConfig,
    ViTForImageClassification,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "hf"

BATCH, SEQ = 4, 16
# Valid (unpadded) length of each row in the padded-mask inputs: row 0 is full,
# rows 1-3 end in padding. BERT's last row is replaced by an all-padding row.
VALID_LENGTHS = (16, 13, 9, 4)
# Noise added after init: 1-D parameters (norm weights, biases) get a larger one so that
# "weight is 1, bias is 0" cannot be assumed; matrices get about the init scale.
NOISE_VECTOR, NOISE_MATRIX = 0.1, 0.02
# Shard limit for gpt2_sharded: about 440 kB of weights make 3 shards.
SHARD_SIZE = "200KB"
# The attention implementation used for the references. "eager" adds
# where(mask, 0, finfo(float32).min) to the scores, the semantics specc reproduces; the
# script checks that "sdpa" agrees wherever a row is not entirely padding.
ATTN = "eager"


def versions() -> dict:
    return {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def add_noise(model: torch.nn.Module, seed: int) -> None:
    """Perturb every (distinct) parameter; tied parameters stay tied."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = NOISE_VECTOR if p.dim() == 1 else NOISE_MATRIX
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)
            if bool((p == 0).all()) or bool((p == 1).all()):
                raise AssertionError(f"{name} is still constant after noise")


def build(model_cls, config, seed: int, noise_seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    config._attn_implementation = ATTN
    model = model_cls(config)
    add_noise(model, noise_seed)
    return model.float().eval()


def token_inputs(seed: int, vocab: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, size=(BATCH, SEQ), dtype=np.int64)


def padded_mask(all_padding_last_row: bool = False) -> np.ndarray:
    mask = np.zeros((BATCH, SEQ), dtype=np.int64)
    for row, n in enumerate(VALID_LENGTHS):
        mask[row, :n] = 1
    if all_padding_last_row:
        mask[-1] = 0
    return mask


def token_types(mask: np.ndarray) -> np.ndarray:
    """Segment A then segment B over each row's valid tokens (0 on padding)."""
    tt = np.zeros_like(mask)
    for row in range(BATCH):
        n = int(mask[row].sum()) or SEQ  # the all-padding row still gets a 0/1 mix
        tt[row, n // 2 : n] = 1
    return tt


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def f32(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to(torch.float32).cpu().numpy())


def check_sdpa(model, run, skip_rows=()) -> tuple[float, float]:
    """Compare eager with transformers' default "sdpa" attention.

    Rows in skip_rows (an all-padding row) are expected to differ: torch's SDPA gives an
    attention output of 0 for a query whose keys are all masked, eager a uniform average.
    Returns (max |eager - sdpa| on the other rows, asserted tiny; the same on skip_rows).
    """
    eager = run(model)
    model.set_attn_implementation("sdpa")
    try:
        sdpa = run(model)
    finally:
        model.set_attn_implementation(ATTN)
    keep = [r for r in range(BATCH) if r not in skip_rows]
    worst = max(float(np.abs(eager[k][keep] - sdpa[k][keep]).max()) for k in eager)
    if worst > 1e-4:
        raise AssertionError(f"eager and sdpa differ by {worst}")
    skipped = list(skip_rows)
    other = (
        max(float(np.abs(eager[k][skipped] - sdpa[k][skipped]).max()) for k in eager)
        if skipped
        else 0.0
    )
    return worst, other


def param_table(model: torch.nn.Module) -> dict:
    """All parameter names (tied ones included) with shapes, and which are tied."""
    params = {}
    first_by_ptr: dict[int, str] = {}
    tied = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params[name] = list(p.shape)
        ptr = p.data_ptr()
        if ptr in first_by_ptr:
            tied[name] = first_by_ptr[ptr]
        else:
            first_by_ptr[ptr] = name
    buffers = {n: list(b.shape) for n, b in model.named_buffers()}
    return {"parameters": params, "tied": tied, "buffers": buffers}


def checkpoint_keys(case_dir: Path) -> dict:
    from safetensors import safe_open

    keys = {}
    files = sorted(case_dir.glob("model*.safetensors"))
    for path in files:
        with safe_open(str(path), framework="np") as f:
            for k in f.keys():
                keys[k] = f.get_slice(k).get_shape()
    return dict(sorted(keys.items()))


def write_case(
    name: str,
    model: torch.nn.Module,
    inputs: dict[str, np.ndarray],
    outputs: dict[str, tuple[np.ndarray, str]],
    notes: list[str],
    *,
    shard: str | None = None,
    reference_of: str | None = None,
    rerun=None,
) -> None:
    case_dir = OUT / name
    if case_dir.exists():
        shutil.rmtree(case_dir)
    case_dir.mkdir(parents=True)
    kwargs = {"safe_serialization": True}
    if shard:
        kwargs["max_shard_size"] = shard
    model.save_pretrained(str(case_dir), **kwargs)
    if reference_of is None:
        tensors = dict(inputs)
        tensors.update({k: v for k, (v, _) in outputs.items()})
        for k, v in tensors.items():
            want = np.int64 if k in inputs and v.dtype.kind == "i" else np.float32
            if v.dtype != want:
                raise AssertionError(f"{name}/{k} has dtype {v.dtype}")
        save_file(tensors, str(case_dir / "reference.safetensors"), metadata={"case": name})
    meta = {
        "case": name,
        "model_class": type(model).__name__,
        "versions": versions(),
        "attn_implementation": ATTN,
        "dtype": "float32",
        "mode": "eval (model.eval(), torch.no_grad())",
    }
    if reference_of is None:
        meta["reference_file"] = "reference.safetensors"
        meta["inputs"] = {
            k: {"dtype": str(v.dtype), "shape": list(v.shape)} for k, v in inputs.items()
        }
        meta["outputs"] = {
            k: {"dtype": str(v.dtype), "shape": list(v.shape), "call": call}
            for k, (v, call) in outputs.items()
        }
    else:
        meta["reference_of"] = reference_of
        meta["reference_file"] = f"../{reference_of}/reference.safetensors"
    meta["notes"] = notes
    if rerun is not None:
        # The files must be enough: reload them the ordinary way and get the same outputs.
        loaded = type(model).from_pretrained(str(case_dir), attn_implementation=ATTN).eval()
        again = rerun(loaded)
        for k, (v, _) in outputs.items():
            if not np.array_equal(again[k], v):
                raise AssertionError(
                    f"{name}: reloaded {k} differs by {np.abs(again[k] - v).max()}"
                )
    meta["keys_note"] = (
        "checkpoint_keys: the tensor names and shapes in model*.safetensors, "
        "the HF hub layout; map "
        "weights from these. parameters/tied/buffers: the module's in-memory names in this "
        "transformers version, which may differ (transformers 5 renames some on load and "
        "reverts the renaming in save_pretrained, e.g. ViT)."
    )
    meta["checkpoint_keys"] = checkpoint_keys(case_dir)
    meta.update(param_table(model))
    (case_dir / "reference.json").write_text(json.dumps(meta, indent=2) + "\n")


# --- the cases --------------------------------------------------------------------------


def gpt2() -> None:
    config = GPT2Config(
        vocab_size=125,
        n_positions=16,
        n_embd=64,
        n_layer=2,
        n_head=4,
        activation_function="gelu_new",
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        layer_norm_epsilon=1e-5,
    )
    model = build(GPT2LMHeadModel, config, seed=1001, noise_seed=2001)
    ids, mask = token_inputs(3001, config.vocab_size), padded_mask()

    def run(m):
        with torch.no_grad():
            return {
                "logits": f32(m(input_ids=t(ids)).logits),
                "logits_masked": f32(m(input_ids=t(ids), attention_mask=t(mask)).logits),
            }

    diff, _ = check_sdpa(model, run)
    out = run(model)
    notes = [
        "logits: model(input_ids) with no mask; logits_masked: model(input_ids, attention_mask).",
        "position_ids are arange(16) in both calls: "
        "transformers does not derive them from the mask.",
        "Padded query positions are included in logits_masked; compare them too (their keys are "
        "causal AND unpadded, never empty, since every row starts with a valid token). With "
        "trailing padding the valid positions of logits_masked equal logits exactly: only the "
        "padded positions tell whether the padding mask is applied.",
        "lm_head.weight is tied to transformer.wte.weight and is not stored in model.safetensors.",
        "Conv1D weights are stored [in, out] (transposed relative to nn.Linear).",
        f"eager vs sdpa max abs difference: {diff:.3g}.",
    ]
    write_case(
        "gpt2",
        model,
        {"input_ids": ids, "attention_mask": mask},
        {
            "logits": (out["logits"], "model(input_ids=input_ids).logits"),
            "logits_masked": (
                out["logits_masked"],
                "model(input_ids=input_ids, attention_mask=attention_mask).logits",
            ),
        },
        notes,
        rerun=run,
    )
    write_case(
        "gpt2_sharded",
        model,
        {},
        {k: (v, "") for k, v in out.items()},
        [
            "The same weights as gpt2, saved with max_shard_size=" + SHARD_SIZE + ": "
            "model.safetensors.index.json plus shards model-0000i-of-0000n.safetensors.",
            "No reference of its own: use ../gpt2/reference.safetensors "
            "and ../gpt2/reference.json.",
        ],
        shard=SHARD_SIZE,
        reference_of="gpt2",
        rerun=run,
    )


def bert_config() -> BertConfig:
    return BertConfig(
        vocab_size=100,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        max_position_embeddings=16,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def bert_inputs(vocab: int) -> dict[str, np.ndarray]:
    mask = padded_mask(all_padding_last_row=True)
    return {
        "input_ids": token_inputs(3003, vocab),
        "token_type_ids": token_types(mask),
        "attention_mask": mask,
    }


BERT_NOTES = [
    "attention_mask row 3 is entirely padding (all zeros). With eager attention every score "
    "of that row becomes score + finfo(float32).min == finfo.min exactly, so the softmax is "
    "uniform over all 16 keys: the reference pins that 'fill with the dtype minimum' semantics "
    "(not -inf, which would give NaN).",
    "token_type_ids: 0 on the first half of each row's valid tokens, 1 on the second half, "
    "0 on padding (the all-padding row mixes 0/1 over all 16 positions).",
    "position_ids are arange(16); the position_ids/token_type_ids buffers are not stored.",
]


def bert() -> None:
    config = bert_config()
    model = build(
        lambda c: BertModel(c, add_pooling_layer=True), config, seed=1003, noise_seed=2003
    )
    inputs = bert_inputs(config.vocab_size)

    def run(m):
        with torch.no_grad():
            o = m(**{k: t(v) for k, v in inputs.items()})
        return {
            "last_hidden_state": f32(o.last_hidden_state),
            "pooler_output": f32(o.pooler_output),
        }

    diff, row3 = check_sdpa(model, run, skip_rows=(BATCH - 1,))
    out = run(model)
    write_case(
        "bert",
        model,
        inputs,
        {
            "last_hidden_state": (out["last_hidden_state"], "model(**inputs).last_hidden_state"),
            "pooler_output": (out["pooler_output"], "model(**inputs).pooler_output"),
        },
        [
            *BERT_NOTES,
            "BertModel keys carry no 'bert.' prefix (hub checkpoints saved from BertFor* do).",
            f"eager vs sdpa max abs difference on rows 0-2: {diff:.3g}; on the all-padding row 3 "
            f"{row3:.3g}: transformers' default sdpa gives attention output 0 there, "
            "not the uniform "
            "average; these references use eager.",
        ],
        rerun=run,
    )


def bert_mlm() -> None:
    config = bert_config()
    model = build(BertForMaskedLM, config, seed=1004, noise_seed=2004)
    inputs = bert_inputs(config.vocab_size)

    def run(m):
        with torch.no_grad():
            return {"logits": f32(m(**{k: t(v) for k, v in inputs.items()}).logits)}

    diff, row3 = check_sdpa(model, run, skip_rows=(BATCH - 1,))
    out = run(model)
    write_case(
        "bert_mlm",
        model,
        inputs,
        {"logits": (out["logits"], "model(**inputs).logits")},
        [
            *BERT_NOTES,
            "Head: cls.predictions.transform (dense, gelu, LayerNorm eps 1e-12), then the decoder "
            "tied to bert.embeddings.word_embeddings.weight plus its own bias cls.predictions.bias "
            "(cls.predictions.decoder.bias is the same tensor). BertForMaskedLM has no pooler.",
            f"eager vs sdpa max abs difference on rows 0-2: {diff:.3g}; on the all-padding row 3 "
            f"{row3:.3g}: transformers' default sdpa gives attention output 0 there, "
            "not the uniform "
            "average; these references use eager.",
        ],
        rerun=run,
    )


def vit() -> None:
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=256,
        num_labels=10,
        layer_norm_eps=1e-12,
        qkv_bias=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = build(ViTForImageClassification, config, seed=1005, noise_seed=2005)
    gen = torch.Generator().manual_seed(3005)
    pixels = torch.randn((BATCH, 3, 32, 32), generator=gen).numpy()

    def run(m):
        with torch.no_grad():
            o = m(pixel_values=t(pixels))
            base = m.vit(pixel_values=t(pixels))
        return {"logits": f32(o.logits), "last_hidden_state": f32(base.last_hidden_state)}

    diff, _ = check_sdpa(model, run)
    out = run(model)
    write_case(
        "vit",
        model,
        {"pixel_values": pixels},
        {
            "logits": (out["logits"], "model(pixel_values).logits"),
            "last_hidden_state": (
                out["last_hidden_state"],
                "model.vit(pixel_values).last_hidden_state (after the final layernorm; "
                "17 tokens: [CLS] then 16 patches)",
            ),
        },
        [
            "No attention mask: ViT attends over all 17 tokens. "
            "logits = classifier(last_hidden_state[:, 0]).",
            "ViTForImageClassification's ViTModel has no pooler.",
            "patch_embeddings.projection is a Conv2d(3, 64, kernel 8, stride 8), "
            "weight [64, 3, 8, 8].",
            f"eager vs sdpa max abs difference: {diff:.3g}.",
        ],
        rerun=run,
    )


def decoder_case(
    name: str, model_cls, config_cls, seed: int, extra_notes: list[str], **config_extra
) -> None:
    config = config_cls(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        **{"rope_theta": 500000.0, "rms_norm_eps": 1e-5, **config_extra},
    )
    model = build(model_cls, config, seed=seed, noise_seed=seed + 1000)
    ids, mask = token_inputs(seed + 2000, config.vocab_size), padded_mask()

    def run(m):
        with torch.no_grad():
            return {
                "logits": f32(m(input_ids=t(ids)).logits),
                "logits_masked": f32(m(input_ids=t(ids), attention_mask=t(mask)).logits),
            }

    diff, _ = check_sdpa(model, run)
    out = run(model)
    write_case(
        name,
        model,
        {"input_ids": ids, "attention_mask": mask},
        {
            "logits": (out["logits"], "model(input_ids=input_ids).logits"),
            "logits_masked": (
                out["logits_masked"],
                "model(input_ids=input_ids, attention_mask=attention_mask).logits",
            ),
        },
        [
            "logits: model(input_ids) with no mask; logits_masked: with the padded attention_mask.",
            "position_ids are arange(16) in both calls "
            "(RoPE positions are not shifted by padding).",
            "With trailing padding the valid positions of logits_masked equal logits exactly; the "
            "padded query positions (attending to the valid keys only) test the padding mask.",
            "head_dim 16, 4 query heads sharing 2 key/value heads (GQA, groups of 2).",
            "rotate_half RoPE (the HF layout: q/k weights are NOT the Meta interleaved layout).",
            "lm_head.weight is separate (tie_word_embeddings=False).",
            f"rope_parameters as saved: {json.dumps(config.rope_parameters)}.",
            f"eager vs sdpa max abs difference: {diff:.3g}.",
            *extra_notes,
        ],
        rerun=run,
    )


def llama() -> None:
    decoder_case(
        "llama",
        LlamaForCausalLM,
        LlamaConfig,
        1006,
        ["No biases anywhere (attention_bias=False, mlp_bias=False)."],
        attention_bias=False,
        mlp_bias=False,
    )


def qwen2() -> None:
    decoder_case(
        "qwen2",
        Qwen2ForCausalLM,
        Qwen2Config,
        1007,
        [
            "Biases on q_proj, k_proj, v_proj only; o_proj and the MLP have none. No sliding "
            "window. rope_theta 1e6 and rms_norm_eps 1e-6, as Qwen2 7B's config has them."
        ],
        use_sliding_window=False,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
    )


def param_counts() -> None:
    """Exact parameter counts of full-size models, built on the meta device (no memory)."""

    def count(model_cls, config) -> dict:
        with torch.device("meta"):
            model = model_cls(config)
        distinct = sum(p.numel() for p in model.parameters())
        with_tied = sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))
        return {
            "model_class": type(model).__name__,
            "parameters": distinct,
            "parameters_counting_tied_twice": with_tied,
            # id2label/label2id (1000 entries for ViT) say nothing about the count
            "config": {
                k: v
                for k, v in sorted(config.to_diff_dict().items())
                if k not in ("transformers_version", "id2label", "label2id")
            },
        }

    llama3 = LlamaConfig(
        vocab_size=128256,
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_bias=False,
        mlp_bias=False,
    )
    data = {
        "versions": versions(),
        "note": "parameters counts each distinct tensor once (tied embeddings once), as "
        "sum(p.numel() for p in model.parameters()); models built under torch.device('meta').",
        "llama3_8b": count(LlamaForCausalLM, llama3),
        "gpt2_small": count(GPT2LMHeadModel, GPT2Config()),
        "bert_base": count(lambda c: BertModel(c, add_pooling_layer=True), BertConfig()),
        "vit_b16": count(
            ViTForImageClassification,
            ViTConfig(image_size=224, patch_size=16, num_labels=1000),
        ),
    }
    (OUT / "llama3_8b_count.json").write_text(json.dumps(data, indent=2) + "\n")


def main() -> None:
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # one summation order, so re-runs give the same bytes
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)
    for case in (gpt2, bert, bert_mlm, vit, llama, qwen2, param_counts):
        case()
        print(f"hf-fixtures: {case.__name__} done")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"hf-fixtures: {OUT.relative_to(ROOT)} holds {total} bytes")


if __name__ == "__main__":
    main()
