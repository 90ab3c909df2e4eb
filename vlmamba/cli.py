# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""The `vlmamba` command."""

import argparse


def _demo(args) -> int:
    from .demo import run_demo

    rows = run_demo(args.output_dir, max_new_tokens=args.max_new_tokens)
    print(f"{'model':<12} {'params':>8} {'prompt':>7} {'remote class':<34} {'same tokens':<11} text")
    for row in rows:
        print(
            f"{row['family'] + '-vl':<12} {row['parameters']:>8} {row['prompt_tokens']:>7} "
            f"{row['remote_class']:<34} {str(row['same_tokens']):<11} {row['text']!r}"
        )
    return 0 if all(row["same_tokens"] for row in rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmamba", description="Mamba-VL and Pythia-VL tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="Build, save, reload (remote code) and run tiny models offline.")
    demo.add_argument("--output-dir", default="outputs/demo")
    demo.add_argument("--max-new-tokens", type=int, default=8)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
