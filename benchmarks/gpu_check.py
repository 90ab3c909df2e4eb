# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Checks vlmamba's Mamba paths on a CUDA GPU, in one run of a few minutes on one GPU (no download, random weights):

    python benchmarks/gpu_check.py [--install] [--width 768] [--depth 4] [--batch 4]

1. Prints which path each of transformers' Mamba entry points runs on this machine, and why (`vlmamba env`).
2. With `--install`, first installs what is missing of causal-conv1d and mamba-ssm, with `--no-build-isolation`
   (they build against the installed torch) and `MAMBA_KEEP_CUDA_BUILD=TRUE` (mamba-ssm's Mamba-1 scan), then runs
   itself again so that transformers binds them. A source build can take longer than the check itself.
3. On a small Mamba-VL (a one-layer CLIP tower at 336 px, so 601 image-block tokens, then 64 text tokens; the language
   model at `--width` and `--depth`), compares the logits and gradients of the kernel path (`"auto"`), vlmamba's fast
   path (`scan_implementation("fast")`) and transformers' path (`scan_implementation("reference")`), in fp32 (TF32
   off) and bf16.
4. Checks on CUDA that batched greedy generation (left-padded prompts of different lengths) gives what one-by-one
   generation gives, and that LoRA adapters on `in_proj` get gradients and change the output.
5. Prints one table: fwd+bwd seconds and decode milliseconds per token at 601+64 tokens, Mamba-VL against Pythia-VL
   of the same width and depth, each path of Mamba-VL measured in the same run.

Exits with status 1 if a check fails, 2 without a CUDA device.
"""

import argparse
import contextlib
import functools
import importlib.metadata
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

IMAGE_SIZE, PATCH_SIZE = 336, 14  # 24 x 24 patches: a 601-token image block, as the paper's EVA-02-L/14 at 336 px
TEXT_TOKENS = 64
PATHS = ("auto", "fast", "reference")
# Relative errors allowed against transformers' path: (logits, gradients) per dtype.
TOLERANCES = {"float32": (1e-3, 1e-2), "bfloat16": (5e-2, 2e-1)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Check vlmamba's Mamba kernel paths on a CUDA GPU: path table, logits and gradients of the "
        "kernel, fast and reference paths (fp32, bf16), batched vs one-by-one generation, LoRA gradients, and "
        f"fwd+bwd / decode times of Mamba-VL vs Pythia-VL at 601+{TEXT_TOKENS} tokens.",
    )
    parser.add_argument("--install", action="store_true",
                        help="pip install causal-conv1d and mamba-ssm (--no-build-isolation, "
                        "MAMBA_KEEP_CUDA_BUILD=TRUE) when missing, then run again")
    parser.add_argument("--width", type=int, default=768, help="language model width (default 768, as mamba-130m)")
    parser.add_argument("--depth", type=int, default=4, help="language model layers (default 4)")
    parser.add_argument("--batch", type=int, default=4, help="batch size of the comparisons and timings")
    parser.add_argument("--repeats", type=int, default=5, help="timed fwd+bwd repeats per row")
    parser.add_argument("--decode-steps", type=int, default=32, help="timed decode steps per row")
    return parser.parse_args(argv)


def install_missing() -> bool:
    """Installs causal-conv1d, then mamba-ssm, when missing. True if something was installed."""
    missing = []
    for distribution in ("causal-conv1d", "mamba-ssm"):
        try:
            importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            missing.append(distribution)
    if not missing:
        return False
    env = {**os.environ, "MAMBA_KEEP_CUDA_BUILD": "TRUE"}
    # Without build isolation the build tools must be there already.
    for command in (
        [sys.executable, "-m", "pip", "install", "packaging", "ninja", "wheel", "setuptools"],
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", *missing],
    ):
        print("+", " ".join(command), flush=True)
        subprocess.run(command, env=env, check=True)
    return True


def relative_error(value, reference) -> float:
    value, reference = value.double(), reference.double()
    return ((value - reference).norm() / reference.norm().clamp_min(1e-30)).item()


@functools.cache
def _processor():
    from vlmamba.toy import tiny_processor, train_tokenizer

    return tiny_processor(train_tokenizer(), image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)


def build(family: str, width: int, depth: int, dtype, device):
    from vlmamba.toy import tiny_model

    processor = _processor()
    torch.manual_seed(0)
    model = tiny_model(family, processor, "clip", width=width, depth=depth, vision_depth=1)
    return model.to(device=device, dtype=dtype), processor


def prompt_inputs(processor, batch: int, device, text_tokens: int = TEXT_TOKENS):
    """`batch` prompts of one image block and exactly `text_tokens` text tokens (no padding)."""
    from PIL import Image

    from vlmamba.toy import corpus

    tokenizer = processor.tokenizer
    block = processor(images=[Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (200, 30, 30))], text=["<image>"],
                      return_tensors="pt")
    text = tokenizer(" ".join(corpus(200)), add_special_tokens=False).input_ids
    rows = [text[index * text_tokens : (index + 1) * text_tokens] for index in range(batch)]
    input_ids = torch.cat([block["input_ids"].repeat(batch, 1), torch.tensor(rows)], dim=1)
    return {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "pixel_values": block["pixel_values"].repeat(batch, 1, 1, 1).to(device),
    }


def logits_and_grads(model, inputs, path: str):
    from vlmamba.models.mamba_kernels import scan_implementation

    model.train().zero_grad(set_to_none=True)
    with scan_implementation(path):
        out = model(**inputs, labels=inputs["input_ids"])
        out.loss.backward()
    torch.cuda.synchronize()
    grads = {name: p.grad.detach().float().clone() for name, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach().float(), grads


def compare_paths(args, failures: list) -> list[str]:
    """Logits and gradients of the three paths, per dtype: rows of the report."""
    lines = [f"{'dtype':9} {'path':10} {'logits vs reference':>20} {'worst gradient vs reference':>28}"]
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model, processor = build("mamba", args.width, args.depth, dtype, "cuda")
        inputs = prompt_inputs(processor, args.batch, "cuda")
        results = {path: logits_and_grads(model, inputs, path) for path in PATHS}
        ref_logits, ref_grads = results["reference"]
        logits_limit, grads_limit = TOLERANCES[dtype_name]
        for path in ("auto", "fast"):
            logits, grads = results[path]
            logits_error = relative_error(logits, ref_logits)
            worst = max(grads, key=lambda name: relative_error(grads[name], ref_grads[name]))
            grads_error = relative_error(grads[worst], ref_grads[worst])
            ok = logits_error < logits_limit and grads_error < grads_limit and set(grads) == set(ref_grads)
            if not ok:
                failures.append(f"{dtype_name} {path}: logits {logits_error:.2e}, {worst} {grads_error:.2e}")
            lines.append(f"{dtype_name:9} {path:10} {logits_error:20.2e} {grads_error:28.2e}  {worst}"
                         f"{'' if ok else '  FAIL'}")
        del model
        torch.cuda.empty_cache()
    return lines


def check_generation_and_lora(args, failures: list) -> list[str]:
    from peft import LoraConfig, get_peft_model
    from PIL import Image

    model, processor = build("mamba", args.width, args.depth, torch.float32, "cuda")
    model.eval()
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (30, 200, 30))
    questions = ["what colour is it?", "is there a circle in the picture, and where?", "count"]
    kwargs = {"max_new_tokens": 12, "min_new_tokens": 12, "do_sample": False}
    with torch.inference_mode():
        batch = processor(images=[image] * len(questions), text=["<image>" + q for q in questions],
                          return_tensors="pt", padding=True).to("cuda")
        together = model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :]
        alone = []
        for question in questions:
            single = processor(images=[image], text=["<image>" + question], return_tensors="pt").to("cuda")
            alone.append(model.generate(**single, **kwargs)[0, single["input_ids"].shape[1] :])
    same = all(torch.equal(row, single) for row, single in zip(together, alone))
    if not same:
        failures.append("batched generation differs from one-by-one generation")
    lines = [f"batched == one-by-one greedy generation ({len(questions)} left-padded prompts): {same}"]

    lora = get_peft_model(model, LoraConfig(r=8, target_modules=["in_proj"], init_lora_weights=False))
    inputs = prompt_inputs(processor, 2, "cuda")
    lora.train()
    out = lora(**inputs, labels=inputs["input_ids"])
    out.loss.backward()
    adapters = [p for name, p in lora.named_parameters() if "lora_" in name]
    with_grads = sum(p.grad is not None and p.grad.abs().sum().item() > 0 for p in adapters)
    with lora.disable_adapter(), torch.no_grad():
        base = lora(**inputs).logits
    changed = relative_error(out.logits.detach(), base) > 1e-4
    if with_grads != len(adapters) or not changed:
        failures.append(f"LoRA: {with_grads}/{len(adapters)} adapter tensors got gradients, output changed: {changed}")
    lines.append(f"LoRA on in_proj: {with_grads}/{len(adapters)} adapter tensors with gradients, output changed: "
                 f"{changed}")
    return lines


def timings(args) -> list[str]:
    """fwd+bwd seconds and decode ms/token at 601+64 tokens, bf16, Mamba-VL per path and Pythia-VL."""
    from vlmamba.models.mamba_kernels import scan_implementation

    rows = []
    for family, path in (("mamba", "auto"), ("mamba", "fast"), ("mamba", "reference"), ("pythia", "auto")):
        model, processor = build(family, args.width, args.depth, torch.bfloat16, "cuda")
        inputs = prompt_inputs(processor, args.batch, "cuda")
        with scan_implementation(path):
            repeats = 1 if path == "reference" else args.repeats
            model.train()
            times = []
            for step in range(repeats + 1):
                torch.cuda.synchronize()
                start = time.perf_counter()
                model(**inputs, labels=inputs["input_ids"]).loss.backward()
                torch.cuda.synchronize()
                if step:  # the first call compiles and allocates
                    times.append(time.perf_counter() - start)
            model.eval().zero_grad(set_to_none=True)
            steps = []
            with torch.inference_mode():
                out = model(**inputs, use_cache=True)
                cache, token, mask = out.cache, out.logits[:, -1:].argmax(-1), inputs["attention_mask"]
                for step in range(args.decode_steps + 3):
                    mask = torch.cat([mask, torch.ones_like(token)], dim=1)
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                    out = model(input_ids=token, cache=cache, use_cache=True,
                                attention_mask=None if family == "mamba" else mask)
                    torch.cuda.synchronize()
                    if step >= 3:
                        steps.append(time.perf_counter() - start)
                    cache, token = out.cache, out.logits[:, -1:].argmax(-1)
        name = "Mamba-VL" if family == "mamba" else "Pythia-VL"
        rows.append((f"{name} ({path})" if family == "mamba" else name, statistics.median(times),
                     1000 * statistics.median(steps)))
        del model
        torch.cuda.empty_cache()
    width = max(len(row[0]) for row in rows)
    lines = [f"{'model (path)':{width}}  {'fwd+bwd s':>10}  {'decode ms/token':>16}"]
    lines += [f"{name:{width}}  {train:10.3f}  {decode:16.2f}" for name, train, decode in rows]
    return lines


@contextlib.contextmanager
def _stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.install and install_missing():
        # transformers binds the kernels when it is imported: a fresh process sees the new packages.
        again = [sys.executable, str(Path(__file__).resolve()), *[a for a in sys.argv[1:] if a != "--install"]]
        os.execv(sys.executable, again)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); run it on a machine with "
              "an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return 2
    # fp32 comparisons in full fp32: TF32 would cost vlmamba's scan its 1e-5 exactness.
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False

    from vlmamba.models.mamba_kernels import env_report

    failures: list[str] = []
    started = time.perf_counter()
    sections = [("which path runs", lambda: env_report().splitlines()),
                ("logits and gradients against transformers' path", lambda: compare_paths(args, failures)),
                ("generation and LoRA on CUDA", lambda: check_generation_and_lora(args, failures)),
                (f"times at 601+{TEXT_TOKENS} tokens, bf16, batch {args.batch}, width {args.width}, "
                 f"depth {args.depth}, {torch.cuda.get_device_name()}", lambda: timings(args))]
    for title, section in sections:
        print(f"\n## {title}", flush=True)
        with _stdout_to_stderr():  # library output (the tokenizer trainer's too) stays apart from the report
            lines = section()
        print("\n".join(lines), flush=True)
    print(f"\n{len(failures)} failed check(s) in {time.perf_counter() - started:.0f} s", *failures, sep="\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
