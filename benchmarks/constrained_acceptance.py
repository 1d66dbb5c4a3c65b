"""Acceptance of 格律-constrained decoding (issue 13): on the 16 sample photos, for each 近体 form and three 词牌 of
different shape, greedy and three sampling seeds at temperature 1.0, base and LoRA tiny Qwen2.5-VL: the share of
constrained answers that parse and pass form, 平仄 and rhyme by `poemlib.meter.check` (must be 100 %), the
unconstrained pass rate beside it, and whether the 体 the checker picks is the one the constraint followed.

    python benchmarks/constrained_acceptance.py                      # everything; table on stdout, CSV under work/
    python benchmarks/constrained_acceptance.py --forms 五言绝句 如梦令 --seeds 1 --models base

Plain transformers generate() with `build_logits_processor` (no backend in between). One generate() per (model,
form, decoding, constrained or not) with the 16 photos as one batch. A requested form does not offer the unfit
answer here (`--allow-unfit` does), so every constrained answer is a poem that the checker must pass.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (label, poem_type, 词牌): 如梦令 短调 仄韵 with 叠句, 浣溪沙 平韵 双调, 菩萨蛮 换韵 (仄平仄平).
FORMS = (("五言绝句", "五言绝句", None), ("七言绝句", "七言绝句", None), ("五言律诗", "五言律诗", None),
         ("七言律诗", "七言律诗", None), ("如梦令", "词", "如梦令"), ("浣溪沙", "词", "浣溪沙"), ("菩萨蛮", "词", "菩萨蛮"))
EXPLANATION_TOKENS = 24  # room past the constraint's worst case: the explanation may run this long


def load_models(names: list[str]):
    """Processor, tokenizer (left padding) and the requested models: base, and LoRA (trained adapter or random)."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    from poemlib.config import PROJECT_ROOT
    from poemlib.offline.tiny_qwen import ensure_tiny_qwen

    model_dir = ensure_tiny_qwen()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    processor.tokenizer.padding_side = "left"
    models = {}
    if "base" in names:
        models["base"] = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    if "lora" in names:
        from peft import LoraConfig, PeftModel, get_peft_model

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir))
        adapter = PROJECT_ROOT / "work" / "train" / "tiny_lora"
        if (adapter / "adapter_config.json").is_file():
            models["lora"] = PeftModel.from_pretrained(model, str(adapter)).eval()
            print(f"LoRA: trained adapter {adapter}", flush=True)
        else:
            torch.manual_seed(0)
            config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False,
                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
            models["lora"] = get_peft_model(model, config).eval()
            print("LoRA: random adapter (no work/train/tiny_lora)", flush=True)
    return processor, models


def generate(processor, model, images, request, *, constrained: bool, sample: bool, max_new: int, allow_unfit: bool) -> tuple[list[str], list[int]]:
    """Answers (text before the stop token) and new-token counts for one batch of photos under one request."""
    import torch
    from transformers import LogitsProcessorList

    from poemlib.constrain import build_logits_processor
    from poemlib.qwen_vl import qwen_prompt_for

    tokenizer = processor.tokenizer
    inputs = processor(text=[qwen_prompt_for(request)] * len(images), images=images, padding=True, return_tensors="pt")
    kwargs = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0} if sample else {"do_sample": False}
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]
    if constrained:
        width = model.get_output_embeddings().weight.shape[0]
        kwargs["logits_processor"] = LogitsProcessorList([
            build_logits_processor(tokenizer, request, max_new_tokens=max_new, allow_unfit=allow_unfit, logits_size=width)])
    torch.manual_seed(request.seed or 0)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new, pad_token_id=tokenizer.pad_token_id, eos_token_id=stops,
                             repetition_penalty=1.0, **kwargs)
    texts, counts = [], []
    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
        end = next((i for i, tok in enumerate(row) if tok in stops), len(row))
        texts.append(tokenizer.decode(row[:end], skip_special_tokens=True))
        counts.append(end + (end < len(row)))
    return texts, counts


def verdict(text: str, poem_type: str, want_variant: str | None) -> tuple[bool, bool, str]:
    """(passes form, 平仄 and rhyme as the requested form, the checker picked the constrained 体, a short reason)."""
    from poemlib.meter import check
    from poemlib.schema import parse_annotation_text

    try:
        annotation = parse_annotation_text(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a failed answer, reported by its kind
        return False, False, f"parse: {type(exc).__name__}"
    if not annotation.create_condition:
        return False, False, "unfit"
    if annotation.poem_type != poem_type:
        return False, False, f"type {annotation.poem_type}"
    report = check(annotation.poem_type, annotation.poem_content, annotation.poem_title)
    ok = bool(report.form_ok and report.tone_ok and report.rhyme_ok)
    same = want_variant is None or report.template == want_variant
    return ok, same, "" if ok else "; ".join(v.short() for v in report.violations[:2]) or "form"


def run(args: argparse.Namespace) -> list[dict]:
    """Every (model, form, decoding) cell: constrained and unconstrained pass counts."""
    from poemlib.config import vision_budget
    from poemlib.constrain import build_engine, ci_family
    from poemlib.constrain.vocab import vocabulary_from_tokenizer
    from poemlib.qwen_vl import prepare_for_qwen
    from poemlib.samples import sample_images
    from poemlib.schema import PoemRequest

    processor, models = load_models(args.models)
    paths = sample_images()[: args.photos]
    images = [prepare_for_qwen(p, vision_budget("tiny"), name=p.name) for p in paths]
    width = next(iter(models.values())).get_output_embeddings().weight.shape[0]
    vocab = vocabulary_from_tokenizer(processor.tokenizer, width)
    decodings = [("greedy", None)] + [(f"sample seed {s}", s) for s in range(1, args.seeds + 1)]
    rows = []
    for label, poem_type, cipai in [f for f in FORMS if f[0] in args.forms]:
        worst = build_engine(vocab, poem_type, cipai, allow_unfit=args.allow_unfit).program.worst[0]
        max_new = worst + EXPLANATION_TOKENS
        want = ci_family(cipai).templates[0].name if cipai else None
        for model_name, model in models.items():
            for decoding, seed in decodings:
                request = PoemRequest(poem_type=poem_type, cipai=cipai, seed=seed, max_new_tokens=max_new, temperature=1.0 if seed else 0.0)
                row = {"model": model_name, "form": label, "decoding": decoding, "answers": len(images), "max_new_tokens": max_new}
                for constrained in (True, False):
                    start = time.perf_counter()
                    texts, counts = generate(processor, model, images, request, constrained=constrained, sample=seed is not None,
                                             max_new=max_new, allow_unfit=args.allow_unfit)
                    verdicts = [verdict(t, poem_type, want) for t in texts]
                    key = "constrained" if constrained else "unconstrained"
                    row[f"{key}_pass"] = sum(ok for ok, _, _ in verdicts)
                    row[f"{key}_s"] = round(time.perf_counter() - start, 1)
                    if constrained:
                        row["variant_match"] = sum(ok and same for ok, same, _ in verdicts)
                        row["unfit"] = sum(reason == "unfit" for _, _, reason in verdicts)
                        row["tokens_mean"] = round(sum(counts) / len(counts), 1)
                        row["failures"] = " | ".join(sorted({r for ok, _, r in verdicts if not ok}))[:200]
                rows.append(row)
                print(f"{model_name:5} {label:5} {decoding:14} constrained {row['constrained_pass']}/{len(images)} "
                      f"(体 {row['variant_match']}) unconstrained {row['unconstrained_pass']}/{len(images)} "
                      f"[{row['constrained_s']}s / {row['unconstrained_s']}s]{' ' + row['failures'] if row['failures'] else ''}", flush=True)
    return rows


def main() -> None:
    """Run the grid, print the table and the totals, write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forms", nargs="+", default=[f[0] for f in FORMS], choices=[f[0] for f in FORMS])
    parser.add_argument("--models", nargs="+", default=["base", "lora"], choices=["base", "lora"])
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds (1..N) beside greedy")
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allow-unfit", action="store_true", help="let the model answer create_condition: false")
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default work/constrained_acceptance.csv)")
    args = parser.parse_args()
    import pandas as pd
    import torch

    from poemlib.config import PROJECT_ROOT

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    frame = pd.DataFrame(run(args))
    wall = time.perf_counter() - start
    out = args.out or PROJECT_ROOT / "work" / "constrained_acceptance.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False, quoting=csv.QUOTE_MINIMAL)
    print(frame.drop(columns=["failures"]).to_string(index=False))
    total, passed = int(frame["answers"].sum()), int(frame["constrained_pass"].sum())
    print(f"\nconstrained: {passed}/{total} pass form, 平仄 and rhyme ({100 * passed / total:.1f} %); "
          f"checker's 体 = constrained 体: {int(frame['variant_match'].sum())}/{total}; "
          f"unconstrained: {int(frame['unconstrained_pass'].sum())}/{total} "
          f"({100 * frame['unconstrained_pass'].sum() / total:.1f} %); wall {wall:.0f} s; CSV {out}")


if __name__ == "__main__":
    main()
