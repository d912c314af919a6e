"""HuggingFace transformers beside the tests: its environment, and a script run in it.

transformers needs torch, OneFlow needs Python 3.10 and numpy<2, so transformers lives
in its own environment, .venv-hf (`make hf-venv`, requirements/hf.txt). Run as a script
there, this file loads a checkpoint specc saved with `from_pretrained` and compares
transformers' outputs with those specc computed before saving (specc_outputs.npz).
specc and its tests never import transformers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HF_PYTHON = REPO / ".venv-hf" / "bin" / "python"


def hf_unavailable_reason() -> str | None:
    if not HF_PYTHON.is_file():
        return f"{HF_PYTHON} is missing: `make hf-venv` makes the transformers environment"
    return None


def main() -> None:
    import numpy as np
    import torch
    import transformers
    from safetensors.numpy import load_file

    directory, model_class, reference_file, inputs, outputs = sys.argv[1:6]
    model = getattr(transformers, model_class).from_pretrained(
        directory, attn_implementation="eager"
    )
    model.eval()
    reference = load_file(reference_file)
    names = {
        "input_ids": "input_ids",
        "token_type_ids": "token_type_ids",
        "attention_mask": "attention_mask",
        "pixel_values": "pixel_values",
    }
    arguments = {names[n]: torch.from_numpy(reference[n]) for n in inputs.split(",")}
    specc_outputs = np.load(Path(directory) / "specc_outputs.npz")
    differences = {}
    with torch.no_grad():
        result = model(**arguments, output_hidden_states=True)
        computed = {name: _output(model, result, name, arguments) for name in outputs.split(",")}
    for name, tensor in computed.items():
        got = tensor.detach().numpy()
        want = specc_outputs[name][tuple(slice(0, n) for n in got.shape)]
        differences[name] = float(np.abs(got - want).max() / np.abs(got).max())
    print(json.dumps(differences))


def _output(model, result, name: str, arguments: dict):  # type: ignore[no-untyped-def]
    if (
        name == "last_hidden_state"
        and hasattr(result, "hidden_states")
        and not hasattr(result, "last_hidden_state")
    ):
        # ViTForImageClassification: the encoder's output after the final layernorm.
        return model.vit(**arguments).last_hidden_state
    if name == "logits_masked":
        return result.logits
    return getattr(result, name)


if __name__ == "__main__":
    main()
