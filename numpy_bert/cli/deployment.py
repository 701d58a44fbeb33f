"""The commands that prepare a model for deployment.

    python -m numpy_bert quantize MODEL --out DIR          int8 weights (numpy_bert/quantization.py)
    python -m torch_bert export-onnx MODEL --out DIR       an ONNX graph (torch_bert/export/onnx.py)

Each backend offers its own: quantization is NumPy's arithmetic, the ONNX graph is traced from
torch_bert's model. MODEL is a checkpoint folder or a name (``python-docs``, ``minilm``).
"""

from __future__ import annotations

import argparse
import os

from ..checkpoint import named_model_dir
from .arguments import add_overwrite_argument

EXPORTERS = ("dynamo", "torchscript")  # torch.onnx.export's two (torch_bert/export/onnx.py)


def add_deployment_commands(commands, formatter, backend_name: str) -> dict:
    """Register ``quantize`` (numpy_bert) or ``export-onnx`` (torch_bert) on the sub-parser collection."""
    if backend_name == "numpy_bert":
        parser = commands.add_parser(
            "quantize", help="write an int8 copy of a model (a quarter of the size)", formatter_class=formatter,
            description="Store every Linear weight and the word embeddings of MODEL as int8 with a float32 "
                        "scale per row (symmetric, per output channel; see numpy_bert/quantization.py) in OUT. "
                        "from_pretrained, the pipelines and every command load it; it is for inference only.")
        name = "quantize"
    else:
        parser = commands.add_parser(
            "export-onnx", help="export a model as an ONNX graph for ONNX Runtime", formatter_class=formatter,
            description="Trace MODEL with torch.onnx.export into OUT/model.onnx (int64 inputs input_ids, "
                        "attention_mask, token_type_ids; dynamic batch and sequence axes; outputs named as in "
                        "transformers), with its config and tokenizer, and check it against torch_bert.")
        parser.add_argument("--exporter", choices=EXPORTERS, default="dynamo",
                            help="torch.export's exporter, or the deprecated TorchScript one (jit tracing)")
        name = "export-onnx"
    parser.add_argument("model", help="a checkpoint folder (a run, a fine-tuned model, a transformers BERT "
                                      "folder) or a name: python-docs, minilm")
    parser.add_argument("--out", required=True, help="the folder to write (created)")
    add_overwrite_argument(parser)
    return {name: parser}


def deployment_command(args: argparse.Namespace, backend) -> int:
    if args.command == "export-onnx":
        record = backend.export_onnx(args.model, args.out, args.exporter, args.overwrite_output_dir)
        check = record["max_relative_difference_from_torch_bert"]
        checked = (f"; largest relative difference from torch_bert on a padded batch {max(check.values()):.1e}"
                   if check else "; not checked (pip install onnxruntime to check it)")
        print(f"wrote {os.path.join(args.out, 'model.onnx')} ({record['architecture']}, outputs "
              f"{', '.join(record['outputs'])}){checked}")
        return 0
    from ..training.quantize import quantize_checkpoint

    report = quantize_checkpoint(named_model_dir(args.model), args.out, args.overwrite_output_dir)
    print(f"wrote {args.out}: int8 weights, {report['bytes'] / 1e6:.1f} MB, {report['size_ratio']:.2f}x the "
          f"float32 checkpoint; largest relative weight error {report['max_relative_weight_error']:.1e}")
    return 0
