"""Qwen2.5-VL through transformers: one model + processor in memory, shared by the base and lora backends.

The photo is prepared with the training pixel budget (poemlib.qwen_vl), the prompt is the qwen2_vl template
(poemlib.qwen_vl), generation is batched with left padding, greedy or seeded sampling. lora is the peft-wrapped model;
base answers inside `PeftModel.disable_adapter()`, so one copy of the weights serves both. A request with
`constrain=True` is decoded under the 格律 constraint (poemlib.constrain, through backends.constraint) and its results
say `constrained=True`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from poemlib.backends.base import (
    BackendStatus,
    ImageInput,
    error_results,
    image_label,
    result_from_text,
)
from poemlib.backends.constraint import ConstraintEngines, ConstraintUnavailable
from poemlib.config import vision_budget
from poemlib.images import BadImageError
from poemlib.qwen_vl import IM_END, prepare_for_qwen, qwen_prompt_for
from poemlib.schema import GenerationResult, PoemRequest, TokenUsage

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "fp32": "float32", "float32": "float32"}
# sampling settings of configs/backends.yaml `generation`; every other key there passes through to generate()
_SAMPLING_KEYS = ("top_p", "top_k", "temperature", "do_sample")


def select_device_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """CUDA with bf16 when present (fp16 on GPUs without bf16), else CPU with fp32; explicit values win."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dtype != "auto":
        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; expected auto or one of {', '.join(_DTYPES)}")
        return dev, getattr(torch, _DTYPES[dtype])
    if dev.type == "cuda":
        return dev, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dev, torch.float32


class QwenEngine:
    """One Qwen2.5-VL model + processor in memory, optionally wrapped by a peft LoRA adapter, shared by base and lora."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        pixels: str = "tiny",
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        generation: dict[str, Any] | None = None,
        max_new_tokens_cap: int | None = None,
        cpu_threads: int | None = None,
    ) -> None:
        import torch
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

        self.model_dir = Path(model_dir)
        self.pixels = pixels
        self.budget = vision_budget(pixels)
        self.device, self.dtype = select_device_dtype(device, dtype)
        if cpu_threads and self.device.type == "cpu":
            # a tiny model gains nothing from intra-op threads, and on a busy machine they spin and thrash
            # (measured: 1 thread answers ~10× faster than 2 with the offline model on 2 shared cores)
            torch.set_num_threads(int(cpu_threads))
        self.batch_size = max(1, int(batch_size))
        self.generation = dict(generation or {})
        self.max_new_tokens_cap = max_new_tokens_cap
        self.processor = AutoProcessor.from_pretrained(str(self.model_dir))
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        # on CUDA the weights load straight onto the GPU (a 7B model never sits in host memory in full)
        device_map = str(self.device) if self.device.type == "cuda" else None
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(self.model_dir), dtype=self.dtype, device_map=device_map)
        self.model = model.to(self.device).eval()
        self.adapter_dir: Path | None = None
        # generation toggles the adapter on a shared model: one generate at a time
        self.lock = threading.RLock()
        stops = {self.tokenizer.convert_tokens_to_ids(IM_END), self.tokenizer.eos_token_id}
        self.stop_ids = sorted(i for i in stops if isinstance(i, int) and i >= 0)
        # the constraint masks the model's whole logits row, which may be wider than the tokenizer (padded embeddings)
        self.constraints = ConstraintEngines(self.tokenizer, int(self.model.get_output_embeddings().weight.shape[0]))

    # -- adapter ---------------------------------------------------------------------------------------------------
    @property
    def has_adapter(self) -> bool:
        """True once a LoRA adapter wraps the model."""
        return self.adapter_dir is not None

    def attach_adapter(self, adapter_dir: str | os.PathLike) -> None:
        """Wrap the loaded model with a peft adapter in place (no second copy of the base weights)."""
        from peft import PeftModel

        adapter_dir = Path(adapter_dir)
        with self.lock:
            if self.adapter_dir is not None:
                if self.adapter_dir.resolve() == adapter_dir.resolve():
                    return
                raise RuntimeError(f"engine already carries adapter {self.adapter_dir}; one adapter per engine")
            peft_model = PeftModel.from_pretrained(self.model, str(adapter_dir), is_trainable=False)
            self.model = peft_model.to(self.device).eval()
            self.adapter_dir = adapter_dir

    def adapter_context(self, use_adapter: bool) -> contextlib.AbstractContextManager:
        """The adapter on (lora) or off (base) for the duration of one generate call."""
        if self.has_adapter and not use_adapter:
            return self.model.disable_adapter()
        if use_adapter and not self.has_adapter:
            raise RuntimeError("no adapter attached")
        return contextlib.nullcontext()

    # -- inputs ----------------------------------------------------------------------------------------------------
    def prepare(self, source: ImageInput, *, name: str | None = None) -> Image.Image:
        """The photo as training saw it (poemlib.qwen_vl under this engine's pixel budget)."""
        return prepare_for_qwen(source, self.budget, name=name)

    def prompt(self, request: PoemRequest, n_image_tokens: int | None = None) -> str:
        """The chat text sent for a request (image placeholder expanded when n_image_tokens is given)."""
        return qwen_prompt_for(request, n_image_tokens=n_image_tokens)

    def n_image_tokens(self, image: Image.Image) -> int:
        """Visual tokens the processor gives a prepared image (grid t·h·w / merge²)."""
        grid = self.processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        return int(grid.prod().item()) // int(self.processor.image_processor.merge_size) ** 2

    def encode(self, images: list[Image.Image], request: PoemRequest) -> Any:
        """Processor inputs for a batch of prepared images with the same request, left padded."""
        text = self.prompt(request)
        inputs = self.processor(text=[text] * len(images), images=images, padding=True, return_tensors="pt")
        return inputs.to(self.device)

    # -- generation ------------------------------------------------------------------------------------------------
    def generation_kwargs(self, request: PoemRequest, logits_processor: Sequence[Any] | None = None) -> dict[str, Any]:
        """transformers generate() arguments for a request (greedy at temperature 0); logits_processor, when given,
        is passed on as generate()'s LogitsProcessorList (e.g. constrained decoding for one request)."""
        max_new = int(request.max_new_tokens)
        if self.max_new_tokens_cap:
            max_new = min(max_new, int(self.max_new_tokens_cap))
        # configured extras (repetition_penalty, no_repeat_ngram_size, min_new_tokens, …) pass through to generate()
        extras = {k: v for k, v in self.generation.items() if k not in _SAMPLING_KEYS}
        kwargs: dict[str, Any] = {**extras, "max_new_tokens": max_new, "eos_token_id": self.stop_ids,
                                  "pad_token_id": self.tokenizer.pad_token_id}
        if "min_new_tokens" in kwargs:
            kwargs["min_new_tokens"] = min(int(kwargs["min_new_tokens"]), max_new)
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=float(request.temperature),
                          top_p=float(self.generation.get("top_p", 1.0)), top_k=int(self.generation.get("top_k", 0)))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if logits_processor:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(list(logits_processor))
        return kwargs

    def _seed(self, request: PoemRequest) -> None:
        """Seed torch for a sampled request that names a seed (reproducible sampling)."""
        import torch

        if request.temperature > 0 and request.seed is not None:
            torch.manual_seed(int(request.seed))
            if torch.cuda.is_available():
                torch.cuda.manual_seed_all(int(request.seed))

    def generate_batch(
        self,
        images: list[Image.Image],
        request: PoemRequest,
        *,
        use_adapter: bool,
        backend: str,
        logits_processor: Sequence[Any] | None = None,
    ) -> list[GenerationResult]:
        """One batched generate call on prepared images; latency is the batch's wall time shared evenly."""
        import torch

        kwargs = self.generation_kwargs(request, logits_processor)
        if request.constrain:
            kwargs = self._constrained_kwargs(request, kwargs)
        with self.lock:
            start = time.perf_counter()
            inputs = self.encode(images, request)
            self._seed(request)
            with self.adapter_context(use_adapter), torch.inference_mode():
                output = self.model.generate(**inputs, **kwargs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
        new_tokens = output[:, inputs["input_ids"].shape[1] :].tolist()
        prompt_counts = inputs["attention_mask"].sum(dim=1).tolist()
        return [
            self._decode(row, int(n_prompt), backend=backend, latency_s=elapsed / len(images), max_new=kwargs["max_new_tokens"])
            .model_copy(update={"constrained": request.constrain})
            for row, n_prompt in zip(new_tokens, prompt_counts)
        ]

    def _constrained_kwargs(self, request: PoemRequest, kwargs: dict[str, Any]) -> dict[str, Any]:
        """generate() arguments with the 格律 constraint appended (a fresh processor per call, the engine kept) and
        the budget raised to what the constraint may need."""
        from transformers import LogitsProcessorList

        call = self.constraints.call_for(request, kwargs["max_new_tokens"])
        if call.raised_from is not None:
            log.info("constrained %s: max_new_tokens %d raised to %d, the longest answer the constraint allows",
                     request.poem_type or "answer", call.raised_from, call.max_new_tokens)
        return {**kwargs, "max_new_tokens": call.max_new_tokens,
                "logits_processor": LogitsProcessorList([*kwargs.get("logits_processor", []), call.processor])}

    def _decode(self, row: list[int], n_prompt: int, *, backend: str, latency_s: float, max_new: int) -> GenerationResult:
        """One row of new tokens as a result: cut at the first stop token; truncated when it never stopped."""
        cut = next((i for i, tok in enumerate(row) if tok in self.stop_ids), None)
        finished = cut is not None
        n_out = (cut + 1) if finished else len(row)
        text = self.tokenizer.decode(row[:cut] if finished else row, skip_special_tokens=True)
        usage = TokenUsage(prompt_tokens=n_prompt, output_tokens=n_out, total_tokens=n_prompt + n_out)
        return result_from_text(backend, text, latency_s=latency_s, usage=usage, truncated=not finished and n_out >= max_new)

    def generate(
        self,
        sources: Sequence[ImageInput],
        request: PoemRequest,
        *,
        use_adapter: bool,
        backend: str,
        logits_processor: Sequence[Any] | None = None,
    ) -> list[GenerationResult]:
        """Prepare every image (bad ones become bad_image results) and generate in batches of batch_size."""
        if request.constrain:
            try:  # built (once per form) before any timing; a form that cannot be constrained fails every image clearly
                self.constraints.engine_for(request)
            except ConstraintUnavailable as exc:
                return error_results(backend, len(sources), "generation_error", str(exc))
        results: list[GenerationResult | None] = [None] * len(sources)
        prepared: list[tuple[int, Image.Image]] = []
        for index, source in enumerate(sources):
            try:
                prepared.append((index, self.prepare(source, name=image_label(source, index))))
            except BadImageError as exc:
                results[index] = GenerationResult(backend=backend, error_kind="bad_image", error_message=str(exc))
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            try:
                batch = self.generate_batch([img for _, img in chunk], request, use_adapter=use_adapter, backend=backend,
                                            logits_processor=logits_processor)
            except Exception as exc:  # a local model failure must not take the caller down
                log.exception("%s: generation failed", backend)
                batch = error_results(backend, len(chunk), "generation_error", f"{type(exc).__name__}: {exc}")
            for (index, _), result in zip(chunk, batch):
                results[index] = result
        return [r for r in results if r is not None]

    def describe(self) -> str:
        """Where the weights are and how they run."""
        dt = str(self.dtype).replace("torch.", "")
        return f"{self.model_dir} on {self.device.type} {dt}, pixels {self.pixels} (≤{self.budget['image_max_pixels']} px)"


class QwenBackend:
    """base (adapter disabled) or lora (adapter enabled) over a shared QwenEngine."""

    def __init__(self, name: str, label: str, engine: QwenEngine, *, use_adapter: bool) -> None:
        self.name = name
        self.label = label
        self.engine = engine
        self.use_adapter = use_adapter

    @property
    def model(self) -> Any:
        """The one model object in memory (a PeftModel once an adapter is attached)."""
        return self.engine.model

    def status(self) -> BackendStatus:
        """Ready, with where the weights and adapter are."""
        detail = self.engine.describe()
        if self.use_adapter:
            detail += f", adapter {self.engine.adapter_dir}"
        elif self.engine.has_adapter:
            detail += ", adapter disabled"
        return BackendStatus(name=self.name, state="ready", detail=detail, ready=True)

    def prompt(self, request: PoemRequest, image: ImageInput | None = None) -> str:
        """The prompt text this backend sends (placeholder expanded to the image's token count when given)."""
        n = self.engine.n_image_tokens(self.engine.prepare(image)) if image is not None else None
        return self.engine.prompt(request, n_image_tokens=n)

    def generate(
        self, images: Sequence[ImageInput], request: PoemRequest, *, logits_processor: Sequence[Any] | None = None
    ) -> list[GenerationResult]:
        """One result per image, in order."""
        return self.engine.generate(list(images), request, use_adapter=self.use_adapter, backend=self.name,
                                    logits_processor=logits_processor)
