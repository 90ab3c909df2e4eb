# Copyright 2026 The vlmamba developers. Licensed under the Apache License, Version 2.0.
"""Publishing a saved folder on the Hugging Face Hub: `check_folder` (is everything a Hub user needs there, and does
it load?) and `push_folder` (create the repo, upload the folder), behind `vlmamba check` and `vlmamba push`.

A folder is complete when it holds what `from_pretrained(..., trust_remote_code=True)` reads where vlmamba is not
installed: `config.json` with `model_type` and an `auto_map`, the code files every `auto_map` names (parsing, and
importing each other, never vlmamba), safetensors weights (one file, or shards with their index),
`processor_config.json` with its image processor, the tokenizer files, and a `README.md` card whose metadata
`huggingface_hub.ModelCard` parses and names the pipeline and library.
The folder is then loaded and run (one greedy token) in a Python process without vlmamba
(`experiments.remote_check.generate_without_vlmamba`), which also reports weights the model expects but the folder
lacks, or holds but the model has no place for.
"""

import ast
import json
import re
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, ModelCard
from transformers.utils import logging


logger = logging.get_logger(__name__)

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
PROCESSOR = "processor_config.json"
IMAGE_PROCESSOR = "preprocessor_config.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
CARD = "README.md"
# What the card's usage code and the pipeline load.
REQUIRED_AUTO_CLASSES = ("AutoConfig", "AutoModelForImageTextToText")
CARD_FIELDS = ("pipeline_tag", "library_name")
# A frame of a traceback in transformers' copy of a remote-code file.
_REMOTE_FRAME = re.compile(r'File "[^"]*transformers_modules[^"]*[/\\]([^/\\"]+\.py)", line (\d+)')


def _read_json(folder: Path, name: str, problems: list, hint: str = ""):
    path = folder / name
    if not path.is_file():
        problems.append(f"{name} is missing{hint}.")
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{name} is not valid JSON ({error}).")
        return None
    if not isinstance(content, dict):
        problems.append(f"{name} does not hold a JSON object.")
        return None
    return content


def _auto_map_references(value):
    """The `module.Class` strings of an `auto_map` entry (a string, a `[slow, fast]` pair or a `{backend: ...}`)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _auto_map_references(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _auto_map_references(item)


def _check_auto_map(folder: Path, name: str, auto_map, problems: list, required=()) -> None:
    if not isinstance(auto_map, dict) or not auto_map:
        problems.append(f"{name} has no auto_map: the Auto classes cannot load it as remote code (save it with "
                        "vlmamba imported, which registers the classes for auto_map).")
        return
    for auto_class in required:
        if auto_class not in auto_map:
            problems.append(f"{name}: auto_map has no {auto_class}.")
    missing = {}
    for auto_class, value in auto_map.items():
        for reference in _auto_map_references(value):
            # `owner/repo--module.Class` takes the code from another repo.
            if "--" in reference:
                continue
            module = reference.rpartition(".")[0] or reference
            if not (folder / f"{module}.py").is_file():
                missing.setdefault(module, []).append(auto_class)
    for module, auto_classes in missing.items():
        problems.append(f"{module}.py is missing: {name}'s auto_map names it for {', '.join(sorted(auto_classes))}.")


def _check_code(folder: Path, problems: list) -> None:
    """Each code file parses, imports nothing of vlmamba, and finds the files it imports relatively (transformers
    copies only single-dot imports of files next to it). The fresh process then imports them for real."""
    for path in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=path.name)
        except (SyntaxError, UnicodeDecodeError) as error:
            problems.append(f"{path.name} does not parse as Python ({error}).")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [(0, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [(node.level, node.module or "")]
            else:
                continue
            for level, module in modules:
                if level == 0 and module.split(".")[0] == "vlmamba":
                    problems.append(f"{path.name} (line {node.lineno}) imports {module}: remote code must run where "
                                    "vlmamba is not installed.")
                elif level == 1 and module and not (folder / f"{module.split('.')[0]}.py").is_file():
                    problems.append(f"{path.name} (line {node.lineno}) imports .{module}, and "
                                    f"{module.split('.')[0]}.py is missing.")


def _safetensors_keys(path: Path, problems: list) -> set | None:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as weights:
            return set(weights.keys())
    except (OSError, SafetensorError) as error:
        problems.append(f"{path.name} is not a readable safetensors file ({error}).")
        return None


def _check_weights(folder: Path, problems: list) -> None:
    single, index = folder / WEIGHTS, folder / WEIGHTS_INDEX
    if single.is_file() and index.is_file():
        problems.append(f"{WEIGHTS} and {WEIGHTS_INDEX} are both present: transformers loads {WEIGHTS} and ignores "
                        "the shards; remove the one that is out of date.")
    if index.is_file():
        content = _read_json(folder, WEIGHTS_INDEX, problems)
        weight_map = (content or {}).get("weight_map")
        if content is not None and (not isinstance(weight_map, dict) or not weight_map):
            problems.append(f"{WEIGHTS_INDEX} has no weight_map.")
            return
        if content is None:
            return
        shards = {}
        for key, shard in weight_map.items():
            shards.setdefault(shard, set()).add(key)
        for shard, keys in sorted(shards.items()):
            if not (folder / shard).is_file():
                problems.append(f"{shard} is missing: {WEIGHTS_INDEX} maps {len(keys)} weights to it.")
                continue
            stored = _safetensors_keys(folder / shard, problems)
            if stored is not None and stored != keys:
                problems.append(f"{shard} does not hold the weights {WEIGHTS_INDEX} maps to it "
                                f"({len(keys - stored)} missing, {len(stored - keys)} not in the index).")
        for path in sorted(folder.glob("model-*.safetensors")):
            if path.name not in shards:
                problems.append(f"{path.name} is not in {WEIGHTS_INDEX} (a leftover of another save?).")
    elif single.is_file():
        _safetensors_keys(single, problems)
    elif any((folder / name).is_file() for name in PICKLED_WEIGHTS):
        problems.append(f"the weights are pickled ({PICKLED_WEIGHTS[0]}), not safetensors: save them with "
                        "save_pretrained(..., safe_serialization=True), the default.")
    else:
        problems.append(f"no weights: neither {WEIGHTS} nor {WEIGHTS_INDEX} with its shards.")


def _check_card(folder: Path, repo_id: str | None, problems: list) -> None:
    path = folder / CARD
    if not path.is_file():
        problems.append(f"{CARD} (the model card) is missing: write it with "
                        "vlmamba.model_card.write_model_card(folder, ...).")
        return
    try:
        card = ModelCard.load(path)
    except Exception as error:  # the YAML parser's and the metadata checks' errors alike
        message = " ".join(str(error).split())
        problems.append(f"{CARD}: huggingface_hub.ModelCard cannot parse its metadata ({type(error).__name__}: "
                        f"{message}).")
        return
    missing = [field for field in CARD_FIELDS if not getattr(card.data, field, None)]
    if missing:
        problems.append(f"{CARD}: the metadata has no {' or '.join(missing)} (write the card with "
                        "vlmamba.model_card.write_model_card, or add them to its YAML header).")
    if repo_id is not None and repo_id not in card.text:
        problems.append(f"{CARD} never names {repo_id}, so its usage code loads another repo: write it with "
                        f"vlmamba.model_card.write_model_card(folder, ..., repo_id={repo_id!r}).")


def _remote_problem(error: RuntimeError) -> str:
    """One line for a failed remote-code run: the folder's file at fault (the last frame in its code), the error."""
    text = str(error)
    frames = _REMOTE_FRAME.findall(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    where = f"{frames[-1][0]} (line {frames[-1][1]}): " if frames else ""
    return f"{where}the folder does not load and run as remote code in a process without vlmamba: {last}"


def _check_remote_code(folder: Path, problems: list) -> None:
    from PIL import Image

    from .experiments.remote_check import generate_without_vlmamba

    with tempfile.TemporaryDirectory() as work:
        image = Path(work) / "check.png"
        Image.new("RGB", (64, 48), "white").save(image)
        example = {"task": "captioning", "image": str(image), "max_new_tokens": 1}
        try:
            loaded = generate_without_vlmamba(folder, [example], work, batch_size=1, desc="check")
        except RuntimeError as error:
            problems.append(_remote_problem(error))
            return
    weights = WEIGHTS_INDEX if (folder / WEIGHTS_INDEX).is_file() and not (folder / WEIGHTS).is_file() else WEIGHTS
    for kind, meaning in (("missing_keys", "the model expects but the folder lacks"),
                          ("unexpected_keys", "the folder holds but the model has no place for")):
        keys = loaded.get(kind) or []
        if keys:
            shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
            problems.append(f"{weights}: {len(keys)} weights {meaning} ({shown}).")


def check_folder(folder, repo_id: str | None = None, remote_code: bool = True) -> list[str]:
    """What keeps `folder` from being published as a complete model repo (see the module docstring).

    Args:
        folder: a folder written by `save_pretrained` (model and processor) and `write_model_card`.
        repo_id: the repo it is for; the card must name it (its usage code loads it).
        remote_code: also load and run the folder in a process without vlmamba, when the files are all there.

    Returns:
        The problems, one sentence each naming the file at fault; empty when the folder is complete.

    Raises:
        ValueError: `folder` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder.")
    problems = []
    config = _read_json(folder, CONFIG, problems, " (save the model with save_pretrained)")
    if config is not None:
        if not config.get("model_type"):
            problems.append(f"{CONFIG} has no model_type.")
        _check_auto_map(folder, CONFIG, config.get("auto_map"), problems, REQUIRED_AUTO_CLASSES)
    _check_code(folder, problems)
    _check_weights(folder, problems)
    processor = _read_json(folder, PROCESSOR, problems, " (save the processor with save_pretrained)")
    if processor is not None:
        _check_auto_map(folder, PROCESSOR, processor.get("auto_map"), problems, ("AutoProcessor",))
        if "image_processor" not in processor and not (folder / IMAGE_PROCESSOR).is_file():
            problems.append(f"{PROCESSOR} has no image_processor, and there is no {IMAGE_PROCESSOR}.")
    tokenizer = _read_json(folder, TOKENIZER_CONFIG, problems, " (save the processor with save_pretrained)")
    if tokenizer is not None and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"the tokenizer's vocabulary is missing: none of {', '.join(TOKENIZER_FILES)}.")
    elif (folder / TOKENIZER_FILES[0]).is_file():
        _read_json(folder, TOKENIZER_FILES[0], problems)
    # Loading needs all of the above; the card is read by the Hub only.
    if remote_code and not problems:
        _check_remote_code(folder, problems)
    _check_card(folder, repo_id, problems)
    return problems


def push_folder(
    folder,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    create_pr: bool = False,
    exclude: list[str] | None = None,
    force: bool = False,
    token: str | None = None,
):
    """Checks `folder` (`check_folder`), creates the model repo `repo_id` if needed, and uploads the folder to it in
    one commit (`HfApi.create_repo`, `create_branch`, `upload_folder`).

    Args:
        folder: the folder to publish.
        repo_id: `owner/name` on the Hub.
        private: make a new repo private (an existing repo keeps its visibility).
        revision: the branch to commit to (created from `main` if missing); `main` by default.
        commit_message, commit_description: the commit's; `"Upload <folder name> with vlmamba"` by default.
        create_pr: open a pull request (against `revision`) instead of committing.
        exclude: glob patterns of files not to upload (`upload_folder`'s `ignore_patterns`).
        force: upload even when `check_folder` finds problems (they are logged as warnings).
        token: a Hub token; by default `HF_TOKEN` or the one `hf auth login` saved.

    Returns:
        `upload_folder`'s `CommitInfo` (`commit_url`, and `pr_url` with `create_pr`).

    Raises:
        ValueError: the folder is incomplete (every problem listed) and `force` is not set.
    """
    folder = Path(folder)
    problems = check_folder(folder, repo_id=repo_id)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        if not force:
            raise ValueError(f"{folder} is not ready to push to {repo_id} ({len(problems)} problem(s)); fix them, or "
                             f"push anyway with --force (force=True):\n{listed}")
        logger.warning(f"Pushing {folder} to {repo_id} despite {len(problems)} problem(s):\n{listed}")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True).repo_id
    if revision is not None and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="model",
        revision=revision,
        commit_message=commit_message or f"Upload {folder.name} with vlmamba",
        commit_description=commit_description,
        create_pr=create_pr,
        ignore_patterns=exclude,
    )


__all__ = ["check_folder", "push_folder"]
