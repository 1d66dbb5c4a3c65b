"""The tiny Qwen2.5-VL stand-in: real vocabulary and protocol (tokenizer, chat template, processor, config),
determinism, trainability."""

from __future__ import annotations

import hashlib
import json
import shutil
import unicodedata
from pathlib import Path

import pytest

from poemlib.config import RESOURCES_DIR, SAMPLE_DIR, vision_budget

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tiktoken = pytest.importorskip("tiktoken")

# Qwen2.5-VL's tokenizer_config.json: added tokens and their ids.
QWEN2_5_VL_ADDED_TOKENS = {
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647, "<|box_start|>": 151648, "<|box_end|>": 151649, "<|quad_start|>": 151650,
    "<|quad_end|>": 151651, "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656, "<tool_call>": 151657, "</tool_call>": 151658,
    "<|fim_prefix|>": 151659, "<|fim_middle|>": 151660, "<|fim_suffix|>": 151661, "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663, "<|file_sep|>": 151664,
}
QWEN2_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

HANDWRITTEN_TEXTS = [
    "龘", "𠀀", "龘𠀀𪚥", "鬱鬱蔥蔥", "𠮷野家", "𡘙𢀖", "㐀㐁", "〇", "々", "ゑ", "한국어 시", "Ελληνικά", "Привет, мир!",
    "🌕", "🌕🎑🏮", "👨‍👩‍👧‍👦 family", "🇨🇳🇯🇵", "a😀b", "✨ 月下独酌 ✨", "♪♫", "①②③", "Ⅻ", "½ ¾", "°C",
    "Hello, world!", "It's a moonlit night, isn't it? We'll see; they'd agree.", "I'M SHOUTING", "  leading spaces",
    "trailing spaces   ", "tabs\tand\nnewlines\r\n", "\n\n\n", " ", "", "1234567890", "3.14159", "2026-12-01T21:43:52Z",
    "snake_case_name = value", "def f(x):\n    return x ** 2\n", "https://example.org/a?b=c&d=e", "C:\\Users\\poet",
    '{"create_condition": false, "poem_type": null, "poem_title": null}', '{"a": [1, 2.5, true, null], "b": {"c": "d"}}',
    '{"poem_content": "\\u5e8a\\u524d\\u660e\\u6708\\u5149"}', "```json\n{}\n```", "<b>bold</b> & <i>it</i>",
    "café naïve résumé", "Ａ全角ＡＢＣ１２３", "平水韵·下平七阳", "押韵：东、同、中。", "「引号」『书名』《诗经》〈小雅〉",
    "床前明月光，疑是地上霜。", "春眠不觉晓，\n处处闻啼鸟。", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "大江东去，浪淘尽，千古风流人物。", "寻寻觅觅，冷冷清清，凄凄惨惨戚戚。", "明月几时有？把酒问青天。", "知否？知否？应是绿肥红瘦。",
    "窗含西岭千秋雪，门泊东吴万里船。", "仄仄平平仄，平平仄仄平。", "【七言绝句】", "……——～", "…", "——",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _text_corpus() -> list[str]:
    """A few hundred strings: the sample annotations (whole JSON lines, fields, poem lines), prompt lines, handwritten."""
    texts = list(HANDWRITTEN_TEXTS)
    for line in (SAMPLE_DIR / "annotations.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        texts += [line, json.dumps(record, ensure_ascii=False), json.dumps(record["annotation"], ensure_ascii=False, indent=2)]
        fields = [v for v in record["annotation"].values() if isinstance(v, str)]
        texts += fields + [poem_line for field in fields for poem_line in field.splitlines()]
    for prompt in sorted((RESOURCES_DIR / "prompts").glob("*.md")):
        texts += [line for line in prompt.read_text(encoding="utf-8").splitlines() if line.strip()][:60]
    return texts


@pytest.fixture(scope="module")
def processor(tiny_qwen_dir: Path):
    return transformers.AutoProcessor.from_pretrained(tiny_qwen_dir)


@pytest.fixture(scope="module")
def model(tiny_qwen_dir: Path):
    return transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir).eval()


@pytest.fixture(scope="module")
def reference_encoding():
    """tiktoken over the same qwen.tiktoken ranks and Qwen2's pattern: what the tokenizer must reproduce."""
    from tiktoken.load import load_tiktoken_bpe

    from poemlib.offline.qwen_vocab import qwen_ranks_path

    ranks = load_tiktoken_bpe(str(qwen_ranks_path()))
    return tiktoken.Encoding("qwen2-reference", pat_str=QWEN2_PATTERN, mergeable_ranks=ranks, special_tokens={})


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


def test_loads_like_the_real_model_with_the_real_vocab_size(tiny_qwen_dir: Path, model) -> None:
    from poemlib.offline.tiny_qwen import MAX_PARAMETERS

    auto = transformers.AutoModelForImageTextToText.from_pretrained(tiny_qwen_dir)
    assert type(auto).__name__ == "Qwen2_5_VLForConditionalGeneration"
    text = model.config.text_config
    assert text.vocab_size == 151936  # Qwen2.5-VL-3B's embedding rows
    embedding = model.get_input_embeddings().weight
    assert tuple(embedding.shape) == (151936, text.hidden_size)
    lm_head = model.get_output_embeddings().weight
    assert lm_head.shape == embedding.shape and lm_head.data_ptr() != embedding.data_ptr()  # untied, as in the 7B model
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params <= MAX_PARAMETERS
    assert n_params - 2 * embedding.numel() < 1_000_000  # the rest of the network stays tiny
    info = json.loads((tiny_qwen_dir / "poemlib_build.json").read_text())
    assert info["parameters"] == n_params
    assert sum(text.rope_parameters["mrope_section"]) == text.hidden_size // text.num_attention_heads // 2
    vision = model.config.vision_config
    assert vision.out_hidden_size == text.hidden_size
    assert all(0 <= i < vision.depth for i in vision.fullatt_block_indexes)


def test_special_tokens_have_qwen2_5_vl_ids(tiny_qwen_dir: Path, processor, model) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(tiny_qwen_dir)
    assert type(tok).__name__ == "Qwen2Tokenizer" and type(processor.tokenizer).__name__ == "Qwen2Tokenizer"
    assert len(tok) == 151665
    assert {t: tok.convert_tokens_to_ids(t) for t in QWEN2_5_VL_ADDED_TOKENS} == QWEN2_5_VL_ADDED_TOKENS
    for token, token_id in QWEN2_5_VL_ADDED_TOKENS.items():
        assert tok.encode(token, add_special_tokens=False) == [token_id], token
    special = {t for t, i in QWEN2_5_VL_ADDED_TOKENS.items() if i <= 151656}
    assert set(tok.all_special_tokens) == special
    ids = QWEN2_5_VL_ADDED_TOKENS
    cfg = model.config
    assert cfg.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert cfg.video_token_id == ids["<|video_pad|>"] == processor.video_token_id
    assert cfg.vision_start_token_id == ids["<|vision_start|>"] and cfg.vision_end_token_id == ids["<|vision_end|>"]
    assert (cfg.text_config.eos_token_id, cfg.text_config.pad_token_id) == (ids["<|im_end|>"], ids["<|endoftext|>"])
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.bos_token is None
    gen = model.generation_config
    assert list(gen.eos_token_id) == [ids["<|im_end|>"], ids["<|endoftext|>"]]
    assert gen.pad_token_id == ids["<|endoftext|>"] and gen.bos_token_id is None and not gen.do_sample


def test_ids_equal_tiktoken_with_the_same_ranks(processor, reference_encoding) -> None:
    tok = processor.tokenizer  # as loaded from disk
    texts = _text_corpus()
    assert len(texts) >= 300
    mismatches = []
    for text in texts:
        ours = tok.encode(text, add_special_tokens=False)
        if ours != reference_encoding.encode(unicodedata.normalize("NFC", text)):
            mismatches.append(text)
        assert tok.decode(ours) == unicodedata.normalize("NFC", text)
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ from tiktoken, e.g. {mismatches[:3]}"
    # Real Qwen merges: a classical line takes fewer tokens than characters.
    assert len(tok.encode("白日依山尽，黄河入海流。", add_special_tokens=False)) < 12


def test_input_is_nfc_normalised(processor) -> None:
    tok = processor.tokenizer
    composed = "café 茶"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert tok.encode(decomposed, add_special_tokens=False) == tok.encode(composed, add_special_tokens=False)


def test_vocabulary_is_qwens_with_many_multi_character_chinese_tokens(reference_encoding) -> None:
    """The property the 格律 constraint engine relies on: thousands of tokens spell 2-4 Chinese characters."""
    assert reference_encoding.n_vocab == 151643
    cjk = []
    for token_id in range(reference_encoding.n_vocab):
        text = reference_encoding.decode_single_token_bytes(token_id).decode("utf-8", errors="replace")
        if text and all("\u4e00" <= ch <= "\u9fff" for ch in text):
            cjk.append(text)
    assert len(cjk) > 20_000
    assert sum(2 <= len(t) <= 4 for t in cjk) > len(cjk) / 2


def test_a_bad_rank_file_is_named(tmp_path: Path) -> None:
    from poemlib.offline.qwen_vocab import QwenRanksError, load_qwen_ranks

    bad = tmp_path / "qwen.tiktoken"
    bad.write_text("IQ== 0\nIg== 1\n", encoding="utf-8")
    with pytest.raises(QwenRanksError, match=r"qwen\.tiktoken.*151642"):
        load_qwen_ranks(bad)
    bad.write_text("not base64 at all\n", encoding="utf-8")
    with pytest.raises(QwenRanksError, match="qwen.tiktoken"):
        load_qwen_ranks(bad)


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

    again = build_tiny_qwen(tmp_path / "again", seed=0)
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


def test_lora_memorises_a_few_samples(tiny_qwen_dir: Path, processor) -> None:
    """The output-gain fix: LoRA on the language model alone gets far below the unigram floor."""
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
    try:
        for _ in range(300):
            loss = peft_model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            if losses[-1] < 0.3:  # near the floor of these rows (ambiguous first poem token); Adam at 5e-3 can spike later
                break
    finally:
        torch.set_num_threads(threads)
    assert losses[-1] < 0.5, f"LoRA could not fit 6 samples: loss {losses[0]:.2f} → {losses[-1]:.2f} in {len(losses)} steps"


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
