# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""CPU benchmark of many images in one prompt, Mamba-VL against Pythia-VL at equal width and depth: prefill time and
peak memory, decode time per token, cache size, and the time an image prefix encoded once saves over ten questions.

    python benchmarks/bench_images.py [--images 1,2,4,8,16,32] [--width 128] [--depth 2] [--output FILE]

Each prompt holds N image blocks of 601 tokens (24 x 24 patches at 336 px with row separators and markers, as
EVA-02-L/14's) and a question. Models are random, built from configs (a one-layer CLIP tower of width 64, so that
the language models dominate). Mamba-VL prefills with `model.prefill(..., chunk_size=1024)`; Pythia-VL in one
forward (its key/value cache holds the whole prompt anyway). Each case runs in a fresh subprocess so that its peak
resident memory (VmHWM above the baseline once model and inputs exist) is its own. Writes a markdown table with
ratios (Pythia / Mamba) measured in the same run, and a plot of it beside (`.png`).
"""

import argparse
import copy
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


FAMILIES = ("mamba", "pythia")
QUESTION = "what colour is the circle in the last picture?"
DECODE_STEPS = 16
QUESTIONS = 10
CHUNK = 1024


def _build(family: str, width: int, depth: int):
    from PIL import Image

    from vlmamba.toy import tiny_model, tiny_processor, train_tokenizer

    torch.manual_seed(0)
    processor = tiny_processor(train_tokenizer(), image_size=336, patch_size=14)
    model = tiny_model(family, processor, "clip", width=width, depth=depth, vision_depth=1).eval()
    image = Image.new("RGB", (336, 336), (200, 30, 30))
    return model, processor, image


def _cache_bytes(cache) -> int:
    total, seen = 0, set()
    for value in vars(cache).values():
        for layer in value if isinstance(value, list) else []:
            for tensor in [*vars(layer).values(), *[t for d in vars(layer).values() if isinstance(d, dict)
                                                   for t in d.values()]]:
                if isinstance(tensor, torch.Tensor) and id(tensor) not in seen:
                    seen.add(id(tensor))
                    total += tensor.numel() * tensor.element_size()
    return total


def run_child(spec: dict) -> None:
    torch.set_num_threads(spec["threads"])
    model, processor, image = _build(spec["family"], spec["width"], spec["depth"])
    chunk = CHUNK if spec["family"] == "mamba" else None
    with torch.inference_mode():
        if spec["kind"] == "images":
            count = spec["images"]
            inputs = processor(images=[image] * count, text=["<image>" * count + QUESTION], return_tensors="pt")
            baseline = _vm_hwm_mib()
            start = time.perf_counter()
            out = model.prefill(inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], chunk_size=chunk)
            prefill = time.perf_counter() - start
            prefill_peak = _vm_hwm_mib() - baseline
            cache, token, steps = out.cache, out.logits[:, -1:].argmax(-1), []
            mask = inputs["attention_mask"]
            for _ in range(DECODE_STEPS):
                mask = torch.cat([mask, torch.ones_like(token)], dim=1)
                start = time.perf_counter()
                step = model(input_ids=token, cache=cache, use_cache=True,
                             attention_mask=None if spec["family"] == "mamba" else mask)
                steps.append(time.perf_counter() - start)
                cache, token = step.cache, step.logits[:, -1:].argmax(-1)
            result = {"tokens": inputs["input_ids"].shape[1], "prefill": prefill, "prefill_peak": prefill_peak,
                      "decode": statistics.median(steps[2:]), "peak": _vm_hwm_mib() - baseline,
                      "cache": _cache_bytes(cache)}
        else:  # ten questions about one image: every prompt encoded whole, or the image prefix once
            questions = [f"question number {index} about the picture?" for index in range(QUESTIONS)]
            prompts = [processor(images=[image], text=["<image>" + q], return_tensors="pt") for q in questions]
            kwargs = {"max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}
            start = time.perf_counter()
            whole = [model.generate(**prompt, **kwargs) for prompt in prompts]
            encode_each = time.perf_counter() - start
            start = time.perf_counter()
            block = processor(images=[image], text=["<image>"], return_tensors="pt")
            prefix = model.prefill(block["input_ids"], block["pixel_values"], block["attention_mask"]).cache
            reused = [model.generate(**prompt, cache=copy.deepcopy(prefix), **kwargs) for prompt in prompts]
            encode_once = time.perf_counter() - start
            same = all(torch.equal(a, b) for a, b in zip(whole, reused))
            result = {"encode_each": encode_each, "encode_once": encode_once, "same_tokens": same}
    print(json.dumps(result))


def run_case(spec: dict) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _ratio(results, counts, key):
    mamba, pythia = results.get(("mamba", counts)), results.get(("pythia", counts))
    if not mamba or not pythia or "error" in mamba or "error" in pythia or not mamba[key]:
        return "-"
    return f"{pythia[key] / mamba[key]:.1f}x"


def build_table(results: dict, counts: list[int], reuse: dict) -> str:
    lines = [
        "| images | tokens | prefill s (Mamba / Pythia) | ratio | prefill peak MiB (M / P) | decode ms/token (M / P) "
        "| ratio | cache MiB (M / P) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for count in counts:
        mamba, pythia = results[("mamba", count)], results[("pythia", count)]
        if "error" in mamba or "error" in pythia:
            lines.append(f"| {count} | error: {mamba.get('error') or pythia.get('error')} | | | | | | |")
            continue
        lines.append(
            f"| {count} | {mamba['tokens']} | {mamba['prefill']:.2f} / {pythia['prefill']:.2f} | "
            f"{_ratio(results, count, 'prefill')} | {mamba['prefill_peak']:.0f} / {pythia['prefill_peak']:.0f} | "
            f"{1e3 * mamba['decode']:.2f} / {1e3 * pythia['decode']:.2f} | {_ratio(results, count, 'decode')} | "
            f"{mamba['cache'] / 2**20:.2f} / {pythia['cache'] / 2**20:.1f} |"
        )
    lines += ["", f"| {QUESTIONS} questions about one image | every prompt whole (s) | image prefix once (s) | saved |"
                  " same tokens |", "|---|---|---|---|---|"]
    for family in FAMILIES:
        entry = reuse[family]
        if "error" in entry:
            lines.append(f"| {family} | error: {entry['error']} | | | |")
            continue
        saved = 1 - entry["encode_once"] / entry["encode_each"]
        lines.append(f"| {family} | {entry['encode_each']:.2f} | {entry['encode_once']:.2f} | {100 * saved:.0f}% | "
                     f"{entry['same_tokens']} |")
    return "\n".join(lines)


def plot(results: dict, counts: list[int], path: Path) -> None:
    """Decode time per token, cache size and prefill time against the number of images, both families."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("decode", 1e3, "decode, ms per token"), ("cache", 2**-20, "cache, MiB"), ("prefill", 1.0, "prefill, s")]
    figure, axes = plt.subplots(1, len(panels), figsize=(12, 3.6))
    for axis, (key, scale, label) in zip(axes, panels):
        for family, name in (("mamba", "Mamba-VL"), ("pythia", "Pythia-VL")):
            points = [(count, results[(family, count)][key] * scale) for count in counts
                      if "error" not in results[(family, count)]]
            axis.plot(*zip(*points), marker="o", label=name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(counts, [str(count) for count in counts])
        axis.set_xlabel("images in the prompt (601 tokens each)")
        axis.set_title(label)
        if key == "cache":
            axis.set_yscale("log")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default="1,2,4,8,16,32")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--output", default=str(REPO_ROOT / "benchmarks" / "images.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return
    started = datetime.datetime.now().astimezone()
    counts = [int(value) for value in args.images.split(",")]
    common = {"width": args.width, "depth": args.depth, "threads": args.threads}
    results, reuse = {}, {}
    for count in counts:
        for family in FAMILIES:
            print(f"{family}: {count} image(s) ...", file=sys.stderr, flush=True)
            results[(family, count)] = run_case({**common, "family": family, "kind": "images", "images": count})
    for family in FAMILIES:
        print(f"{family}: prefix reuse ...", file=sys.stderr, flush=True)
        reuse[family] = run_case({**common, "family": family, "kind": "reuse"})
    table = build_table(results, counts, reuse)
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60
    machine = [
        f"- CPU: {_cpu_model()}, {os.cpu_count()} logical cores, {_memory_gib()} RAM, {args.threads} torch threads",
        f"- Python {platform.python_version()}, torch {torch.__version__}, vlmamba {_git_revision()}",
        f"- date: {started.isoformat(timespec='seconds')}, {minutes:.0f} min",
        f"- fp32, batch 1, language models of width {args.width} and depth {args.depth}; Mamba-VL prefill in chunks "
        f"of {CHUNK} tokens; decode: median of {DECODE_STEPS - 2} steps",
    ]
    Path(args.output).write_text("# Many images in one prompt\n\n" + table + "\n\n" + "\n".join(machine) + "\n")
    plot(results, counts, Path(args.output).with_suffix(".png"))
    print(table)


if __name__ == "__main__":
    main()
