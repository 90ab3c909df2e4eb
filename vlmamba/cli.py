# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The `vlmamba` command."""

import argparse
import json
import os
import sys
from pathlib import Path


# Errors the library raises for bad input (each names the file, flag, row or field at fault).
USER_ERRORS = (ValueError, OSError)


def _demo(args) -> int:
    from .experiments.demo import run_demo

    rows = run_demo(args.output_dir, max_new_tokens=args.max_new_tokens)
    print(f"{'model':<12} {'params':>8} {'prompt':>7} {'remote class':<34} {'same tokens':<11} text")
    for row in rows:
        print(
            f"{row['family'] + '-vl':<12} {row['parameters']:>8} {row['prompt_tokens']:>7} "
            f"{row['remote_class']:<34} {str(row['same_tokens']):<11} {row['text']!r}"
        )
    return 0 if all(row["same_tokens"] for row in rows) else 1


def _quickstart(args) -> int:
    from .experiments.quickstart import QuickstartConfig, results_table, run_quickstart

    config = QuickstartConfig(
        train_scenes=args.train_scenes,
        eval_scenes=args.eval_scenes,
        steps=args.steps,
        seed=args.seed,
        families=tuple(args.families.split(",")),
        connector=args.connector,
        scan=args.scan,
        pack_to=args.pack_to or None,
    )
    try:
        results = run_quickstart(args.output_dir, config, progress=not args.no_progress)
    except RuntimeError as error:
        raise SystemExit(f"vlmamba quickstart: {error}") from error
    print()
    print(results_table(results))
    print(
        f"\nFolders, predictions, boxes drawn (*_boxes.png) and results.json in {args.output_dir} "
        f"({results['seconds']:.0f} s in all)."
    )
    return 0


def _retrieval(args) -> int:
    from .experiments import retrieval

    def numbers(flag, text, kind):
        try:
            return tuple(kind(value) for value in text.split(","))
        except ValueError:
            raise SystemExit(f"{flag} must be comma-separated numbers, got {text!r}") from None

    config = retrieval.RetrievalConfig(
        lengths=numbers("--lengths", args.lengths, int),
        steps=args.steps,
        width=args.width,
        depth=args.depth,
        state_size=args.state_size,
        learning_rates=numbers("--learning-rates", args.learning_rates, float),
        eval_every=args.eval_every,
        patience=args.patience,
        heldout_samples=args.heldout_samples,
        eval_samples=args.eval_samples,
        layouts=("query_last", "query_first") if args.query_first else ("query_last",),
        position_tags="none" if args.no_position_tags else "input",
        families=tuple(args.families.split(",")),
        seed=args.seed,
        workers=args.workers,
        log_every=args.log_every,
    )
    if not args.sweep:
        results = retrieval.run_retrieval(args.output_dir, config)
        print()
        print(retrieval.results_table(results))
        print(f"\nretrieval.json and retrieval.png in {args.output_dir} ({results['seconds']:.0f} s in all).")
        return 0
    widths = numbers("--sweep-widths", args.sweep_widths, int)
    state_sizes = numbers("--sweep-state-sizes", args.sweep_state_sizes, int)
    estimate = retrieval.estimate_sweep_seconds(args.output_dir, config, widths, state_sizes)
    print(
        f"Sweep over widths {widths} and Mamba state sizes {state_sizes}: about {estimate['seconds'] / 60:.0f} min "
        "if every run goes to its step cap (step times measured now) — "
        + ", ".join(f"{name} {seconds / 60:.0f} min" for name, seconds in estimate["per_size"].items()),
        flush=True,
    )
    sweep = retrieval.run_sweep(args.output_dir, config, widths, state_sizes)
    print()
    print(retrieval.sweep_table(sweep))
    print(
        f"\nretrieval_sweep.json, retrieval_sweep.png and one folder per size in {args.output_dir} "
        f"({sweep['seconds']:.0f} s in all)."
    )
    return 0


def _predict(args) -> int:
    from .models.image_processing_vlmamba import open_image
    from .predict import load_model, predict

    image = open_image(args.image)  # a bad image is reported before the model loads
    model, processor = load_model(args.model, device=args.device)
    try:
        box = [float(value) for value in args.box.split(",")] if args.box else None
    except ValueError:
        raise SystemExit(f"--box must be x1,y1,x2,y2 in pixels, got {args.box!r}") from None
    choices = args.choices.split("|") if args.choices else None
    output_image = args.output or f"{Path(args.image).stem}_boxes.png"
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise SystemExit(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    result = predict(
        model,
        processor,
        image,
        prompt=args.prompt,
        task=args.task,
        choices=choices,
        box=box,
        max_new_tokens=args.max_new_tokens,
        output_image=output_image,
    )
    print(f"text: {json.dumps(result['text'], ensure_ascii=False)}")
    for phrase, pixels in zip(result["phrases"], result["boxes"]):
        print(f"box {[round(value, 1) for value in pixels]} {phrase}".rstrip())
    if result["dropped_boxes"]:
        print(f"dropped boxes: {result['dropped_boxes']} (incomplete, or not in the normalized format)")
    if result["output_image"]:
        print(f"annotated image: {result['output_image']}")
    elif args.output:
        print(f"no boxes in the answer: {args.output} not written")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _train(args) -> int:
    from .training import main as train_main

    return train_main(args.train_args, prog="vlmamba train")


def _annotation_overrides(values) -> dict:
    """`--annotations` values `NAME=PATH` (the benchmark's main file) or `NAME.FILE=PATH` (a loader argument, or
    `images` for the image folder) -> `{benchmark: {argument: path}}`."""
    from .evaluation import get_benchmark

    overrides = {}
    for value in values or []:
        key, separator, path = value.partition("=")
        if not separator or not key or not path:
            raise SystemExit(f"--annotations must be NAME=PATH or NAME.FILE=PATH, got {value!r}")
        name, _, argument = key.partition(".")
        try:
            benchmark = get_benchmark(name)
        except ValueError as error:
            raise SystemExit(f"--annotations {value}: {error}") from None
        known = (*benchmark.file_arguments, "images")
        if argument and argument not in known:
            raise SystemExit(f"--annotations {value}: {name} has no file {argument!r}; its files: {', '.join(known)}")
        overrides.setdefault(name, {})[argument or benchmark.files[0][0]] = path
    return overrides


def _evaluate(args) -> int:
    from .evaluation import BENCHMARKS, evaluate_benchmarks, results_table
    from .predict import load_model

    names = list(BENCHMARKS) if args.benchmarks == "all" else [name.strip() for name in args.benchmarks.split(",")]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown or not names:
        raise SystemExit(f"Unknown benchmark(s) {unknown}; known: {', '.join(BENCHMARKS)} (or 'all').")
    annotations = _annotation_overrides(args.annotations)
    model, processor = load_model(args.model, device=args.device)
    try:
        results = evaluate_benchmarks(
            model,
            processor,
            names,
            args.data_root,
            output_dir=args.output_dir,
            annotations=annotations,
            image_root=args.image_root,
            batch_size=args.batch_size,
            limit=args.limit,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            # A local folder is named by its absolute path in the results (a resume compares the weights themselves).
            model_name=str(Path(args.model).resolve()) if Path(args.model).exists() else args.model,
        )
    except ValueError as error:
        raise SystemExit(f"vlmamba evaluate: {error}") from None
    print()
    print(results_table(results))
    print(f"\nPredictions, scores and results.json in {args.output_dir}")
    return 0


def _env(args) -> int:
    from .models.mamba_kernels import env_report

    print(env_report())
    return 0


def _convert(args) -> int:
    import torch

    from .convert import convert_checkpoint

    destination = convert_checkpoint(
        args.source,
        args.destination,
        tokenizer=args.tokenizer,
        base_model=args.base_model,
        dtype=getattr(torch, args.dtype) if args.dtype else None,
        max_shard_size=args.max_shard_size,
        repo_id=args.repo_id,
    )
    print(f"Converted {args.source} into {destination}.")
    return 0


def _check(args) -> int:
    from .hub import check_folder

    problems = check_folder(args.folder, repo_id=args.repo_id)
    if not problems:
        print(f"{args.folder}: ready to push (config, code, weights, processor, tokenizer and card; it loads and "
              "generates as remote code without vlmamba).")
        return 0
    print(f"{args.folder}: {len(problems)} problem(s):")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def _push(args) -> int:
    from .hub import push_folder

    commit = push_folder(
        args.folder,
        args.repo_id,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.commit_message,
        commit_description=args.commit_description,
        create_pr=args.create_pr,
        exclude=args.exclude,
        force=args.force,
    )
    print(f"Pushed {args.folder} to {args.repo_id}: {commit.pr_url or commit.commit_url}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmamba", description="Mamba-VL and Pythia-VL tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="Build, save, reload (remote code) and run tiny models offline.")
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--max-new-tokens", type=int, default=8)
    demo.set_defaults(func=_demo)

    quickstart = commands.add_parser(
        "quickstart", help="Train a small Mamba-VL and Pythia-VL on synthetic shapes offline and compare them."
    )
    quickstart.add_argument("--output-dir", default="outputs/quickstart")
    quickstart.add_argument("--steps", type=int, default=1200, help="training steps of each model")
    quickstart.add_argument("--train-scenes", type=int, default=1500)
    quickstart.add_argument("--eval-scenes", type=int, default=100, help="held-out scenes")
    quickstart.add_argument("--families", default="mamba,pythia")
    quickstart.add_argument(
        "--connector", default="mlp", help="mlp (Mamba-VL, Pythia-VL), or VL-Mamba's vss_mlp / vss_l2"
    )
    quickstart.add_argument("--scan", default="bidirectional", help="the VSS connectors' scan: bidirectional or cross")
    quickstart.add_argument("--seed", type=int, default=0)
    quickstart.add_argument(
        "--pack-to", type=int, default=160, help="pack each batch into rows of this many tokens (0: pad instead)"
    )
    quickstart.add_argument("--no-progress", action="store_true", help="no progress bars")
    quickstart.set_defaults(func=_quickstart)

    retrieval = commands.add_parser(
        "retrieval",
        help="Train a Mamba and a Pythia language model from scratch on in-context retrieval; accuracy per length.",
    )
    retrieval.add_argument("--output-dir", default="outputs/retrieval")
    retrieval.add_argument("--steps", type=int, default=2500, help="steps (the cap, with held-out evaluations)")
    retrieval.add_argument("--width", type=int, default=128)
    retrieval.add_argument("--depth", type=int, default=2)
    retrieval.add_argument("--state-size", type=int, default=16, help="Mamba's state size")
    retrieval.add_argument(
        "--learning-rates", default="1e-3", help="rates tried per family; the best held-out one is kept"
    )
    retrieval.add_argument("--eval-every", type=int, default=0, help="steps between held-out evaluations (0: a "
                           "fixed budget; the tuned protocol: --learning-rates 3e-4,1e-3,3e-3 --eval-every 100)")
    retrieval.add_argument("--patience", type=int, default=4, help="held-out evaluations without improvement")
    retrieval.add_argument("--heldout-samples", type=int, default=32, help="held-out queries per length")
    retrieval.add_argument("--lengths", default="20,50,100,200,400,576", help="context lengths to evaluate")
    retrieval.add_argument("--eval-samples", type=int, default=200, help="queries per length")
    retrieval.add_argument("--query-first", action="store_true", help="also run the query-first layout")
    retrieval.add_argument(
        "--no-position-tags", action="store_true", help="bare symbols: no position token added to context symbols"
    )
    retrieval.add_argument("--families", default="pythia,mamba")
    retrieval.add_argument("--seed", type=int, default=0)
    retrieval.add_argument("--workers", type=int, default=2, help="models trained side by side, one thread each")
    retrieval.add_argument(
        "--log-every", type=int, default=100, help="print training progress every N steps (0: never)"
    )
    retrieval.add_argument(
        "--sweep", action="store_true", help="run at every --sweep-widths x --sweep-state-sizes, one folder each"
    )
    retrieval.add_argument("--sweep-widths", default="128,256")
    retrieval.add_argument("--sweep-state-sizes", default="16,64", help="Mamba state sizes of the sweep")
    retrieval.set_defaults(func=_retrieval)

    # Every flag after `train` goes to the training parser (`vlmamba train --help` lists them), so this sub-parser
    # declares none of its own.
    train = commands.add_parser(
        "train",
        add_help=False,
        help="Train one stage of the paper (connector; language model, fully or LoRA) with the standard Trainer.",
    )
    train.set_defaults(func=_train)

    from .predict import PREDICT_TASKS

    predict = commands.add_parser(
        "predict", help="Generate for one image; print the answer and its boxes, write the image with boxes drawn."
    )
    predict.add_argument("--model", required=True, help="model folder or Hub id")
    predict.add_argument("--image", required=True, help="image file")
    predict.add_argument("--prompt", help="the question / expression / caption of --task, or a free prompt")
    predict.add_argument("--task", choices=PREDICT_TASKS, help="write the prompt in this task's template")
    predict.add_argument("--choices", help="multiple choice options, separated by |")
    predict.add_argument("--box", help="dense captioning region: x1,y1,x2,y2 in pixels")
    predict.add_argument("--max-new-tokens", type=int, help="default: the task's evaluation length, 64 without task")
    predict.add_argument("--output", help="annotated PNG (default: <image name>_boxes.png)")
    predict.add_argument("--json", help="also write the result as JSON to this file")
    predict.add_argument("--device", help="e.g. cuda, mps (default: cpu)")
    predict.set_defaults(func=_predict)

    from .evaluation import layout_lines

    evaluate = commands.add_parser(
        "evaluate",
        help="Score a model on benchmarks (batched greedy generation, resumable) and print a table.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Files expected under --data-root (image folders under --image-root):\n" + "\n".join(layout_lines()),
    )
    evaluate.add_argument("--model", required=True, help="model folder or Hub id")
    evaluate.add_argument("--benchmarks", required=True, help="comma-separated benchmark names, or 'all'")
    evaluate.add_argument("--data-root", help="folder holding the annotation files in the layout below")
    evaluate.add_argument("--image-root", help="root of the image folders (default: --data-root)")
    evaluate.add_argument("--output-dir", required=True, help="predictions, scores and results.json go here")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.add_argument("--limit", type=int, help="only the first N samples of each benchmark")
    evaluate.add_argument("--device", help="e.g. cuda, mps (default: cpu)")
    evaluate.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    evaluate.add_argument(
        "--annotations",
        action="append",
        metavar="NAME[.FILE]=PATH",
        help="a file or folder instead of the layout's: NAME=PATH for a benchmark's main file, NAME.FILE=PATH for "
        "another (e.g. vqav2.annotations_json, textvqa.ocr_json, coco.images); repeatable",
    )
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_evaluate)

    env = commands.add_parser("env", help="Show which Mamba kernel path runs on this machine, and why.")
    env.set_defaults(func=_env)

    convert = commands.add_parser(
        "convert", help="Convert a published Mamba-VL / Pythia-VL checkpoint (or a raw mamba-ssm Mamba) into a folder "
        "from_pretrained loads."
    )
    convert.add_argument("source", help="the checkpoint's folder, or its Hub id (downloaded when online)")
    convert.add_argument("destination", help="the output folder")
    convert.add_argument("--tokenizer", help="tokenizer folder or Hub id saved with the model (none ships with the "
                         "paper's checkpoints: EleutherAI/gpt-neox-20b); with it a processor and a model card are "
                         "written")
    convert.add_argument("--base-model", help="for a Pythia-VL checkpoint without config.json: its base model's Hub id "
                         "or folder (default: Pythia's config of the checkpoint's width and depth)")
    convert.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="cast the weights (default: keep)")
    convert.add_argument("--max-shard-size", default="5GB", help="largest weight file of the output (default 5GB)")
    convert.add_argument("--repo-id", help="the Hub repo the folder is for, named by the model card")
    convert.set_defaults(func=_convert)

    check = commands.add_parser(
        "check", help="Check that a saved folder is complete for the Hub and loads as remote code without vlmamba."
    )
    check.add_argument("folder", help="the folder save_pretrained and write_model_card wrote")
    check.add_argument("--repo-id", help="the repo it is for: the model card's usage code must load it")
    check.set_defaults(func=_check)

    push = commands.add_parser(
        "push", help="Check a saved folder (as `vlmamba check`) and upload it to a model repo on the Hugging Face Hub."
    )
    push.add_argument("folder", help="the folder to upload")
    push.add_argument("repo_id", help="owner/name of the model repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing one keeps its "
                      "visibility)")
    push.add_argument("--revision", help="the branch to commit to, created from main if missing (default: main)")
    push.add_argument("--commit-message", help="default: 'Upload <folder name> with vlmamba'")
    push.add_argument("--commit-description")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.add_argument("--exclude", action="append", metavar="PATTERN",
                      help="a glob of files not to upload (e.g. 'checkpoint-*'); repeatable")
    push.add_argument("--force", action="store_true", help="upload even if the check finds problems")
    push.set_defaults(func=_push)
    args, extra = parser.parse_known_args(argv)
    if args.command == "train":
        args.train_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except USER_ERRORS as error:
        # A missing file, a bad flag value or a bad folder is reported, not a traceback; VLMAMBA_TRACEBACK=1 shows it.
        if os.environ.get("VLMAMBA_TRACEBACK"):
            raise
        print(f"vlmamba {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
