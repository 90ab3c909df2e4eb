# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Greedy answers of a saved folder, loaded as a user without vlmamba loads it: through its remote code, in a new
Python process in which `import vlmamba` fails.

`generate_without_vlmamba` (library side) writes the requests to a JSON file and runs this file as a script in that
process; the script loads the folder with `AutoModelForImageTextToText` / `AutoProcessor` and
`trust_remote_code=True`, answers the requests in left-padded greedy batches, reads the boxes with
`processor.post_process_grounding`, and writes the answers to another JSON file. The script imports nothing from
vlmamba, by construction.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def generate_without_vlmamba(folder, items: list[dict], work_dir, batch_size: int = 32, desc: str = "") -> dict:
    """Greedy answers of the model saved in `folder`, in a process without vlmamba.

    Args:
        folder: the saved model and processor.
        items: dicts with `image` (a file path), `prompt` (text with the image placeholder), `image_size`
            (height, width) of the image the boxes refer to, and `max_new_tokens`.
        work_dir: where the request and answer files are written (`<desc>.requests.json`, `<desc>.outputs.json`).
        batch_size: requests per `generate()` call.
        desc: names the files and the progress bar.

    Returns:
        `{"class", "module", "outputs"}`: the loaded class and its module, and per item its new `tokens`, the decoded
        `text` and the pixel `boxes`.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    requests_path = work_dir / f"{desc or 'requests'}.requests.json"
    outputs_path = work_dir / f"{desc or 'requests'}.outputs.json"
    # The child runs in another folder: every path it gets is absolute.
    items = [{**item, "image": str(Path(item["image"]).resolve())} for item in items]
    requests_path.write_text(json.dumps({"items": items, "batch_size": batch_size, "desc": desc}))
    arguments = [str(Path(path).resolve()) for path in (folder, requests_path, outputs_path)]
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
    return json.loads(outputs_path.read_text())


def _answer_requests(folder: str, requests_path: str, outputs_path: str) -> None:
    """The child's work (see the module docstring)."""
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    requests = json.loads(Path(requests_path).read_text())
    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        def tqdm(batches, **kwargs):
            return batches
    items, batch_size = requests["items"], requests["batch_size"]
    outputs = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: items[i]["max_new_tokens"])
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    for batch in tqdm(batches, desc=requests["desc"], unit="batch"):
        images = [Image.open(items[i]["image"]) for i in batch]
        inputs = processor(images=images, text=[items[i]["prompt"] for i in batch], return_tensors="pt",
                           padding=True, padding_side="left")
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=max(items[i]["max_new_tokens"] for i in batch),
                                       do_sample=False)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        parsed = processor.post_process_grounding(new_tokens, image_sizes=[items[i]["image_size"] for i in batch])
        for i, tokens, result in zip(batch, new_tokens.tolist(), parsed):
            outputs[i] = {"tokens": tokens, "text": result["text"], "boxes": result["boxes"]}
    Path(outputs_path).write_text(json.dumps({"class": type(model).__name__, "module": type(model).__module__,
                                              "outputs": outputs}))


__all__ = ["generate_without_vlmamba"]


if __name__ == "__main__":
    # Nothing of vlmamba may be used: not the package, nor this file's folder (which Python puts first on the path).
    sys.path.pop(0)
    sys.modules["vlmamba"] = None
    _answer_requests(*sys.argv[1:4])
