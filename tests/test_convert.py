"""Converting the paper's published checkpoints and raw mamba-ssm language models, checked against the reference's
forward written out here (LayerNorm with bias, the tied head, the image block's placement, the selective scan)."""

import json
import math

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedTokenizerFast,
)

from tests.tiny import make_tokenizer
from vlmamba.convert import ConversionError, convert_checkpoint, reference_vision_config
from vlmamba.experiments.demo import demo_image
from vlmamba.toy import vision_configs


WIDTH, LAYERS, STATE, VOCAB = 32, 2, 16, 50280
INNER, RANK = 2 * WIDTH, math.ceil(WIDTH / 16)
TOWER = {"img_size": 28, "patch_size": 14, "embed_dim": 32, "depth": 2, "num_heads": 2}
VISION_CONFIG = vision_configs(28, 14)["timm"]
# The reference's image block for a 2x2 patch grid: `###`, a row of placeholders (-200), `&&`, the last row, `###`.
REFERENCE_BLOCK = [4118, -200, -200, 10494, -200, -200, 4118]
TEXT = [302, 77, 9, 1500]


def _random(generator, *shape, scale=0.3):
    return torch.randn(*shape, generator=generator) * scale


def mamba_backbone(seed=0, layernorm=True) -> dict:
    """mamba-ssm's `backbone.*` tensors of a tiny Mamba (v1) language model, norms with a bias when `layernorm`."""
    g = torch.Generator().manual_seed(seed)
    state = {"backbone.embedding.weight": _random(g, VOCAB, WIDTH, scale=1.0)}
    norms = [f"backbone.layers.{i}.norm" for i in range(LAYERS)] + ["backbone.norm_f"]
    for i in range(LAYERS):
        p = f"backbone.layers.{i}.mixer."
        state.update({
            p + "in_proj.weight": _random(g, 2 * INNER, WIDTH),
            p + "conv1d.weight": _random(g, INNER, 1, 4),
            p + "conv1d.bias": _random(g, INNER),
            p + "x_proj.weight": _random(g, RANK + 2 * STATE, INNER),
            p + "dt_proj.weight": _random(g, INNER, RANK),
            p + "dt_proj.bias": _random(g, INNER) - 2.0,
            p + "A_log": torch.log(torch.arange(1, STATE + 1.0)).repeat(INNER, 1) + _random(g, INNER, STATE, scale=0.1),
            p + "D": 1.0 + _random(g, INNER, scale=0.1),
            p + "out_proj.weight": _random(g, WIDTH, INNER),
        })
    for norm in norms:
        state[norm + ".weight"] = 1.0 + _random(g, WIDTH, scale=0.2)
        if layernorm:
            state[norm + ".bias"] = _random(g, WIDTH, scale=0.2)
    return state


def reference_tower(seed=0):
    """The reference's tower: timm's EVA-02 without a head (tiny)."""
    torch.manual_seed(seed)
    return timm.create_model("eva02_large_patch14_clip_336", pretrained=False, num_classes=0, **TOWER).eval()


def connector_weights(seed=0, width=WIDTH) -> dict:
    g = torch.Generator().manual_seed(seed + 1)
    return {
        "vision_embed_tokens.0.weight": _random(g, width, TOWER["embed_dim"]),
        "vision_embed_tokens.0.bias": _random(g, width),
        "vision_embed_tokens.2.weight": _random(g, width, width),
        "vision_embed_tokens.2.bias": _random(g, width),
    }


def reference_mamba_vl_state(seed=0) -> dict:
    state = mamba_backbone(seed)
    state.update(connector_weights(seed))
    state.update({"vision_encoder." + key: value for key, value in reference_tower(seed).state_dict().items()})
    return {key: value.to(torch.bfloat16) for key, value in state.items()}


def write_checkpoint(folder, state: dict, config: dict | None, shards: int = 2):
    """Writes `state` as the published repos are: bf16 safetensors shards without an index, and a config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    for index in range(shards):
        part = {key: state[key].contiguous() for key in keys[index::shards]}
        save_file(part, folder / f"model-{index + 1:05d}-of-{shards:05d}.safetensors", metadata={"format": "pt"})
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


MAMBA_VL_CONFIG = {
    "architectures": ["VLMambaCLIPLMHeadModel"], "d_model": WIDTH, "hidden_size": WIDTH, "n_layer": LAYERS,
    "vocab_size": VOCAB, "pad_vocab_size_multiple": 8, "ssm_cfg": {}, "rms_norm": True, "fused_add_norm": True,
    "residual_in_fp32": True, "image_size": 28, "vision_encoder_name": "timm/eva02_large_patch14_clip_336",
    "select_layer": -2, "select_feature": "patch", "torch_dtype": "bfloat16",
}


def _mixer(w: dict, p: str, h: torch.Tensor) -> torch.Tensor:
    """mamba-ssm's Mamba mixer, the selective scan run step by step."""
    x, z = (h @ w[p + "in_proj.weight"].T).chunk(2, dim=-1)
    kernel = w[p + "conv1d.weight"]
    x = F.conv1d(F.pad(x.transpose(1, 2), (kernel.shape[-1] - 1, 0)), kernel, w[p + "conv1d.bias"], groups=INNER)
    x = F.silu(x.transpose(1, 2))
    dt, b, c = (x @ w[p + "x_proj.weight"].T).split([RANK, STATE, STATE], dim=-1)
    dt = F.softplus(dt @ w[p + "dt_proj.weight"].T + w[p + "dt_proj.bias"])
    a = -torch.exp(w[p + "A_log"])
    state = torch.zeros(h.shape[0], INNER, STATE, dtype=h.dtype)
    outputs = []
    for t in range(h.shape[1]):
        state = torch.exp(dt[:, t, :, None] * a) * state + dt[:, t, :, None] * b[:, t, None, :] * x[:, t, :, None]
        outputs.append((state * c[:, t, None, :]).sum(-1) + w[p + "D"] * x[:, t])
    return (torch.stack(outputs, 1) * F.silu(z)) @ w[p + "out_proj.weight"].T


def _norm(w: dict, name: str, h: torch.Tensor) -> torch.Tensor:
    if name + ".bias" in w:
        return F.layer_norm(h, (WIDTH,), w[name + ".weight"], w[name + ".bias"], eps=1e-5)
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5) * w[name + ".weight"]


def reference_mamba_logits(w: dict, embeddings: torch.Tensor) -> torch.Tensor:
    """Pre-norm blocks `h + mixer(norm(h))`, the final norm, and the head tied to the embedding."""
    h = embeddings
    for i in range(LAYERS):
        h = h + _mixer(w, f"backbone.layers.{i}.mixer.", _norm(w, f"backbone.layers.{i}.norm", h))
    return _norm(w, "backbone.norm_f", h) @ w["backbone.embedding.weight"].T


def reference_embeddings(w: dict, embedding: torch.Tensor, tower, ids: torch.Tensor, pixels: torch.Tensor):
    """The reference's merge: ids < 0 looked up as 0, then overwritten in order by the projected patch features (the
    tower's final normed output without the class token, through Linear -> GELU -> Linear)."""
    embeddings = embedding[ids.clamp(min=0)].clone()
    features = tower.forward_features(pixels)[:, 1:]
    hidden = F.gelu(features @ w["vision_embed_tokens.0.weight"].T + w["vision_embed_tokens.0.bias"])
    projected = hidden @ w["vision_embed_tokens.2.weight"].T + w["vision_embed_tokens.2.bias"]
    embeddings[ids < 0] = projected.reshape(-1, projected.shape[-1]).to(embeddings.dtype)
    return embeddings


def _as_float(state: dict, dtype=torch.float64) -> dict:
    return {key: value.to(dtype) for key, value in state.items()}


def _ours(ids: list[int], image_token_id: int) -> torch.Tensor:
    return torch.tensor([[image_token_id if i == -200 else i for i in ids]])


@pytest.mark.parametrize("duplicate_head", [False, True], ids=["finetuned", "pretrained"])
def test_mamba_vl_checkpoint_computes_the_reference_forward(tmp_path, duplicate_head):
    state = reference_mamba_vl_state()
    if duplicate_head:  # the stage-1 (ZeRO-2) uploads keep a second copy of the tied head
        state["lm_head.weight"] = state["backbone.embedding.weight"].clone()
    source = write_checkpoint(tmp_path / "source", state, MAMBA_VL_CONFIG)
    convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG)

    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "converted", dtype=torch.float32).eval()
    config = model.config
    assert (config.norm_type, config.text_config.residual_in_fp32, config.tie_word_embeddings) == ("layernorm", False,
                                                                                                   True)
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    assert config.image_block_ids() == [config.image_token_id if i == -200 else i for i in REFERENCE_BLOCK]
    saved = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert saved["dtype"] == "bfloat16"

    weights = _as_float(state)
    tower = reference_tower()
    tower.load_state_dict({key.removeprefix("vision_encoder."): value.float() for key, value in state.items()
                           if key.startswith("vision_encoder.")})
    tower = tower.double()
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([REFERENCE_BLOCK + TEXT])
    with torch.no_grad():
        expected = reference_mamba_logits(
            weights, reference_embeddings(weights, weights["backbone.embedding.weight"], tower, ids, pixels.double())
        )
        logits = model(input_ids=_ours(REFERENCE_BLOCK + TEXT, config.image_token_id), pixel_values=pixels).logits
    torch.testing.assert_close(logits.double(), expected, rtol=1e-4, atol=1e-4)
    # The norms' biases matter: the same weights through RMSNorm give other logits.
    rms = {key: value for key, value in weights.items() if not key.endswith("norm.bias") and "norm_f.bias" not in key}
    with torch.no_grad():
        other = reference_mamba_logits(
            rms, reference_embeddings(weights, weights["backbone.embedding.weight"], tower, ids, pixels.double())
        )
    assert (other - expected).abs().max() > 1e-2


def _gpt_neox_reference(vocab=50304):
    torch.manual_seed(0)
    config = GPTNeoXConfig(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=4,
                           intermediate_size=4 * WIDTH, vocab_size=vocab, rotary_pct=0.25, max_position_embeddings=64,
                           tie_word_embeddings=False, attn_implementation="eager")
    return config, GPTNeoXForCausalLM(config).eval()


def _reference_pythia_state(language) -> dict:
    """The reference's Pythia-VL keys: `gpt_neox.*`, the head as `embed_out` (transformers 4's name), the connector
    and the tower."""
    state = {("embed_out.weight" if key == "lm_head.weight" else key): value
             for key, value in language.state_dict().items()}
    state.update(connector_weights())
    state.update({"vision_encoder." + key: value for key, value in reference_tower().state_dict().items()})
    return state


def test_pythia_vl_checkpoint_computes_the_reference_forward(tmp_path):
    text_config, language = _gpt_neox_reference()
    state = _reference_pythia_state(language)
    state = {key: value.to(torch.bfloat16) for key, value in state.items()}
    config = {**text_config.to_dict(), "architectures": ["VLCLIPGPTNeoXForCausalLM"], "image_size": 28,
              "vision_encoder_name": "timm/eva02_large_patch14_clip_336", "select_layer": -2, "select_feature": "patch"}
    source = write_checkpoint(tmp_path / "source", state, config, shards=1)
    convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG)
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "converted", dtype=torch.float32).eval()
    assert model.config.model_type == "pythia_vl" and not model.config.tie_word_embeddings

    # The reference: transformers' GPT-NeoX with its `embed_out`, fed the reference's merged embeddings.
    language.load_state_dict({key: state["embed_out.weight" if key == "lm_head.weight" else key].float()
                              for key in language.state_dict()})
    tower = reference_tower()
    tower.load_state_dict({key.removeprefix("vision_encoder."): value.float() for key, value in state.items()
                           if key.startswith("vision_encoder.")})
    weights = _as_float(state, torch.float32)
    pixels = torch.randn(1, 3, 28, 28, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([TEXT[:2] + REFERENCE_BLOCK + TEXT])  # the task-aware layout: text before the image
    with torch.no_grad():
        embeddings = reference_embeddings(weights, weights["gpt_neox.embed_in.weight"], tower, ids, pixels)
        expected = language(inputs_embeds=embeddings).logits
        logits = model(input_ids=_ours(TEXT[:2] + REFERENCE_BLOCK + TEXT, model.config.image_token_id),
                       pixel_values=pixels).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_pythia_vl_checkpoint_without_config_takes_the_base_models(tmp_path):
    text_config, language = _gpt_neox_reference()
    state = _reference_pythia_state(language)
    source = write_checkpoint(tmp_path / "source", state, None, shards=1)
    with pytest.raises(ConversionError, match="no config.json.*base_model"):
        convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG)
    text_config.save_pretrained(tmp_path / "base")
    convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG, base_model=str(tmp_path / "base"))
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "converted")
    assert model.config.text_config.num_attention_heads == 4
    torch.testing.assert_close(model.lm_head.weight, state["embed_out.weight"])


def gpt_neox_like_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE vocabulary of GPT-NeoX-20B's size in which `###` is 4118 and `&&` 10494, as in the real one."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<|endoftext|>": 0}
    for piece in sorted(alphabet):
        vocab[piece] = len(vocab)
    special = {4000: "##", 4118: "###", 10494: "&&"}
    filler = 0
    while len(vocab) < 50277:
        index = len(vocab)
        if index in special:
            vocab[special[index]] = index
        else:
            vocab[f"<unused{filler}>"] = index
            filler += 1
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[("#", "#"), ("##", "#"), ("&", "&")]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>")


def test_converted_folder_with_a_tokenizer_generates_from_the_reference_ids(tmp_path):
    tokenizer = gpt_neox_like_tokenizer()
    assert tokenizer("###")["input_ids"] == [4118] and tokenizer("&&")["input_ids"] == [10494]
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    source = write_checkpoint(tmp_path / "source", reference_mamba_vl_state(), MAMBA_VL_CONFIG)
    convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG, tokenizer=tmp_path / "tokenizer")

    processor = AutoProcessor.from_pretrained(tmp_path / "converted")
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == 50277
    assert processor.tokenizer.pad_token_id == processor.tokenizer.eos_token_id == 0
    inputs = processor(images=[demo_image()], text=["<image>"], return_tensors="pt")
    assert inputs["input_ids"][0, :7].tolist() == [50277 if i == -200 else i for i in REFERENCE_BLOCK]
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "converted").eval()
    output = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert output.shape[1] <= inputs["input_ids"].shape[1] + 3

    # A tokenizer whose pieces are not the ids the model was trained with is refused by name.
    make_tokenizer().save_pretrained(tmp_path / "other")
    with pytest.raises(ConversionError, match="image_begin_token_id: the tokenizer gives"):
        convert_checkpoint(source, tmp_path / "again", vision_config=VISION_CONFIG, tokenizer=tmp_path / "other")


def test_raw_mamba_ssm_language_model_converts_to_transformers_mamba(tmp_path):
    state = mamba_backbone(seed=1, layernorm=False)
    state["lm_head.weight"] = state["backbone.embedding.weight"]
    source = tmp_path / "mamba-ssm"
    source.mkdir()
    torch.save(state, source / "pytorch_model.bin")
    (source / "config.json").write_text(json.dumps({
        "d_model": WIDTH, "n_layer": LAYERS, "vocab_size": 50277, "ssm_cfg": {}, "rms_norm": True,
        "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8,
    }))
    from vlmamba.cli import main

    assert main(["convert", str(source), str(tmp_path / "converted"), "--dtype", "float32"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "converted").eval()
    assert model.dtype == torch.float32
    assert model.config.model_type == "mamba" and model.config.vocab_size == VOCAB
    ids = torch.tensor([TEXT + TEXT[::-1]])
    weights = _as_float(state)
    with torch.no_grad():
        expected = reference_mamba_logits(weights, weights["backbone.embedding.weight"][ids])
        torch.testing.assert_close(model(ids).logits.double(), expected, rtol=1e-4, atol=1e-4)

    (source / "config.json").write_text(json.dumps({"d_model": WIDTH, "n_layer": LAYERS, "rms_norm": False}))
    with pytest.raises(ConversionError, match="rms_norm=false"):
        convert_checkpoint(source, tmp_path / "again")
    (source / "config.json").write_text(json.dumps({"d_model": 64, "n_layer": LAYERS}))
    with pytest.raises(ConversionError, match="hidden_size=64, the weights have 32"):
        convert_checkpoint(source, tmp_path / "again")


def _broken(state: dict, change: str) -> dict:
    state = dict(state)
    if change == "unknown key":
        state["backbone.layers.0.mixer.gate.weight"] = torch.zeros(2)
    elif change == "missing key":
        del state["vision_embed_tokens.2.bias"]
    elif change == "other head":
        state["lm_head.weight"] = state["backbone.embedding.weight"] + 1
    elif change == "wrong shape":
        state["vision_embed_tokens.2.bias"] = torch.zeros(WIDTH + 1, dtype=torch.bfloat16)
    return state


@pytest.mark.parametrize("change, message", [
    ("unknown key", r"checkpoint's \['backbone.layers.0.mixer.gate.weight'\] have no place"),
    ("missing key", r"model's \['model.connector.linear_2.bias'\] are not in the checkpoint"),
    ("other head", "lm_head.weight differs from backbone.embedding.weight"),
    ("wrong shape", r"vision_embed_tokens.2.bias has shape \(33,\), the model's model.connector.linear_2.bias \(32,\)"),
])
def test_weights_that_do_not_fit_are_named(tmp_path, change, message):
    source = write_checkpoint(tmp_path / "source", _broken(reference_mamba_vl_state(), change), MAMBA_VL_CONFIG)
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(source, tmp_path / "converted", vision_config=VISION_CONFIG)
    assert not (tmp_path / "converted").exists()


def test_bad_sources_are_named(tmp_path):
    source = write_checkpoint(tmp_path / "source", reference_mamba_vl_state(), MAMBA_VL_CONFIG)
    shard = source / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(ConversionError, match="model-00002-of-00002.safetensors"):
        convert_checkpoint(source, tmp_path / "converted")
    other = write_checkpoint(tmp_path / "other", {"encoder.weight": torch.zeros(2)}, None, shards=1)
    with pytest.raises(ConversionError, match="Not a checkpoint this converter knows"):
        convert_checkpoint(other, tmp_path / "converted")
    with pytest.raises(ConversionError, match="No weights"):
        convert_checkpoint(tmp_path, tmp_path / "converted")


def test_reference_vision_config_is_eva02_large_at_the_configured_size():
    assert reference_vision_config(None) == {
        "model_type": "timm_wrapper", "architecture": "eva02_large_patch14_clip_336", "do_pooling": False,
        "model_args": {"img_size": 336},
    }
    assert reference_vision_config({"vision_encoder_name": "timm/eva02_large_patch14_clip_336",
                                    "image_size": 480})["model_args"] == {"img_size": 480}
    with pytest.raises(ConversionError, match="only EVA towers"):
        reference_vision_config({"vision_encoder_name": "openai/clip-vit-large-patch14-336"})


def test_published_scores_are_the_table_of_the_results_page():
    from pathlib import Path

    from vlmamba.evaluation.published import MODEL_NAMES, PAPER_SCORES

    lines = (Path(__file__).parents[1] / "docs" / "results.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | `coco`"))
    header = [cell.strip().strip("`") for cell in lines[start].strip("|").split("|")][1:]
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = dict(zip(header, map(float, cells[1:]), strict=True))
    assert {MODEL_NAMES[repo]: scores for repo, scores in PAPER_SCORES.items()} == table


def test_cli_converts_a_published_checkpoint_into_a_folder_ready_to_push(tmp_path, capsys):
    from huggingface_hub import ModelCard

    from vlmamba.cli import main
    from vlmamba.hub import check_folder

    gpt_neox_like_tokenizer().save_pretrained(tmp_path / "tokenizer")
    # A local copy of a published repo, under the repo's name; the tiny tower needs its config given.
    source = write_checkpoint(tmp_path / "finetuned_mambavl_790m", reference_mamba_vl_state(), MAMBA_VL_CONFIG)
    destination = tmp_path / "converted"
    convert_checkpoint(source, destination, tokenizer=tmp_path / "tokenizer", vision_config=VISION_CONFIG,
                       repo_id="someone/mambavl-790m")
    card = ModelCard.load(destination / "README.md")
    assert card.data.pipeline_tag == "image-text-to-text" and card.data.base_model == ["gpantaz/finetuned_mambavl_790m"]
    assert "2409.05395" in card.text and "Mamba-VL-790M" in card.text
    coco = [result for result in card.data.eval_results if result.dataset_type == "coco"]
    assert [result.metric_value for result in coco] == [133.81]
    assert check_folder(destination, repo_id="someone/mambavl-790m") == []

    # The command line: errors are one line and exit 2.
    assert main(["convert", str(tmp_path / "nothing-here"), str(tmp_path / "out")]) == 2
    assert "nothing-here" in capsys.readouterr().err
