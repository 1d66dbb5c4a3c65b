"""Constrained decoding benchmark: mask time per generated token per row on the real 151k Qwen2.5 vocabulary, and
constrained vs unconstrained tokens/s of the tiny Qwen2.5-VL (batch 8, CPU) in the same run.

    python benchmarks/constrained.py                    # every 近体 form, three 词牌 and the model's choice, 400 steps each, tiny model batch 8
    python benchmarks/constrained.py --steps 2000 --no-model

1. Mask time: the PoemConstraintProcessor is called on random logits of width 151,936 (batch `--batch`), sampling
   each next token from the masked scores, over `--steps` steps per form; time per call / rows = time per token per
   row (wall clock, and this thread's CPU time, which other processes on a busy shared CPU do not inflate). Prints
   median and p95 of both and the load average (target: median ≤ 0.5 ms). Table build (once per vocabulary, cached) is reported apart.
2. Throughput: the tiny model (whatever tokenizer `ensure_tiny_qwen` builds) generates batch 8 text-only prompts
   with and without the processor, sampling, same max_new_tokens; prints tokens/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (poem_type, 词牌): the four 近体 forms, three 词牌 of different shape, and the model's own choice (None).
FORMS = (("五言绝句", None), ("七言绝句", None), ("五言律诗", None), ("七言律诗", None),
         ("词", "如梦令"), ("词", "浣溪沙"), ("词", "菩萨蛮"), (None, None))


def mask_times(steps: int, batch: int, seed: int) -> dict:
    """Per-row mask time over random-logit generations of every form on the real vocabulary."""
    import torch

    from poemlib.constrain import (
        build_engine,
        build_logits_processor,
        vocabulary_from_tiktoken,
    )
    from poemlib.schema import PoemRequest

    start = time.perf_counter()
    vocab = vocabulary_from_tiktoken()
    build_logits_processor(vocab, PoemRequest(poem_type="五言绝句"))  # token table: built once per vocabulary
    table_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed)
    per_row: list[float] = []
    cpu_per_row: list[float] = []
    per_form: dict[str, float] = {}
    finished = 0
    for form, cipai in FORMS:
        done = 0
        form_rows: list[float] = []
        budget = max(256, build_engine(vocab, form, cipai).program.worst[0])
        while done < steps:
            processor = build_logits_processor(vocab, PoemRequest(poem_type=form, cipai=cipai, max_new_tokens=budget))
            ids = torch.zeros((batch, 1), dtype=torch.long)
            for _ in range(budget):
                scores = torch.randn((batch, vocab.logits_size), generator=generator)
                scores = processor(ids, scores)
                # i.i.d. random logits: the argmax is a uniformly random allowed token (a softmax draw over 151k
                # columns would cost the benchmark far more time than the masks it measures)
                token = torch.argmax(scores, dim=-1, keepdim=True)
                ids = torch.cat([ids, token], dim=1)
                done += 1
                if all(processor.finished(row[1:]) for row in ids.tolist()):
                    finished += batch
                    break
            form_rows += [seconds / rows for seconds, rows in processor.mask_seconds]
            cpu_per_row += [cpu / rows for cpu, (_, rows) in zip(processor.mask_cpu_seconds, processor.mask_seconds)]
        per_form[cipai or form or "any"] = round(statistics.median(form_rows) * 1e3, 3)
        per_row += form_rows
    per_row.sort()
    cpu_per_row.sort()
    return {
        "vocabulary": vocab.logits_size,
        "batch": batch,
        "calls": len(per_row),
        "answers_finished": finished,
        "table_build_s": round(table_s, 2),
        "mask_ms_per_token_row_median": round(statistics.median(per_row) * 1e3, 3),
        "mask_ms_per_token_row_p95": round(per_row[int(0.95 * (len(per_row) - 1))] * 1e3, 3),
        "mask_cpu_ms_per_token_row_median": round(statistics.median(cpu_per_row) * 1e3, 3),
        "mask_cpu_ms_per_token_row_p95": round(cpu_per_row[int(0.95 * (len(cpu_per_row) - 1))] * 1e3, 3),
        "mask_ms_median_per_form": per_form,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def throughput(batch: int, max_new_tokens: int, seed: int) -> dict:
    """Tokens/s of the tiny model with and without the constraint (sampling, text-only prompts, batch `batch`)."""
    import torch
    from transformers import (
        AutoProcessor,
        LogitsProcessorList,
        Qwen2_5_VLForConditionalGeneration,
    )

    from poemlib.constrain import build_logits_processor
    from poemlib.offline.tiny_qwen import ensure_tiny_qwen
    from poemlib.schema import PoemRequest

    model_dir = ensure_tiny_qwen()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    prompt = processor.apply_chat_template([{"role": "user", "content": "为这张照片写一首七言绝句，以JSON回答。"}], tokenize=False, add_generation_prompt=True)
    inputs = tokenizer([prompt] * batch, return_tensors="pt", padding=True)
    out = {}
    for label in ("unconstrained", "constrained"):
        kwargs = {}
        if label == "constrained":
            proc = build_logits_processor(tokenizer, PoemRequest(poem_type="七言绝句"), max_new_tokens=max_new_tokens, logits_size=model.get_output_embeddings().weight.shape[0])
            kwargs["logits_processor"] = LogitsProcessorList([proc])
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.inference_mode():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id, **kwargs)
        elapsed = time.perf_counter() - start
        new = generated[:, inputs["input_ids"].shape[1]:]
        tokens = int((new != tokenizer.pad_token_id).sum())
        out[f"{label}_tokens_per_s"] = round(tokens / elapsed, 1)
    out["constrained_over_unconstrained"] = round(out["constrained_tokens_per_s"] / out["unconstrained_tokens_per_s"], 3)
    return out


def main() -> None:
    """Run both measurements and print one JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400, help="mask steps per form")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a small shared CPU)")
    parser.add_argument("--no-model", action="store_true", help="skip the tiny-model throughput run")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(json.dumps({"mask": mask_times(args.steps, args.batch, args.seed)}, ensure_ascii=False, indent=1), flush=True)
    if not args.no_model:
        print(json.dumps({"throughput": throughput(args.batch, args.max_new_tokens, args.seed)}, indent=1), flush=True)


if __name__ == "__main__":
    main()
