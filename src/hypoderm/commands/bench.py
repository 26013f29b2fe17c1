"""`hypoderm bench`: parameters, MACs/FLOPs, receptive field and latency, side by side (hypoderm.study.bench)."""

from __future__ import annotations

import argparse
import csv
import json
import os

from hypoderm.commands import path_arg
from hypoderm.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="mnv3s,hypodermnet,resnet50",
                   help="comma-separated model names or presets (paper, ablation, all)")
    p.add_argument("--size", type=int, default=224, help="input side in pixels")
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--threads", default="1",
                   help="intra-op threads for torch and ONNX Runtime: a number, 'all', or a list like '1,all'")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--onnx-file", action="append", type=path_arg, default=[],
                   help="also time an exported .onnx artefact (repeatable), e.g. fp32 and INT8 exports")
    p.add_argument("--json", type=path_arg, help="write the full result as JSON")
    p.add_argument("--csv", type=path_arg, help="write the table as CSV")


def run(args: argparse.Namespace) -> int:
    from hypoderm.study.bench import bench, format_table, parse_models

    models = parse_models(args.models)
    if args.size < 32:
        raise UsageError(f"--size must be >= 32 (got {args.size})")
    for f in args.onnx_file:
        if not f.is_file():
            raise UsageError(f"ONNX file not found: {f}")
    try:
        thread_list = [(os.cpu_count() or 1) if t.strip() == "all" else int(t) for t in args.threads.split(",")]
    except ValueError:
        thread_list = [0]
    if any(t < 1 for t in thread_list):
        raise UsageError(f"--threads must be positive numbers or 'all', got {args.threads!r}")
    results = []
    for threads in thread_list:
        result = bench(models, size=args.size, num_classes=args.num_classes, threads=threads, warmup=args.warmup,
                       runs=args.runs, use_onnx=not args.no_onnx, onnx_files=args.onnx_file)
        print(format_table(result) + "\n")
        results.append(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results if len(results) > 1 else results[0], indent=2))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            rows = [{"threads": r["env"]["threads"], **row} for r in results for row in r["rows"]]
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return 0
