"""The bundled model's file at several input sizes, for timing (issue 26: "measure 128 against larger inputs for
phone latency"): MobileNetV3-Small (`mnv3s`, the bundled architecture, 3 classes; weights random, which does not
change the time) exported as the bundled model is (fp32 ONNX, then INT8-stored weights, then the shipped skin
check put into the graph, which resizes its input to the 128 px it was fitted at), one file per size, and the
network's multiply-adds at that size (torch's FlopCounterMode, the diagnosis network alone).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/export/input_size_models.py --out /tmp/sizes 128 160 192 224
    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/export/int8_weights_latency.py \\
        /tmp/sizes/128/model.int8w.onnx /tmp/sizes/160/model.int8w.onnx ... --threads 1

The model metadata is the shipped model's (`src/hypoderm/assets/model.json`) with the input block of each size
(`PreprocessSpec.for_size`: resize to size / 0.875, centre square).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from hypoderm.export.int8 import quantize_weights_int8
from hypoderm.export.onnx import export_onnx
from hypoderm.export.skincheck import attach, shipped_skin_check
from hypoderm.inference.metadata import input_block
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.models import create_model

SHIPPED = Path(__file__).resolve().parents[2] / "src" / "hypoderm" / "assets" / "model.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sizes", nargs="+", type=int)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    shipped = json.loads(SHIPPED.read_text())
    check = shipped_skin_check()
    if check is None:
        raise SystemExit("this checkout has no src/hypoderm/assets/skin_check.onnx")
    report = {}
    for size in args.sizes:
        torch.manual_seed(0)
        model = create_model("mnv3s", num_classes=len(shipped["class_names"])).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, size, size))
        spec = PreprocessSpec.for_size(size)
        md = {k: v for k, v in shipped.items() if k not in ("int8_vs_fp32", "quantization", "gradcam")}
        md = {**md, "input": input_block(spec), "precision": "fp32",
              "ood": {k: v for k, v in shipped["ood"].items() if k != "skin_check"}}  # attach() adds it back
        folder = args.out / str(size)
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = export_onnx(model, md, folder / "model.onnx")
        int8w = quantize_weights_int8(fp32, folder / "model.int8w.onnx")
        attach(int8w, *check)
        report[size] = {"file": str(int8w), "bytes": int8w.stat().st_size,
                        "network_madds": counter.get_total_flops() // 2, "resize_size": spec.resize_size}
        print(size, report[size], flush=True)
    (args.out / "models.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
