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
    """Masks every token the constraint forbids (sets its score to -inf, in place); one instance per generate() call."""

    def __init__(self, engine: ConstraintEngine, max_new_tokens: int) -> None:
        self.engine = engine
        self.max_new_tokens = int(max_new_tokens)
        self.mask_seconds: list[tuple[float, int]] = []  # (wall seconds for the whole batch, rows) per call
        self.mask_cpu_seconds: list[float] = []  # this thread's CPU seconds per call (what a busy shared CPU does not inflate)
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
        start, cpu_start = time.perf_counter(), time.thread_time()
        batch, length = input_ids.shape
        if self._prompt_len is None or length <= self._last_len:
            self._reset(length)
        self._last_len = length
        assert self._prompt_len is not None
        remaining = self.max_new_tokens - (length - self._prompt_len)
        states: dict[tuple[int, ...], State] = {}
        for row, ids in enumerate(input_ids[:, self._prompt_len :].tolist()):
            key = tuple(ids)
            state = states.get(key) or self.state_for(key)
            states[key] = state
            self._apply(scores[row], self.engine.allowed(state, remaining))
        self._states = states
        self.mask_seconds.append((time.perf_counter() - start, batch))
        self.mask_cpu_seconds.append(time.thread_time() - cpu_start)
        return scores

    def _on(self, ids: torch.Tensor, device: torch.device) -> torch.Tensor:
        """An id set on the scores' device (kept: the engine's sets are cached, so few distinct ones move)."""
        if device.type == "cpu":
            return ids
        key = (id(ids), device)
        found = self._device_ids.get(key)
        if found is None or found[0] is not ids:
            if len(self._device_ids) >= 256:  # sets made per call (used rhymes taken out) would pile up
                self._device_ids.clear()
            found = self._device_ids[key] = (ids, ids.to(device))
        return found[1]

    def _apply(self, scores: torch.Tensor, allowed) -> None:
        """Mask one row in place (as xgrammar's processor does: a full-vocabulary copy per row would cost more than
        the mask): allowed tokens keep their scores, others get -inf; if all allowed were -inf, they get 0.
        index_select/index_copy_/index_fill_ rather than advanced indexing: several times faster on a CPU."""
        if allowed.unconstrained:
            return
        narrow = scores.shape[-1] < self.engine.table.size  # logits narrower than the vocabulary: drop ids past them
        if allowed.ids is not None:
            ids = self._on(allowed.ids, scores.device)
            if narrow:
                ids = ids[ids < scores.shape[-1]]
            values = scores.index_select(0, ids)
            if bool(torch.isneginf(values.amax())):  # an earlier processor (e.g. min_new_tokens) banned them all
                values.zero_()
            scores.fill_(float("-inf"))
            scores.index_copy_(0, ids, values)
            return
        banned = self._on(allowed.banned, scores.device)
        if narrow:
            banned = banned[banned < scores.shape[-1]]
        scores.index_fill_(0, banned, float("-inf"))
        probe = self._on(allowed.probe, scores.device)
        if bool(torch.isneginf(scores.index_select(0, probe).amax())) and bool(torch.isneginf(scores.amax())):
            scores.zero_()  # a finite probe proves the row alive; only a row of -inf probes needs the full look
            scores.index_fill_(0, banned, float("-inf"))

    def finished(self, generated: list[int] | tuple[int, ...]) -> bool:
        """True when these generated ids end a complete constrained answer (stop token written)."""
        return self.state_for(tuple(generated)).finished
