"""The tiny Qwen2.5-VL stand-in: real protocol (tokenizer, chat template, processor, config), determinism, trainability."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest

from poemlib.config import SAMPLE_DIR, vision_budget

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir: Path):
    return transformers.AutoProcessor.from_pretrained(tiny_qwen_dir)


@pytest.fixture(scope="module")
def model(tiny_qwen_dir: Path):
    return transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir).eval()


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    """A real sample photo when the checkout has them, else a small generated JPEG."""
    samples = sorted(SAMPLE_DIR.glob("*.jpg")) if SAMPLE_DIR.is_dir() else []
    if samples:
        return samples[0]
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(path, quality=90)
    return path


def test_directory_has_the_real_model_files(tiny_qwen_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "processor_config.json", "poemlib_build.json"):
        assert (tiny_qwen_dir / name).is_file(), name
    config = json.loads((tiny_qwen_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl" and config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]


def test_loads_like_the_real_model_and_is_tiny(tiny_qwen_dir: Path, model) -> None:
    auto = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir)
    assert type(auto).__name__ == "Qwen2_5_VLForConditionalGeneration"
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params <= 5_000_000
    info = json.loads((tiny_qwen_dir / "poemlib_build.json").read_text())
    assert info["parameters"] == n_params
    text = model.config.text_config
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    vision = model.config.vision_config
    assert vision.out_hidden_size == text.hidden_size
    assert all(0 <= i < vision.depth for i in vision.fullatt_block_indexes)


def test_special_token_ids_match_config(tiny_qwen_dir: Path, processor, model) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_qwen_dir)
    assert type(tok).__name__ == "Qwen2Tokenizer" and type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")}
    # Qwen's order: contiguous added tokens right after the BPE vocabulary.
    order = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
    first = tok.convert_tokens_to_ids(order[0])
    assert [tok.convert_tokens_to_ids(t) for t in order] == list(range(first, first + len(order)))
    for token, token_id in ids.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
    cfg = model.config
    assert cfg.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert cfg.video_token_id == ids["<|video_pad|>"] == processor.video_token_id
    assert cfg.vision_start_token_id == ids["<|vision_start|>"]
    assert cfg.vision_end_token_id == ids["<|vision_end|>"]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    assert len(tok) <= cfg.text_config.vocab_size
    gen = model.generation_config
    assert list(gen.eos_token_id) == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert gen.pad_token_id == ids["<|endoftext|>"] and gen.bos_token_id is None and not gen.do_sample


EXPECTED_CHAT = (
    "<|im_start|>system\n你是一位古典诗人。<|im_end|>\n"
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>为这张照片写一首五言绝句。<|im_end|>\n"
    "<|im_start|>assistant\n"
    '{"poem_type": "五言绝句", "poem_title": "静夜思"}<|im_end|>\n'
)


def test_chat_template_renders_like_qwen2_5_vl_instruct(tiny_qwen_dir: Path, processor) -> None:
    messages = [
        {"role": "system", "content": "你是一位古典诗人。"},
        {"role": "user", "content": [{"type": "image", "image": "photo.jpg"}, {"type": "text", "text": "为这张照片写一首五言绝句。"}]},
        {"role": "assistant", "content": '{"poem_type": "五言绝句", "poem_title": "静夜思"}'},
    ]
    tok = transformers.AutoTokenizer.from_pretrained(tiny_qwen_dir)
    assert processor.apply_chat_template(messages, tokenize=False) == EXPECTED_CHAT
    assert tok.apply_chat_template(messages, tokenize=False) == EXPECTED_CHAT
    # No system message: Qwen's default one; add_generation_prompt opens the assistant turn.
    user_only = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "写诗"}]}]
    assert processor.apply_chat_template(user_only, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>写诗<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.apply_chat_template([{"role": "user", "content": "你好"}], tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
    )


@pytest.mark.parametrize("text", ["龘", "𠀀", "龘𠀀 鬱 🌕", "床前明月光，\n疑是地上霜。", '{"poem_title": "静夜思"}'])
def test_any_character_round_trips(processor, text: str) -> None:
    ids = processor.tokenizer.encode(text, add_special_tokens=False)
    assert ids and processor.tokenizer.decode(ids) == text


def test_pixel_budget_comes_from_configs(processor) -> None:
    from PIL import Image

    budget = vision_budget("tiny")
    ip = processor.image_processor
    assert (ip.size["shortest_edge"], ip.size["longest_edge"]) == (budget["image_min_pixels"], budget["image_max_pixels"])
    out = processor(text=["<|vision_start|><|image_pad|><|vision_end|>"], images=[Image.new("RGB", (1024, 768), "gray")], return_tensors="pt")
    n_visual = int((out["input_ids"] == processor.image_token_id).sum())
    assert n_visual == int(out["image_grid_thw"].prod()) // 4
    assert 0 < n_visual <= budget["image_max_pixels"] // (28 * 28)


def test_generates_from_a_photo_through_qwen_vl_utils(processor, model, photo: Path) -> None:
    from qwen_vl_utils import process_vision_info

    messages = [{"role": "user", "content": [{"type": "image", "image": str(photo)}, {"type": "text", "text": "为这张照片写一首诗。"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    images, videos = process_vision_info(messages)
    inputs = processor(text=[text], images=images, videos=videos, padding=True, return_tensors="pt")
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) <= 64
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8)
    new = out[0, inputs["input_ids"].shape[1] :]
    assert 0 < len(new) <= 8
    assert isinstance(processor.decode(new, skip_special_tokens=True), str)


def test_same_seed_gives_byte_identical_weights(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from poemlib.offline.tiny_qwen import build_tiny_qwen

    started = time.perf_counter()
    again = build_tiny_qwen(tmp_path / "again", seed=0)
    assert time.perf_counter() - started < 30
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert _sha256(again / name) == _sha256(tiny_qwen_dir / name), name
    other = build_tiny_qwen(tmp_path / "other", seed=1)
    assert _sha256(other / "model.safetensors") != _sha256(tiny_qwen_dir / "model.safetensors")
    assert _sha256(other / "tokenizer.json") == _sha256(tiny_qwen_dir / "tokenizer.json")


def test_ensure_builds_only_when_missing_or_stale(tiny_qwen_dir: Path, tmp_path: Path) -> None:
    from poemlib.offline.tiny_qwen import BUILD_INFO_FILE, ensure_tiny_qwen

    target = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_qwen_dir, target)
    weights = target / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_tiny_qwen(target) == target
    assert weights.stat().st_mtime_ns == stamp  # up to date: untouched

    info = json.loads((target / BUILD_INFO_FILE).read_text())
    info["recipe_hash"] = "stale"
    (target / BUILD_INFO_FILE).write_text(json.dumps(info))
    ensure_tiny_qwen(target)
    assert json.loads((target / BUILD_INFO_FILE).read_text())["recipe_hash"] != "stale"
    assert _sha256(weights) == _sha256(tiny_qwen_dir / "model.safetensors")


def test_tokenizer_builds_without_project_texts(monkeypatch) -> None:
    import poemlib.offline.tiny_qwen as tq

    monkeypatch.setattr(tq, "_corpus_files", list)
    assert tq.tokenizer_corpus() == [tq.BUILTIN_CORPUS]
    tok = tq._build_tokenizer(tq.CHAT_TEMPLATE_FILE.read_text(encoding="utf-8"))
    for text in ("龘𠀀", "春眠不觉晓"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") == tok.convert_tokens_to_ids("<|endoftext|>") + 2


def test_lora_memorises_a_few_samples(tiny_qwen_dir: Path, processor) -> None:
    """The output-gain fix: LoRA on the language model alone gets far below the unigram floor (~5)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir)
    poems = ["床前明月光，疑是地上霜。", "春眠不觉晓，处处闻啼鸟。", "白日依山尽，黄河入海流。", "千山鸟飞绝，万径人踪灭。", "空山新雨后，天气晚来秋。", "独在异乡为异客，每逢佳节倍思亲。"]
    texts = [processor.apply_chat_template([{"role": "user", "content": "写诗"}, {"role": "assistant", "content": p}], tokenize=False) for p in poems]
    batch = processor.tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=r"model\.language_model\..*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and immune to a busy shared CPU
    started = time.perf_counter()
    try:
        for _ in range(300):
            loss = peft_model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            if losses[-1] < 0.2:
                break
    finally:
        torch.set_num_threads(threads)
    elapsed = time.perf_counter() - started
    assert losses[-1] < 0.5, f"LoRA could not fit 6 samples: loss {losses[0]:.2f} → {losses[-1]:.2f} in {len(losses)} steps"
    assert elapsed < 60


LLAMAFACTORY_YAML = """\
model_name_or_path: {model}
trust_remote_code: true
image_max_pixels: {max_pixels}
image_min_pixels: {min_pixels}
stage: sft
do_train: true
finetuning_type: lora
lora_target: all
lora_rank: 8
lora_alpha: 16
lora_dropout: 0.0
dataset_dir: {data}
dataset: tiny_sft
template: qwen2_vl
cutoff_len: 1024
overwrite_cache: true
preprocessing_num_workers: 1
dataloader_num_workers: 0
output_dir: {out}
logging_steps: 5
save_strategy: "no"
plot_loss: false
overwrite_output_dir: true
report_to: none
per_device_train_batch_size: 2
gradient_accumulation_steps: 1
learning_rate: 5.0e-3
max_steps: 60
lr_scheduler_type: cosine
bf16: false
fp16: false
use_cpu: true
seed: 0
"""


@pytest.mark.slow
def test_llamafactory_lora_sft_runs_on_the_tiny_model(tiny_qwen_dir: Path, tmp_path: Path, photo: Path) -> None:
    """`llamafactory-cli train` (template qwen2_vl, LoRA, lora_target all) on 6 multimodal records learns them."""
    import os
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("llamafactory-cli")
    if not cli.exists():
        pytest.skip("llamafactory-cli not installed")
    photos = (sorted(SAMPLE_DIR.glob("*.jpg")) if SAMPLE_DIR.is_dir() else [])[:6] or [photo]
    poems = ["床前明月光，疑是地上霜。", "春眠不觉晓，处处闻啼鸟。", "白日依山尽，黄河入海流。", "千山鸟飞绝，万径人踪灭。", "空山新雨后，天气晚来秋。", "独在异乡为异客，每逢佳节倍思亲。"]
    records = [
        {"messages": [{"role": "user", "content": "<image>为这张照片写一首诗。"}, {"role": "assistant", "content": json.dumps({"poem_content": poem}, ensure_ascii=False)}], "images": [str(photos[i % len(photos)])]}
        for i, poem in enumerate(poems)
    ]
    data = tmp_path / "data"
    data.mkdir()
    (data / "tiny_sft.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    info = {"tiny_sft": {"file_name": "tiny_sft.json", "formatting": "sharegpt", "columns": {"messages": "messages", "images": "images"}, "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}
    (data / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    budget = vision_budget("tiny")
    out = tmp_path / "out"
    yaml_path = tmp_path / "train.yaml"
    yaml_path.write_text(LLAMAFACTORY_YAML.format(model=tiny_qwen_dir, data=data, out=out, max_pixels=budget["image_max_pixels"], min_pixels=budget["image_min_pixels"]), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", DISABLE_VERSION_CHECK="1")
    proc = subprocess.run([str(cli), "train", str(yaml_path)], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    losses = [json.loads(line)["loss"] for line in (out / "trainer_log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < 1.0, losses  # the unigram floor of these answers is ~4 nats
    assert (out / "adapter_model.safetensors").is_file()
