"""The constraint automaton: a state per answer prefix, the tokens it allows (as precomputed boolean masks combined
with a few tensor ops), and the state after a token. Dead-end free by construction (see `ConstraintEngine`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from poemlib.constrain.form import FormFamily, LineSpec
from poemlib.constrain.program import FreeText, Line, Literal, Program, Stop
from poemlib.constrain.tables import MAX_LITERAL_TOKEN_BYTES, TokenTable


@dataclass(frozen=True)
class State:
    """Where an answer prefix stands: program and segment, progress inside it, and the poem's open choices."""

    program: Program
    seg: int = 0
    written: bytes = b""  # bytes of the current literal written so far
    chars: int = 0  # characters written in the current free string or poem line
    filled: bool = False  # the current free string holds a visible character
    templates: int = 0  # bit set of the family's templates still consistent with the poem so far
    groups: tuple[frozenset[str], ...] = ()  # per rhyme set: groups still possible
    used: tuple[frozenset[str], ...] = ()  # per rhyme set: rhyme characters used (simplified)
    done: bool = False  # a stop token was written

    @property
    def finished(self) -> bool:
        """True once the answer ended with a stop token."""
        return self.done


@dataclass(frozen=True)
class Allowed:
    """Tokens a state allows: a dense mask, explicit ids, or both (union); None for both means no constraint."""

    dense: torch.Tensor | None = None
    ids: torch.Tensor | None = None

    @property
    def unconstrained(self) -> bool:
        """True when every token is allowed (after the answer ended)."""
        return self.dense is None and self.ids is None


class ConstraintEngine:
    """Allowed tokens and transitions for one answer program over one token table.

    Dead ends cannot occur: every literal is spellable byte by byte, every tone requirement has a one-character
    token, a rhyme group is only open if it has enough distinct one-character rhyme tokens for all its slots, and
    free strings close (only) when the remaining budget is just enough for the worst case of the rest.
    """

    def __init__(self, table: TokenTable, program: Program) -> None:
        self.table = table
        self.program = program
        self.stop_ids = torch.as_tensor(list(table.vocab.stop_ids), dtype=torch.long)
        self._literal_cache: dict[tuple[int, int, bytes], torch.Tensor] = {}
        self._fit_cache: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        self._group_cache: dict[frozenset[str], torch.Tensor] = {}
        self._eligible: dict[int, tuple[frozenset[str], ...]] = {}
        self._check_program(program, seen=set())

    # -- setup -----------------------------------------------------------------------------------------------------
    def _check_program(self, program: Program, seen: set[int]) -> None:
        """Fail early, naming the problem, when the vocabulary cannot spell or fill some part of the program."""
        if id(program) in seen:
            return
        seen.add(id(program))
        for segment in program.segments:
            if isinstance(segment, Literal):
                for text, branch in segment.alternatives:
                    missing = sorted({b for b in text if bytes([b]) not in self.table.byte_index})
                    if missing:
                        raise ValueError(f"the vocabulary cannot spell {text.decode()!r}: no single-byte token for {missing[:5]}")
                    if branch is not None:
                        self._check_program(branch, seen)
        if program.family is not None:
            self._eligible[id(program.family)] = self._eligible_groups(program.family)
            for template in program.family.templates:
                for number, line in enumerate(template.lines, start=1):
                    for pos, req in enumerate(line.tones, start=1):
                        if not self.table.single_char_exists(req):
                            raise ValueError(f"{template.name}: no one-character token fits line {number} position {pos}")

    def _eligible_groups(self, family: FormFamily) -> tuple[frozenset[str], ...]:
        """Per rhyme set, the groups with enough distinct one-character tokens for every slot of the set."""
        need: dict[int, int] = {}
        for template in family.templates:
            for rset, count in template.rhyme_counts().items():
                need[rset] = max(need.get(rset, 0), count)
        out = []
        for rset, spec in enumerate(family.rhyme_sets):
            ok = frozenset(g for g in spec.groups if len(self.table.single_by_group.get(g, ())) >= need.get(rset, 0))
            if not ok:
                raise ValueError(f"{family.poem_type}{family.title_head}: no rhyme group has {need.get(rset, 0)} rhyme characters in this vocabulary")
            out.append(ok)
        return tuple(out)

    def start(self) -> State:
        """The state before the first generated token."""
        return State(self.program)

    def _enter(self, program: Program, seg: int) -> State:
        """State at the start of a segment (a new branch also opens the poem's choices)."""
        if seg == 0 and program.family is not None:
            family = program.family
            groups = self._eligible[id(family)]
            return State(program, 0, templates=(1 << len(family.templates)) - 1, groups=groups, used=tuple(frozenset() for _ in groups))
        return State(program, seg)

    def _next(self, state: State) -> State:
        """State at the start of the following segment, poem choices kept."""
        return replace(state, seg=state.seg + 1, written=b"", chars=0, filled=False)

    # -- allowed tokens --------------------------------------------------------------------------------------------
    def allowed(self, state: State, remaining: int) -> Allowed:
        """Tokens allowed next, with `remaining` generation steps left (including this one)."""
        if state.done:
            return Allowed()
        segment = state.program.segments[state.seg]
        if isinstance(segment, Literal):
            return Allowed(ids=self._literal_ids(state.program, state.seg, state.written))
        if isinstance(segment, FreeText):
            return self._free_allowed(state, segment, remaining)
        if isinstance(segment, Line):
            return Allowed(dense=self._line_mask(state, segment))
        return Allowed(ids=self.stop_ids)

    def _literal_ids(self, program: Program, seg: int, written: bytes) -> torch.Tensor:
        """Tokens whose bytes continue some alternative of a literal (cached per position)."""
        key = (id(program), seg, written)
        found = self._literal_cache.get(key)
        if found is None:
            segment = program.segments[seg]
            assert isinstance(segment, Literal)
            rests = {text[len(written):] for text, _ in segment.alternatives if text.startswith(written)}
            ids = set()
            index = self.table.byte_index
            for rest in rests:
                for k in range(1, min(len(rest), MAX_LITERAL_TOKEN_BYTES) + 1):
                    token_id = index.get(rest[:k])
                    if token_id is not None:
                        ids.add(token_id)
            found = self._literal_cache[key] = torch.as_tensor(sorted(ids), dtype=torch.long)
        return found

    def _free_allowed(self, state: State, segment: FreeText, remaining: int) -> Allowed:
        """Free string: text while budget and length allow; closing once it is non-empty with no whitespace at
        either end (the schema strips it, and the answer must stay byte-identical to its json.dumps layout)."""
        table = self.table
        room = remaining - 1 - state.program.worst[state.seg + 1]  # spare steps if this token is text
        grow = state.chars < segment.max_chars
        text: torch.Tensor | None = None
        if segment.kind == "title":  # 汉字 only: every token leaves the title closable
            text = table.han_mask if (grow and room >= 0) or not state.filled else None
        elif grow and room >= 1:
            text = table.start_mask if state.chars == 0 else table.text_mask
        elif room >= 0 and (grow or not state.filled):  # the last text token must leave the string closable
            text = self._start_end_mask() if state.chars == 0 else table.end_mask
        if not state.filled:
            return Allowed(dense=text)  # the budget check at build time leaves room for this one token
        return Allowed(dense=text, ids=self._literal_ids(state.program, state.seg + 1, b""))

    def _start_end_mask(self) -> torch.Tensor:
        """Text tokens that can open and close a string alone."""
        if not hasattr(self, "_start_end"):
            self._start_end = self.table.start_mask & self.table.end_mask
        return self._start_end

    def _fit_masks(self, reqs: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pure-汉字 tokens fitting the requirements from here: ending before the line end, and ending exactly at it."""
        found = self._fit_cache.get(reqs)
        if found is None:
            lengths = self.table.han_len.astype(np.int64)
            codes = self.table.han_codes.astype(np.int64)
            fits = (lengths >= 1) & (lengths <= len(reqs))
            for k, req in enumerate(reqs[: codes.shape[1]]):
                fits &= ((req >> codes[:, k]) & 1).astype(bool) | (lengths <= k)
            exact = torch.from_numpy(fits & (lengths == len(reqs)))
            short = torch.from_numpy(fits & (lengths < len(reqs)))
            found = self._fit_cache[reqs] = (short, exact)
        return found

    def _rhyme_mask(self, state: State, rset: int) -> torch.Tensor:
        """Tokens whose last character rhymes in a still-open group of the set and was not used as a rhyme yet."""
        groups = state.groups[rset]
        mask = self._group_cache.get(groups)
        if mask is None:
            mask = torch.zeros(self.table.size, dtype=torch.bool)
            for group in groups:
                mask |= self.table.group_masks[group]
            self._group_cache[groups] = mask
        if state.used[rset]:
            mask = mask.clone()
            for ch in state.used[rset]:
                mask[torch.from_numpy(self.table.ids_by_last[ch])] = False
        return mask

    def _line_mask(self, state: State, segment: Line) -> torch.Tensor:
        """Union over still-open templates of the tokens that fit the rest of this line."""
        family = state.program.family
        assert family is not None
        seen: set[tuple[tuple[int, ...], int | None]] = set()
        out: torch.Tensor | None = None
        for t_index, template in enumerate(family.templates):
            if not state.templates >> t_index & 1:
                continue
            line = template.lines[segment.index]
            key = (line.tones[state.chars:], line.rhyme)
            if key in seen:
                continue
            seen.add(key)
            short, exact = self._fit_masks(key[0])
            part = short | (exact if line.rhyme is None else exact & self._rhyme_mask(state, line.rhyme))
            out = part if out is None else out | part
        assert out is not None
        return out

    # -- transitions -----------------------------------------------------------------------------------------------
    def advance(self, state: State, token_id: int) -> State:
        """The state after writing one token (which must be allowed)."""
        if state.done:
            return state
        segment = state.program.segments[state.seg]
        if isinstance(segment, Stop):
            return replace(state, done=True)
        if isinstance(segment, Literal):
            return self._advance_literal(state, segment, token_id)
        if isinstance(segment, FreeText):
            raw = self.table.vocab.token_bytes[token_id] or b""
            if raw.startswith(b'"'):
                return self._advance_literal(self._next(state), state.program.segments[state.seg + 1], token_id)
            text = raw.decode("utf-8", errors="replace")
            return replace(state, chars=state.chars + len(text), filled=bool(text) and not text[-1].isspace())
        return self._advance_line(state, segment, token_id)

    def _advance_literal(self, state: State, segment: Literal, token_id: int) -> State:
        """Literal progress; on completing an alternative, its branch program or the next segment."""
        written = state.written + (self.table.vocab.token_bytes[token_id] or b"")
        for text, branch in segment.alternatives:
            if text == written:
                if branch is not None:
                    return self._enter(branch, 0)
                return self._next(state)
        if not any(text.startswith(written) for text, _ in segment.alternatives):
            raise ValueError(f"token {token_id} ({written!r}) is not allowed here")
        return replace(state, written=written)

    def _token_fits(self, line: LineSpec, pos: int, token_id: int, state: State) -> bool:
        """Whether a pure-汉字 token fits one template's line from `pos` (tones, and rhyme at the line end)."""
        length = int(self.table.han_len[token_id])
        if length == 0 or pos + length > len(line.tones):
            return False
        codes = self.table.han_codes[token_id, :length]
        if not all((line.tones[pos + k] >> int(codes[k])) & 1 for k in range(length)):
            return False
        if pos + length == len(line.tones) and line.rhyme is not None:
            ch = self.table.last_char[token_id]
            groups = self.table.last_groups.get(token_id, frozenset())
            return bool(groups & state.groups[line.rhyme]) and ch not in state.used[line.rhyme]
        return True

    def _advance_line(self, state: State, segment: Line, token_id: int) -> State:
        """Move along a poem line, narrowing templates; at its end, narrow rhyme groups and record the rhyme."""
        family = state.program.family
        assert family is not None
        alive = 0
        rhyme_sets: set[int] = set()
        for t_index, template in enumerate(family.templates):
            line = template.lines[segment.index]
            if state.templates >> t_index & 1 and self._token_fits(line, state.chars, token_id, state):
                alive |= 1 << t_index
                if line.rhyme is not None:
                    rhyme_sets.add(line.rhyme)
        if not alive:
            raise ValueError(f"token {token_id} does not fit line {segment.index + 1} at position {state.chars + 1}")
        chars = state.chars + int(self.table.han_len[token_id])
        new = replace(state, chars=chars, templates=alive)
        if chars < len(family.shape.lines[segment.index].tones):
            return new
        groups, used = list(state.groups), list(state.used)
        last = self.table.last_char[token_id]
        for rset in rhyme_sets:
            narrowed = groups[rset] & self.table.last_groups.get(token_id, frozenset())
            if narrowed:  # a template where this line does not rhyme may also be alive; only narrow when it rhymes
                groups[rset] = narrowed
                used[rset] = used[rset] | {last}
        return self._next(replace(new, groups=tuple(groups), used=tuple(used)))
