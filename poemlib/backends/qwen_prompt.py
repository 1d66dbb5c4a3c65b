"""The ONE Qwen2.5-VL prompt rule: LLaMA-Factory's `qwen2_vl` template for one image followed by the instruction.

It is also Qwen2.5-VL's own chat template for that turn: a system turn with the default system prompt, a user turn
"<image>" + instruction, then the assistant's opener. tests/backends/test_prompt_parity.py compares it with
LLaMA-Factory's template token for token. Pure text, no heavy imports: training code can use it as well.
"""

from __future__ import annotations

from poemlib.instructions import SYSTEM_PROMPT, render_instruction
from poemlib.schema import PoemRequest

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END, IMAGE_PAD = "<|vision_start|>", "<|vision_end|>", "<|image_pad|>"


def render_qwen_prompt(instruction: str, *, system: str = SYSTEM_PROMPT, n_image_tokens: int | None = None) -> str:
    """The qwen2_vl template's text for one image + instruction, ending with the assistant turn opener.

    With n_image_tokens the image placeholder is expanded as LLaMA-Factory's Qwen2VLPlugin does (one
    <|image_pad|> per merged patch); without, one <|image_pad|> is left for the processor to expand.
    """
    pads = IMAGE_PAD * (n_image_tokens if n_image_tokens is not None else 1)
    user = f"{VISION_START}{pads}{VISION_END}{instruction}"
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def qwen_prompt_for(request: PoemRequest, *, n_image_tokens: int | None = None) -> str:
    """The prompt sent for a request: the instruction pool's deterministic rendering inside the qwen2_vl template."""
    return render_qwen_prompt(render_instruction(request), n_image_tokens=n_image_tokens)
