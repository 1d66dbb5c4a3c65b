"""A transformers LogitsProcessor driving the constraint engine, with per-row state keyed on the generated ids
(so batching, sampling, greedy decoding and beam reordering all see the right state)."""

from __future__ import annotations

import time

import torch

from poemlib.constrain.engine import ConstraintEngine, State

try:  # transformers is a dependency of the Qwen backends; the engine itself only needs torch
    from transformers import LogitsProcessor
except ImportError:  # pragma: no cover - exercised only without transformers
    LogitsProcessor = object  # type: ignore[assignment,misc]


class PoemConstraintProcessor(LogitsProcessor):
    """Masks every token the constraint forbids (sets its score to -inf); one instance per generate() call."""

    def __init__(self, engine: ConstraintEngine, max_new_tokens: int) -> None:
        self.engine = engine
        self.max_new_tokens = int(max_new_tokens)
        self.mask_seconds: list[tuple[float, int]] = []  # (seconds for the whole batch, rows) per call
        self._prompt_len: int | None = None
        self._last_len = -1
        self._states: dict[tuple[int, ...], State] = {}
        self._device_ids: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def _reset(self, prompt_len: int) -> None:
        """A new generate() call (or the first): the prompt is everything seen now."""
        self._prompt_len = prompt_len
        self._states = {(): self.engine.start()}

    def state_for(self, generated: tuple[int, ...]) -> State:
        """State after the given generated ids (from the previous step's states, else replayed from the start)."""
        found = self._states.get(generated)
        if found is not None:
            return found
        parent = self._states.get(generated[:-1]) if generated else None
        if parent is None:
            parent = self.engine.start()
            for token_id in generated[:-1]:
                parent = self.engine.advance(parent, token_id)
        return self.engine.advance(parent, generated[-1]) if generated else parent

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Scores with forbidden tokens at -inf; a row left with nothing finite gets its allowed tokens back at 0."""
        start = time.perf_counter()
        batch, length = input_ids.shape
        if self._prompt_len is None or length <= self._last_len:
            self._reset(length)
        self._last_len = length
        assert self._prompt_len is not None
        remaining = self.max_new_tokens - (length - self._prompt_len)
        out = torch.empty_like(scores)
        states: dict[tuple[int, ...], State] = {}
        for row, ids in enumerate(input_ids[:, self._prompt_len :].tolist()):
            key = tuple(ids)
            state = states.get(key) or self.state_for(key)
            states[key] = state
            self._apply(out[row], scores[row], self.engine.allowed(state, remaining))
        self._states = states
        self.mask_seconds.append((time.perf_counter() - start, batch))
        return out

    def _on(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        """An id set on the scores' device (kept: the engine's sets are cached, so few distinct ones move)."""
        if device.type == "cpu":
            return ids
        key = (id(ids), device)
        found = self._device_ids.get(key)
        if found is None or found[0] is not ids:
            found = self._device_ids[key] = (ids, ids.to(device))
        return found[1]

    def _apply(self, out: torch.Tensor, scores: torch.Tensor, allowed) -> None:
        """Write one row: the scores of allowed tokens, -inf elsewhere (allowed tokens at 0 if all were -inf)."""
        width = scores.shape[-1]
        if allowed.unconstrained:
            out.copy_(scores)
            return
        if allowed.ids is not None:
            ids = self._on(allowed.ids, scores.device)
            if width < self.engine.table.size:  # logits narrower than the vocabulary: drop ids past them
                ids = ids[ids < width]
            values = scores[ids]
            if bool(torch.isneginf(values).all()):  # an earlier processor (e.g. no_repeat_ngram) banned them all
                values = torch.zeros_like(values)
            out.fill_(float("-inf"))
            out[ids] = values
            return
        banned = self._on(allowed.banned, scores.device)
        if width < self.engine.table.size:
            banned = banned[banned < width]
        out.copy_(scores)
        out[banned] = float("-inf")
        if bool(torch.isneginf(out.max())):
            out.zero_()
            out[banned] = float("-inf")

    def finished(self, generated: list[int] | tuple[int, ...]) -> bool:
        """True when these generated ids end a complete constrained answer (stop token written)."""
        return self.state_for(tuple(generated)).finished
