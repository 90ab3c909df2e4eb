# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Greedy answers of a saved folder, loaded as a user without vlmamba loads it: through its remote code, in a new
Python process in which `import vlmamba` fails.

`generate_without_vlmamba` (library side) writes the examples to a JSON file and runs this file as a script in that
process; the script loads the folder with `AutoModelForImageTextToText` / `AutoProcessor` and
`trust_remote_code=True`, answers the examples with the folder's own copy of `generate_answers` (the library's one
inference path, shipped in `processing_vlmamba.py`), and writes the answers to another JSON file. The script imports
nothing from vlmamba, by construction.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def generate_without_vlmamba(folder, examples: list[dict], work_dir, batch_size: int = 32, desc: str = "") -> dict:
    """Greedy answers of the model saved in `folder`, in a process without vlmamba.

    Args:
        folder: the saved model and processor.
        examples: `generate_answers` examples that JSON holds: `image` a file path, then a free `prompt` or a `task`
            with its fields, and optionally `image_size`, `max_new_tokens`, `id`.
        work_dir: where the example and answer files are written (`<desc>.examples.json`, `<desc>.answers.json`).
        batch_size: examples per `generate()` call.
        desc: names the files and the progress bar.

    Returns:
        `{"class", "module", "missing_keys", "unexpected_keys", "outputs"}`: the loaded class and its module, the
        weights the model expected but the folder lacks and those it holds but the model has no place for (both
        empty for a complete folder), and per example the answer of `generate_answers` (`prompt`, `tokens`, `text`,
        `phrases`, `boxes`, `boxes_normalized`).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    examples_path = work_dir / f"{desc or 'examples'}.examples.json"
    answers_path = work_dir / f"{desc or 'examples'}.answers.json"
    # The child runs in another folder: every path it gets is absolute.
    examples = [{**example, "image": str(Path(example["image"]).resolve())} for example in examples]
    examples_path.write_text(json.dumps({"examples": examples, "batch_size": batch_size, "desc": desc}))
    arguments = [str(Path(path).resolve()) for path in (folder, examples_path, answers_path)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # away from any checkout of vlmamba
    )
    if result.returncode != 0:
        raise RuntimeError(f"Generating with {folder} failed in a process without vlmamba:\n{result.stderr[-4000:]}")
    return json.loads(answers_path.read_text())


def _answer_examples(folder: str, examples_path: str, answers_path: str) -> None:
    """The child's work (see the module docstring)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    request = json.loads(Path(examples_path).read_text())
    model, loading = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True,
                                                                 output_loading_info=True)
    model.eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    # The folder's own copy of the inference path, from the module its processor was loaded from.
    generate_answers = sys.modules[type(processor).__module__].generate_answers
    answers = generate_answers(model, processor, request["examples"], batch_size=request["batch_size"],
                               progress=True, desc=request["desc"])
    keys = {kind: sorted(loading.get(kind) or []) for kind in ("missing_keys", "unexpected_keys")}
    Path(answers_path).write_text(json.dumps({"class": type(model).__name__, "module": type(model).__module__,
                                              **keys, "outputs": answers}))


__all__ = ["generate_without_vlmamba"]


if __name__ == "__main__":
    # Nothing of vlmamba may be used: not the package, nor this file's folder (which Python puts first on the path).
    sys.path.pop(0)
    sys.modules["vlmamba"] = None
    _answer_examples(*sys.argv[1:4])
