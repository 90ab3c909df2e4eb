# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CPU benchmark of the connectors: Mamba-VL's MLP against VL-Mamba's VSS-MLP and VSS-L2 (bidirectional and cross
scans), forward+backward time and peak memory at the patch grids of the papers' towers.

    python benchmarks/bench_connectors.py [--quick] [--repeats 3] [--output FILE]

Grids: 576 patches (24 x 24: EVA-02-L/14 or CLIP-ViT-L/14 at 336 px, features of width 1024) and 729 patches
(27 x 27: SigLIP-SO400M/14 at 384 px, width 1152), into a language model of width 2560 (Mamba-2.8B); `--quick` uses
width 512 everywhere. Each case runs in a fresh subprocess so that its peak resident memory (VmHWM, above the
baseline once the connector and its input exist) is its own. Prints one markdown table, with ratios to the MLP at the
same grid measured in the same run, and writes it to `--output` with a description of the machine.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench_mamba_scan import _cpu_model, _git_revision, _memory_gib, _vm_hwm_mib  # noqa: E402


# (patches, vision width) of the towers; the language model's width.
GRIDS = {576: 1024, 729: 1152}
TEXT_WIDTH = 2560
QUICK_WIDTH = 512
CASES = [("mlp", None), ("vss_mlp", "bidirectional"), ("vss_mlp", "cross"), ("vss_l2", "bidirectional"),
         ("vss_l2", "cross")]


def _connector(connector: str, scan: str | None, patches: int, vision_width: int, text_width: int):
    from vlmamba import MambaVLConfig
    from vlmamba.models.modeling_vlmamba import CONNECTOR_CLASSES

    side = int(patches**0.5)
    config = MambaVLConfig(
        vision_config={"model_type": "clip_vision_model", "image_size": side * 14, "patch_size": 14,
                       "hidden_size": vision_width, "num_hidden_layers": 1, "num_attention_heads": 8},
        text_config={"model_type": "mamba", "hidden_size": text_width, "num_hidden_layers": 1, "vocab_size": 50280},
        connector_type=connector,
        **({"vss_scan": scan} if scan else {}),
    )
    return CONNECTOR_CLASSES[connector](vision_width, config), config.patches_per_side


def run_child(spec: dict) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(spec["threads"])
    module, side = _connector(spec["connector"], spec["scan"], spec["patches"], spec["vision_width"],
                              spec["text_width"])
    features = torch.randn(spec["batch"], spec["patches"], spec["vision_width"], requires_grad=True)
    parameters = sum(parameter.numel() for parameter in module.parameters())

    def step():
        module.zero_grad(set_to_none=True)
        module(features, side).square().mean().backward()

    baseline = _vm_hwm_mib()
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    peak = _vm_hwm_mib() - baseline
    samples = []
    for _ in range(spec["repeats"]):
        start = time.perf_counter()
        step()
        samples.append(time.perf_counter() - start)
    print(json.dumps({"parameters": parameters, "first": first, "seconds": statistics.median(samples),
                      "peak_mib": peak}))


def run_case(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode != 0:
        return {"error": result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def build_table(results: dict) -> str:
    lines = [
        "| connector | scan | patches | parameters | fwd+bwd (s) | ÷ MLP | peak memory (MiB) | ÷ MLP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for patches in GRIDS:
        base = results[("mlp", None, patches)]
        for connector, scan in CASES:
            outcome = results[(connector, scan, patches)]
            if "error" in outcome:
                lines.append(f"| {connector} | {scan or '-'} | {patches} | error: {outcome['error']} | | | | |")
                continue
            time_ratio = outcome["seconds"] / base["seconds"] if "seconds" in base else float("nan")
            memory_ratio = outcome["peak_mib"] / base["peak_mib"] if base.get("peak_mib") else float("nan")
            lines.append(
                f"| {connector} | {scan or '-'} | {patches} | {outcome['parameters'] / 1e6:.1f} M | "
                f"{outcome['seconds']:.3f} | {time_ratio:.1f}x | {outcome['peak_mib']:.0f} | {memory_ratio:.1f}x |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"width {QUICK_WIDTH} everywhere")
    parser.add_argument("--batch", type=int, default=1, help="images per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "connectors.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return
    started = datetime.datetime.now().astimezone()
    results = {}
    for patches, vision_width in GRIDS.items():
        for connector, scan in CASES:
            spec = {"connector": connector, "scan": scan, "patches": patches, "batch": args.batch,
                    "vision_width": QUICK_WIDTH if args.quick else vision_width,
                    "text_width": QUICK_WIDTH if args.quick else TEXT_WIDTH, "repeats": args.repeats,
                    "threads": args.threads}
            print(f"{connector} {scan or '-'} {patches} patches ...", file=sys.stderr, flush=True)
            results[(connector, scan, patches)] = run_case(spec)
    table = build_table(results)
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60
    widths = f"width {QUICK_WIDTH}" if args.quick else f"vision width {GRIDS} by grid, text width {TEXT_WIDTH}"
    machine = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores, {_memory_gib()} RAM, {args.threads} torch threads",
        f"- Python {platform.python_version()}, torch {torch.__version__}, vlmamba {_git_revision()}",
        f"- date: {started.isoformat(timespec='seconds')}, {minutes:.0f} min",
        f"- fp32, batch {args.batch}, {widths}; median of {args.repeats} runs after a warm-up; VSS layers: state 16, "
        "expand 2, one Mamba layer per direction, summed",
    ]
    text = "# Connectors: forward+backward on CPU\n\n" + table + "\n\n" + "\n".join(machine) + "\n"
    Path(args.output).write_text(text)
    print(table)


if __name__ == "__main__":
    main()
