"""Publishing: `check_folder` passes a complete folder and names each missing or broken piece; `vlmamba check`;
`vlmamba push` hands the Hub client the right arguments, and refuses an incomplete folder (the client mocked)."""

import json
import shutil

import pytest
from huggingface_hub import CommitInfo, HfApi, RepoUrl
from safetensors.torch import load_file, save_file

from tests.tiny import save_tiny
from vlmamba.cli import main
from vlmamba.hub import check_folder
from vlmamba.model_card import write_model_card


REPO_ID = "vlmamba-tests/tiny-mamba-vl"


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    folder = tmp_path_factory.mktemp("complete")
    model, processor = save_tiny("mamba", folder)
    write_model_card(folder, model, processor, repo_id=REPO_ID)
    return folder


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded")
    model, processor = save_tiny("pythia", tmp_path_factory.mktemp("single"))
    model.save_pretrained(folder, max_shard_size="100KB")
    processor.save_pretrained(folder)
    write_model_card(folder, model, processor, repo_id=REPO_ID)
    return folder


@pytest.fixture
def folder(complete, tmp_path):
    copy = tmp_path / "folder"
    shutil.copytree(complete, copy)
    return copy


def _edit_json(path, edit):
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))


def test_a_complete_folder_passes_single_file_or_sharded(complete, sharded):
    assert check_folder(complete, repo_id=REPO_ID) == []
    assert len(list(sharded.glob("model-*.safetensors"))) > 1 and not (sharded / "model.safetensors").exists()
    assert check_folder(sharded) == []


def _drop_first_weight(folder):
    weights = load_file(folder / "model.safetensors")
    weights.pop(sorted(weights)[0])
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


BREAKAGES = {
    "no config": (lambda f: (f / "config.json").unlink(), "config.json is missing"),
    "config not JSON": (lambda f: (f / "config.json").write_text("{"), "config.json is not valid JSON"),
    "no auto_map": (lambda f: _edit_json(f / "config.json", lambda c: c.pop("auto_map")),
                    "config.json has no auto_map"),
    "no model in auto_map": (lambda f: _edit_json(f / "config.json",
                                                  lambda c: c["auto_map"].pop("AutoModelForImageTextToText")),
                             "config.json: auto_map has no AutoModelForImageTextToText"),
    "no modeling file": (lambda f: (f / "modeling_vlmamba.py").unlink(),
                         "modeling_vlmamba.py is missing: config.json's auto_map names it for AutoModel, "
                         "AutoModelForCausalLM, AutoModelForImageTextToText"),
    "code imports vlmamba": (lambda f: (f / "boxes.py").write_text("from vlmamba.models import boxes\n"
                                                                    + (f / "boxes.py").read_text()),
                             "boxes.py (line 1) imports vlmamba.models: remote code must run where vlmamba"),
    "a relative import's file missing": (lambda f: (f / "tasks.py").unlink(), "imports .tasks, and tasks.py is"),
    "code that does not parse": (lambda f: (f / "vision_scan.py").write_text("def (:\n"),
                                 "vision_scan.py does not parse as Python"),
    "no weights": (lambda f: (f / "model.safetensors").unlink(), "no weights: neither model.safetensors"),
    "pickled weights": (lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
                        "the weights are pickled (pytorch_model.bin)"),
    "truncated weights": (lambda f: (f / "model.safetensors").write_bytes((f / "model.safetensors").read_bytes()[:-64]),
                          "model.safetensors is not a readable safetensors file"),
    "no processor config": (lambda f: (f / "processor_config.json").unlink(), "processor_config.json is missing"),
    "no image processor": (lambda f: _edit_json(f / "processor_config.json", lambda c: c.pop("image_processor")),
                           "processor_config.json has no image_processor, and there is no preprocessor_config.json"),
    "no processing file": (lambda f: (f / "processing_vlmamba.py").unlink(), "processing_vlmamba.py is missing"),
    "no tokenizer config": (lambda f: (f / "tokenizer_config.json").unlink(), "tokenizer_config.json is missing"),
    "no vocabulary": (lambda f: (f / "tokenizer.json").unlink(), "the tokenizer's vocabulary is missing"),
    "vocabulary not JSON": (lambda f: (f / "tokenizer.json").write_text("[1,"), "tokenizer.json is not valid JSON"),
    "no card": (lambda f: (f / "README.md").unlink(), "README.md (the model card) is missing"),
    "card YAML broken": (lambda f: (f / "README.md").write_text("---\nlicense: [apache\n---\n# x\n"),
                         "README.md: huggingface_hub.ModelCard cannot parse its metadata"),
    "card without pipeline": (lambda f: (f / "README.md").write_text("---\nlicense: mit\n---\n# x\n"),
                              "README.md: the metadata has no pipeline_tag or library_name"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_missing_or_broken_piece_is_named(folder, breakage):
    # The file checks alone (the fresh process runs only when every file is there, see below).
    breaking, message = BREAKAGES[breakage]
    breaking(folder)
    (problem,) = check_folder(folder, remote_code=False)
    assert message in problem


def test_a_card_for_another_repo_is_named(folder):
    assert check_folder(folder, repo_id=REPO_ID, remote_code=False) == []
    (problem,) = check_folder(folder, repo_id="someone/else", remote_code=False)
    assert problem.startswith("README.md never names someone/else")


@pytest.mark.parametrize("breakage, message", [
    ("import error", "modeling_vlmamba.py (line 1): the folder does not load and run as remote code in a process "
                     "without vlmamba: RuntimeError: a broken modeling file"),
    ("missing weight", "model.safetensors: 1 weights the model expects but the folder lacks (model.connector."),
])
def test_the_fresh_process_names_what_only_loading_shows(folder, breakage, message):
    if breakage == "import error":
        path = folder / "modeling_vlmamba.py"
        path.write_text("raise RuntimeError('a broken modeling file')\n" + path.read_text())
    else:
        _drop_first_weight(folder)
    assert check_folder(folder, remote_code=False) == []
    (problem,) = check_folder(folder)
    assert problem.startswith(message), problem


def test_broken_shards_are_named(sharded, tmp_path):
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    cases = {
        "missing shard": (lambda f: (f / shards[1]).unlink(), f"{shards[1]} is missing: model.safetensors.index.json"),
        "stale single file": (lambda f: shutil.copy(f / shards[0], f / "model.safetensors"),
                              "model.safetensors and model.safetensors.index.json are both present"),
        "leftover shard": (lambda f: shutil.copy(f / shards[0], f / "model-00009-of-00009.safetensors"),
                           "model-00009-of-00009.safetensors is not in model.safetensors.index.json"),
        "shard holding other weights": (lambda f: shutil.copy(f / shards[0], f / shards[1]),
                                        f"{shards[1]} does not hold the weights model.safetensors.index.json maps"),
    }
    for case, (breaking, message) in cases.items():
        copy = tmp_path / case.replace(" ", "_")
        shutil.copytree(sharded, copy)
        breaking(copy)
        problems = check_folder(copy, remote_code=False)
        assert len(problems) == 1 and problems[0].startswith(message), (case, problems)


def test_vlmamba_check(complete, folder, tmp_path, capsys):
    assert main(["check", str(complete), "--repo-id", REPO_ID]) == 0
    assert "ready to push" in capsys.readouterr().out
    (folder / "tokenizer.json").unlink()
    (folder / "README.md").unlink()
    assert main(["check", str(folder)]) == 1
    printed = capsys.readouterr().out
    assert "2 problem(s)" in printed and "tokenizer's vocabulary" in printed and "README.md" in printed
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "vlmamba check: error: " in capsys.readouterr().err


@pytest.fixture
def hub(monkeypatch):
    """HfApi's repo, branch and upload calls, recorded instead of sent."""
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs))
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, repo_id, **kwargs):
        calls.append(("create_branch", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        calls.append(("upload_folder", kwargs.pop("repo_id"), kwargs))
        return CommitInfo(commit_url=f"https://huggingface.co/{REPO_ID}/commit/abc", commit_message="",
                          commit_description="", oid="abc", pr_url=None)

    for name, method in (("create_repo", create_repo), ("create_branch", create_branch),
                         ("upload_folder", upload_folder)):
        monkeypatch.setattr(HfApi, name, method)
    return calls


def test_push_uploads_a_complete_folder(complete, hub, capsys):
    code = main(["push", str(complete), REPO_ID, "--private", "--revision", "dev", "--commit-message", "First",
                 "--exclude", "*.png", "--exclude", "checkpoint-*"])
    assert code == 0
    assert hub == [
        ("create_repo", REPO_ID, {"private": True, "repo_type": "model", "exist_ok": True}),
        ("create_branch", REPO_ID, {"branch": "dev", "repo_type": "model", "exist_ok": True}),
        ("upload_folder", REPO_ID, {"folder_path": complete, "repo_type": "model", "revision": "dev",
                                    "commit_message": "First", "commit_description": None, "create_pr": False,
                                    "ignore_patterns": ["*.png", "checkpoint-*"]}),
    ]
    assert capsys.readouterr().out.strip() == f"Pushed {complete} to {REPO_ID}: https://huggingface.co/{REPO_ID}/commit/abc"


def test_push_defaults_to_main_and_a_default_message(complete, hub, monkeypatch):
    # The check itself is tested above; here only what push sends.
    monkeypatch.setattr("vlmamba.hub.check_folder", lambda folder, repo_id: [])
    assert main(["push", str(complete), REPO_ID, "--create-pr"]) == 0
    assert [call[0] for call in hub] == ["create_repo", "upload_folder"]
    assert hub[0][2]["private"] is None
    assert hub[1][2]["revision"] is None and hub[1][2]["create_pr"] is True
    assert hub[1][2]["commit_message"] == f"Upload {complete.name} with vlmamba"


def test_push_refuses_an_incomplete_folder_unless_forced(folder, hub, capsys, caplog):
    (folder / "model.safetensors").unlink()
    (folder / "README.md").unlink()
    assert main(["push", str(folder), REPO_ID]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"vlmamba push: error: {folder} is not ready to push to {REPO_ID} (2 problem(s))")
    assert "no weights" in error and "README.md (the model card) is missing" in error and "--force" in error
    assert hub == []
    assert main(["push", str(folder), REPO_ID, "--force"]) == 0
    assert [call[0] for call in hub] == ["create_repo", "upload_folder"]
