"""One lowering rule per layer kind: its checks, parameters, SBP and generated module."""

from __future__ import annotations

import math
from dataclasses import replace

from specc.lower.common import (
    ACTIVATIONS,
    B,
    Running,
    Scope,
    divisors,
    sbp_text,
    split,
)
from specc.source import YamlPath
from specc.spec import (
    MLP,
    Activation,
    Attention,
    Dropout,
    Embedding,
    Layer,
    LayerNorm,
    Linear,
    LMHead,
    PatchEmbedding,
    PositionEmbedding,
    RMSNorm,
    SelectToken,
    TokenTypeEmbedding,
)


class LayerRules:
    """The `layer_<kind>` methods of the lowering walk (mixed into `walk.Lowering`)."""

    def layer_elementwise(
        self, path: YamlPath, name: str, layer: Layer, current: Running, scope: Scope
    ) -> Running:
        self.expect_features(current, path, f"{layer.kind} `{name}`")
        if isinstance(layer, Activation):
            module, arguments, attributes = "nn." + ACTIVATIONS[layer.kind], [], {}
        elif isinstance(layer, Dropout):
            module, arguments, attributes = "nn.Dropout", [f"p={layer.p!r}"], {"p": layer.p}
        else:  # pragma: no cover - every other kind has its own handler
            raise AssertionError(layer)
        comment = f"{sbp_text(self.of(current).sbp)}, element-wise"
        return self.add(
            scope,
            path,
            name,
            layer.kind,
            module,
            arguments,
            [],
            current,
            current,
            comment,
            attributes=attributes,
        )

    def layer_linear(
        self, path: YamlPath, name: str, layer: Linear, current: Running, scope: Scope
    ) -> Running:
        self.expect_features(current, path, f"linear `{name}`")
        last = current.shape[-1]
        if layer.in_features != last:
            self.error(
                "E303",
                f"in_features {layer.in_features} of linear `{name}` does not match its input, "
                f"whose last dimension is {last}",
                (*path, "in_features"),
                help=f"set in_features: {last}, or change the layer before it",
            )
        mode = layer.split if self.tensor > 1 else "data"
        mode = "data" if mode == "none" else mode
        feature_axis = len(current.shape) - 1
        if mode == "col":
            self.check_divisible(
                layer.out_features,
                self.tensor,
                "tensor",
                "out_features",
                f"`col` linear `{name}`",
                (*path, "out_features"),
            )
            current = self.ensure_whole(current, name, "a `col` linear", scope, path)
            module, weight, bias, out_sbp = (
                "ColumnParallelLinear",
                split(0),
                split(0),
                split(feature_axis),
            )
            algebra = "x whole, weight rows split -> output features split"
        elif mode == "row":
            self.check_divisible(
                layer.in_features,
                self.tensor,
                "tensor",
                "in_features",
                f"`row` linear `{name}`",
                (*path, "in_features"),
            )
            current = self.ensure_split(current, scope)
            module, weight, bias, out_sbp = "RowParallelLinear", split(1), B, B
            algebra = "x features split, weight columns split -> partial sums -> all-reduce"
        else:
            current = self.ensure_whole(current, name, "a replicated linear", scope, path)
            module, weight, bias, out_sbp = "ReplicatedLinear", B, B, B
            algebra = "weight replicated"
        params = [self.param("weight", (layer.out_features, layer.in_features), weight)]
        if layer.bias:
            params.append(self.param("bias", (layer.out_features,), bias))
        arguments = [str(layer.in_features), str(layer.out_features)]
        if not layer.bias:
            arguments.append("bias=False")
        after = replace(
            current, shape=(*current.shape[:-1], layer.out_features), tensor_sbp=out_sbp
        )
        comment = f"{sbp_text(self.of(current).sbp)} -> {sbp_text(self.of(after).sbp)}: {algebra}"
        return self.add(
            scope,
            path,
            name,
            "linear",
            module,
            arguments,
            params,
            current,
            after,
            comment,
            attributes={"split": mode, "bias": layer.bias},
        )

    def layer_layernorm(
        self, path: YamlPath, name: str, layer: LayerNorm, current: Running, scope: Scope
    ) -> Running:
        self.expect_features(current, path, f"layernorm `{name}`")
        last = current.shape[-1]
        if layer.features is not None and layer.features != last:
            self.error(
                "E304",
                f"features {layer.features} of layernorm `{name}` does not match its input, "
                f"whose last dimension is {last}",
                (*path, "features"),
                help=f"set features: {last}, or leave it out to infer it",
            )
        current = self.ensure_whole(current, name, "layernorm", scope, path)
        params = [self.param(p, (last,), B) for p in ("weight", "bias")] if layer.affine else []
        arguments = [str(last), f"eps={layer.eps!r}"] + ([] if layer.affine else ["affine=False"])
        comment = f"{sbp_text(self.of(current).sbp)}, needs whole features"
        return self.add(
            scope,
            path,
            name,
            "layernorm",
            "LayerNorm",
            arguments,
            params,
            current,
            current,
            comment,
            attributes={"eps": layer.eps, "affine": layer.affine},
        )

    def layer_rmsnorm(
        self, path: YamlPath, name: str, layer: RMSNorm, current: Running, scope: Scope
    ) -> Running:
        self.expect_features(current, path, f"rmsnorm `{name}`")
        current = self.ensure_whole(current, name, "rmsnorm", scope, path)
        last = current.shape[-1]
        comment = f"{sbp_text(self.of(current).sbp)}, needs whole features"
        return self.add(
            scope,
            path,
            name,
            "rmsnorm",
            "RMSNorm",
            [str(last), f"eps={layer.eps!r}"],
            [self.param("weight", (last,), B)],
            current,
            current,
            comment,
            attributes={"eps": layer.eps},
        )

    def layer_embedding(
        self, path: YamlPath, name: str, layer: Embedding, current: Running, scope: Scope
    ) -> Running:
        if current.dtype != "int64" or len(current.shape) != 2:
            self.error(
                "E306",
                f"embedding `{name}` reads token ids, int64 [batch, seq], but its input is "
                f"{current.dtype} {list(current.shape)}",
                path,
                help="make it the first layer and declare the first input `dtype: int64`",
            )
        if not scope.top:
            self.error("E313", f"embedding `{name}` must be at the top level of `layers`", path)
        vocab = layer.vocab_size
        multiple = layer.pad_vocab_to_multiple_of or 1
        padded = -(-vocab // multiple) * multiple
        if padded % self.tensor and multiple > 1:
            self.check_divisible(
                padded,
                self.tensor,
                "tensor",
                "padded vocabulary",
                f"embedding `{name}`",
                (*path, "pad_vocab_to_multiple_of"),
                help=f"pad to a multiple of {math.lcm(multiple, self.tensor)} instead",
            )
        elif padded % self.tensor:
            suggestion = 128 * self.tensor
            rows = -(-vocab // suggestion) * suggestion
            self.check_divisible(
                vocab,
                self.tensor,
                "tensor",
                "vocab_size",
                f"embedding `{name}`",
                (*path, "vocab_size"),
                help=f"set `pad_vocab_to_multiple_of: {suggestion}` ({rows} rows; the padding "
                f"is masked), or use a tensor size that divides {vocab}: "
                f"{', '.join(map(str, divisors(vocab)))}",
            )
        first = self.spec.inputs[0].name
        if current.dtype == "int64":
            self.input_high[first] = max(self.input_high.get(first, 0), vocab)
        self.embeddings[name] = (vocab, padded, layer.hidden)
        after = replace(
            current, shape=(*current.shape[:2], layer.hidden), tensor_sbp=B, dtype="float32"
        )
        params = [self.param("weight", (padded, layer.hidden), split(0))]
        arguments = [str(padded), str(layer.hidden)]
        comment = "ids x table rows split over tensor ranks -> partial sums -> all-reduce"
        return self.add(
            scope,
            path,
            name,
            "embedding",
            "VocabParallelEmbedding",
            arguments,
            params,
            current,
            after,
            comment,
            attributes={"vocab_size": vocab, "padded_vocab_size": padded},
        )

    def layer_position_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: PositionEmbedding,
        current: Running,
        scope: Scope,
    ) -> Running:
        if not self.expect_sequence(current, path, f"position_embedding `{name}`"):
            return current
        seq, hidden = current.shape[1], current.shape[2]
        if seq > layer.max_positions:
            self.error(
                "E310",
                f"the sequence has {seq} positions but position_embedding `{name}` has "
                f"max_positions {layer.max_positions}",
                (*path, "max_positions"),
                help=f"set max_positions to at least {seq}, or shorten the sequence",
            )
        current = self.ensure_whole(current, name, "position_embedding", scope, path)
        params = [self.param("weight", (layer.max_positions, hidden), B)]
        return self.add(
            scope,
            path,
            name,
            "position_embedding",
            "PositionEmbedding",
            [str(layer.max_positions), str(hidden)],
            params,
            current,
            current,
            "adds replicated rows 0..seq-1",
        )

    def layer_token_type_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: TokenTypeEmbedding,
        current: Running,
        scope: Scope,
    ) -> Running:
        if not self.expect_sequence(current, path, f"token_type_embedding `{name}`"):
            return current
        what = f"token_type_embedding `{name}`"
        self.extra_input(layer.input, (*path, "input"), current, scope, layer.types, what)
        current = self.ensure_whole(current, name, "token_type_embedding", scope, path)
        params = [self.param("weight", (layer.types, current.shape[2]), B)]
        return self.add(
            scope,
            path,
            name,
            "token_type_embedding",
            "TokenTypeEmbedding",
            [str(layer.types), str(current.shape[2])],
            params,
            current,
            current,
            "adds replicated rows chosen by the token types",
            call=(layer.input,),
        )

    def layer_patch_embedding(
        self,
        path: YamlPath,
        name: str,
        layer: PatchEmbedding,
        current: Running,
        scope: Scope,
    ) -> Running:
        size, patch, channels = layer.image_size, layer.patch_size, layer.channels
        expected = [current.shape[0], channels, size, size]
        if current.dtype != "float32" or list(current.shape) != expected:
            self.error(
                "E311",
                f"patch_embedding `{name}` takes images {expected}, but its input is "
                f"{current.dtype} {list(current.shape)}",
                path,
                help="declare the first input as [batch, channels, image_size, image_size]",
            )
        if size % patch:
            candidates = ", ".join(str(d) for d in divisors(size) if d > 1)
            self.error(
                "E311",
                f"image_size {size} of patch_embedding `{name}` is not divisible by "
                f"patch_size {patch}",
                (*path, "patch_size"),
                help=f"patch sizes that divide {size}: {candidates}",
            )
        tokens = (size // patch) ** 2 + (1 if layer.class_token else 0)
        after = replace(current, shape=(current.shape[0], tokens, layer.hidden), tensor_sbp=B)
        params = [
            self.param("weight", (layer.hidden, channels, patch, patch), B),
            self.param("bias", (layer.hidden,), B),
        ]
        if layer.class_token:
            params.append(self.param("class_token", (1, 1, layer.hidden), B))
        arguments = [str(channels), str(layer.hidden), str(patch)]
        if not layer.class_token:
            arguments.append("class_token=False")
        return self.add(
            scope,
            path,
            name,
            "patch_embedding",
            "PatchEmbedding",
            arguments,
            params,
            current,
            after,
            "replicated convolution over each rank's images",
            attributes={"patch_size": patch, "class_token": layer.class_token},
        )

    def layer_attention(
        self, path: YamlPath, name: str, layer: Attention, current: Running, scope: Scope
    ) -> Running:
        if not self.expect_sequence(current, path, f"attention `{name}`"):
            return current
        hidden, heads = current.shape[2], layer.heads
        if hidden % heads:
            self.error(
                "E312",
                f"hidden size {hidden} is not divisible by heads {heads} in attention `{name}`",
                (*path, "heads"),
                help=f"head counts that divide {hidden}: {', '.join(map(str, divisors(hidden)))}",
            )
        self.check_divisible(
            heads,
            self.tensor,
            "tensor",
            "heads",
            f"attention `{name}`",
            (*path, "heads"),
            help=f"each tensor rank must hold whole heads: tensor sizes that divide {heads}: "
            f"{', '.join(map(str, divisors(heads)))}",
        )
        call: tuple[str, ...] = ()
        if layer.mask is not None:
            self.extra_input(layer.mask, (*path, "mask"), current, scope, 2, f"attention `{name}`")
            call = (layer.mask,)
        current = self.ensure_whole(current, name, "attention", scope, path)
        params = []
        for projection in ("query", "key", "value"):
            params += [
                self.param(f"{projection}.weight", (hidden, hidden), split(0)),
                self.param(f"{projection}.bias", (hidden,), split(0)),
            ]
        params += [
            self.param("dense.weight", (hidden, hidden), split(1)),
            self.param("dense.bias", (hidden,), B),
        ]
        arguments = [str(hidden), str(heads)] + (["causal=True"] if layer.causal else [])
        comment = "q, k, v split by heads over tensor ranks; output all-reduced"
        return self.add(
            scope,
            path,
            name,
            "attention",
            "SelfAttention",
            arguments,
            params,
            current,
            current,
            comment,
            call=call,
            attributes={"heads": heads, "causal": layer.causal, "mask": layer.mask},
        )

    def layer_mlp(
        self, path: YamlPath, name: str, layer: MLP, current: Running, scope: Scope
    ) -> Running:
        self.expect_features(current, path, f"mlp `{name}`")
        self.check_divisible(
            layer.ffn, self.tensor, "tensor", "ffn", f"mlp `{name}`", (*path, "ffn")
        )
        current = self.ensure_whole(current, name, "mlp", scope, path)
        hidden = current.shape[-1]
        params = [
            self.param("dense_h_to_4h.weight", (layer.ffn, hidden), split(0)),
            self.param("dense_h_to_4h.bias", (layer.ffn,), split(0)),
            self.param("dense_4h_to_h.weight", (hidden, layer.ffn), split(1)),
            self.param("dense_4h_to_h.bias", (hidden,), B),
        ]
        activation = f"activation=nn.{ACTIVATIONS[layer.activation]}()"
        comment = "col linear, activation on split features, row linear (all-reduce)"
        return self.add(
            scope,
            path,
            name,
            "mlp",
            "MLP",
            [str(hidden), str(layer.ffn), activation],
            params,
            current,
            current,
            comment,
            attributes={"activation": layer.activation},
        )

    def layer_select_token(
        self, path: YamlPath, name: str, layer: SelectToken, current: Running, scope: Scope
    ) -> Running:
        if not self.expect_sequence(current, path, f"select_token `{name}`"):
            return current
        if layer.index >= current.shape[1]:
            self.error(
                "E310",
                f"select_token `{name}` keeps position {layer.index}, but the sequence has "
                f"{current.shape[1]} positions",
                (*path, "index"),
                help=f"use an index below {current.shape[1]}",
            )
        current = self.ensure_whole(current, name, "select_token", scope, path)
        after = replace(current, shape=(current.shape[0], current.shape[2]))
        return self.add(
            scope,
            path,
            name,
            "select_token",
            "SelectToken",
            [str(layer.index)],
            [],
            current,
            after,
            "keeps one position",
            attributes={"index": layer.index},
        )

    def layer_lm_head(
        self, path: YamlPath, name: str, layer: LMHead, current: Running, scope: Scope
    ) -> Running:
        if not self.expect_sequence(current, path, f"lm_head `{name}`"):
            return current
        if layer.tied_to not in self.embeddings or not scope.top:
            known = ", ".join(self.embeddings) or "none"
            self.error(
                "E308",
                f"lm_head `{name}` is tied to `{layer.tied_to}`, which is not an `embedding` "
                f"layer before it at the top level",
                (*path, "tied_to"),
                help=f"embeddings before it: {known}",
            )
            return current
        vocab, padded, width = self.embeddings[layer.tied_to]
        if width != current.shape[2]:
            self.error(
                "E309",
                f"lm_head `{name}` is tied to `{layer.tied_to}`, whose table is "
                f"[{vocab}, {width}], but its input has hidden size {current.shape[2]}",
                path,
                help=f"tied weights need equal shapes: give `{layer.tied_to}` hidden "
                f"{current.shape[2]}, or project to {width} first",
            )
        current = self.ensure_whole(current, name, "lm_head", scope, path)
        after = replace(
            current, shape=(*current.shape[:2], padded), tensor_sbp=split(2), vocab=vocab
        )
        arguments = [str(vocab), str(padded)]
        self.head_weight[path] = vocab * width  # the head weighs its table when balancing
        comment = "x whole, tied table rows split -> logits split over the vocabulary"
        return self.add(
            scope,
            path,
            name,
            "lm_head",
            "LMHead",
            arguments,
            [],
            current,
            after,
            comment,
            call=(f"self.{layer.tied_to}.weight",),
            attributes={"tied_to": layer.tied_to, "vocab_size": vocab, "padded_vocab_size": padded},
        )

    # -- structure ---------------------------------------------------------------------------
