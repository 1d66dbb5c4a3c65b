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
        width = scores.shape[-1]
        allowed = torch.zeros((batch, width), dtype=torch.bool)
        states: dict[tuple[int, ...], State] = {}
        for row, ids in enumerate(input_ids[:, self._prompt_len :].tolist()):
            key = tuple(ids)
            state = states.get(key) or self.state_for(key)
            states[key] = state
            self._fill(allowed[row], self.engine.allowed(state, remaining), width)
        self._states = states
        allowed = allowed.to(scores.device)
        out = scores.masked_fill(~allowed, float("-inf"))
        dead = torch.isneginf(out).all(dim=-1)
        if bool(dead.any()):  # an earlier processor (e.g. no_repeat_ngram) banned every allowed token
            out[dead] = torch.zeros_like(out[dead]).masked_fill(~allowed[dead], float("-inf"))
        self.mask_seconds.append((time.perf_counter() - start, batch))
        return out

    @staticmethod
    def _fill(row: torch.Tensor, allowed, width: int) -> None:
        """Write one state's allowed tokens into its row of the batch mask."""
        if allowed.unconstrained:
            row.fill_(True)
            return
        if allowed.dense is not None:
            n = min(width, allowed.dense.shape[0])
            row[:n] = allowed.dense[:n]
        if allowed.ids is not None:
            ids = allowed.ids[allowed.ids < width]
            row[ids] = True

    def finished(self, generated: list[int] | tuple[int, ...]) -> bool:
        """True when these generated ids end a complete constrained answer (stop token written)."""
        return self.state_for(tuple(generated)).finished
