"""The constraint automaton: a state per answer prefix, the tokens it allows (as precomputed boolean masks combined
with a few tensor ops), and the state after a token. Dead-end free by construction (see `ConstraintEngine`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from poemlib.constrain.form import FormFamily, LineSpec
from poemlib.constrain.program import FreeText, Line, Literal, Program, Stop
from poemlib.constrain.tables import MAX_LITERAL_TOKEN_BYTES, TokenTable

LINE_CACHE_ENTRIES = 1024  # allowed sets kept per engine (each up to ~15k ids)


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
    """Tokens a state allows: explicit ids (duplicates harmless), or every token but `banned`; neither means no
    constraint. Small sets are scattered into a -inf row; large ones (free prose) mask their few banned ids."""

    ids: torch.Tensor | None = None
    banned: torch.Tensor | None = None
    probe: torch.Tensor | None = None  # with `banned`: a few allowed ids, to see cheaply that a row is not all -inf

    @property
    def unconstrained(self) -> bool:
        """True when every token is allowed (after the answer ended)."""
        return self.ids is None and self.banned is None


class ConstraintEngine:
    """Allowed tokens and transitions for one answer program over one token table.

    Dead ends cannot occur: every literal is spellable byte by byte, every tone requirement has a one-character
    token, a rhyme group is only open if it has enough distinct one-character rhyme tokens for all its slots under
    every rhyme key they use (词: the 部 read 平 or 仄 as the slot's tone asks, so they also fit its tone), and
    free strings close (only) when the remaining budget is just enough for the worst case of the rest.
    """

    def __init__(self, table: TokenTable, program: Program) -> None:
        self.table = table
        self.program = program
        self.stop_ids = torch.as_tensor(list(table.vocab.stop_ids), dtype=torch.long)
        self._literal_cache: dict[tuple[int, int, bytes], torch.Tensor] = {}
        self._free_cache: dict[tuple, Allowed] = {}
        self._line_cache: dict[tuple, tuple[Allowed, torch.Tensor, list[tuple[int, torch.Tensor]]]] = {}
        self._used_cache: dict[frozenset[str], torch.Tensor] = {}
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
        """Per rhyme set, the groups with enough distinct one-character tokens for every slot of the set, under each
        rhyme key its slots use (so the last slot always has an unused rhyme character of the right tone)."""
        need: dict[int, int] = {}
        suffixes: dict[int, set[str]] = {}
        for template in family.templates:
            for rset, count in template.rhyme_counts().items():
                need[rset] = max(need.get(rset, 0), count)
            for line in template.lines:
                if line.rhyme is not None:
                    suffixes.setdefault(line.rhyme, set()).add(line.rhyme_suffix)
        singles = self.table.single_by_key
        out = []
        for rset, spec in enumerate(family.rhyme_sets):
            count = need.get(rset, 0)
            ok = frozenset(g for g in spec.groups if all(len(singles.get(g + sfx, ())) >= count for sfx in suffixes.get(rset, {""})))
            if not ok:
                raise ValueError(f"{family.poem_type}{family.title_head}: no rhyme group has {count} rhyme characters in this vocabulary")
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
            return self._line_allowed(state, segment)
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
        room = remaining - 1 - state.program.worst[state.seg + 1]  # spare steps if this token is text
        grow = state.chars < segment.max_chars
        text: str | None = None
        if segment.kind == "title":  # 汉字 only: every token leaves the title closable
            text = "title" if (grow and room >= 0) or not state.filled else None
        elif grow and room >= 1:
            text = "start" if state.chars == 0 else "text"
        elif room >= 0 and (grow or not state.filled):  # the last text token must leave the string closable
            text = "alone" if state.chars == 0 else "end"
        close = state.filled  # the budget check at build time leaves room for one text token before closing
        key = (id(state.program), state.seg, text, close)
        found = self._free_cache.get(key)
        if found is None:
            found = self._free_cache[key] = self._free_set(text, self._literal_ids(state.program, state.seg + 1, b"") if close else None)
        return found

    def _free_set(self, text: str | None, closing: torch.Tensor | None) -> Allowed:
        """Text tokens of one kind (title ids, or prose: all but a banned set) united with the closing literal's ids."""
        table = self.table
        if text is None:
            assert closing is not None
            return Allowed(ids=closing)
        if text == "title":
            return Allowed(ids=table.title_ids if closing is None else torch.cat([table.title_ids, closing]))
        banned = {"start": table.start_banned, "text": table.text_banned, "alone": table.alone_banned, "end": table.end_banned}[text]
        if closing is not None:
            banned = banned[~torch.isin(banned, closing)]
        keep = np.ones(min(table.size, 4096), dtype=bool)
        keep[banned[banned < len(keep)].numpy()] = False
        probe = torch.from_numpy(np.flatnonzero(keep)[:64])
        if closing is not None:
            probe = torch.cat([closing, probe])
        return Allowed(banned=banned, probe=probe)

    def _line_allowed(self, state: State, segment: Line) -> Allowed:
        """Union over still-open templates of the tokens that fit the rest of this line: the part without used rhyme
        characters is cached per state key (bounded: sets are up to ~15k ids); used ones are taken out per call."""
        key = (id(state.program), segment.index, state.chars, state.templates, state.groups)
        found = self._line_cache.get(key)
        if found is None:
            if len(self._line_cache) >= LINE_CACHE_ENTRIES:
                self._line_cache.clear()
            found = self._line_cache[key] = self._line_parts(state, segment)
        plain, base, rhyming = found
        if not any(state.used[rset] for rset, _ in rhyming):
            return plain
        parts = [base]
        for rset, ids in rhyming:
            used = state.used[rset]
            parts.append(ids[~torch.isin(ids, self._used_ids(used))] if used else ids)
        return Allowed(ids=torch.cat(parts))

    def _used_ids(self, used: frozenset[str]) -> torch.Tensor:
        """Tokens ending in an already used rhyme character (cached per set: rows of a batch share them)."""
        found = self._used_cache.get(used)
        if found is None:
            if len(self._used_cache) >= LINE_CACHE_ENTRIES:
                self._used_cache.clear()
            found = self._used_cache[used] = torch.from_numpy(self.table.used_ids(used))
        return found

    def _line_parts(self, state: State, segment: Line) -> tuple[Allowed, torch.Tensor, list[tuple[int, torch.Tensor]]]:
        """(every fitting token when no rhyme character is used yet, the tokens not ending a rhyme, the rhyming
        tokens by rhyme set): ids possibly repeated across templates, which a scatter does not mind."""
        family = state.program.family
        assert family is not None
        seen: set[tuple] = set()
        parts: list[np.ndarray] = []
        rhyming: list[tuple[int, torch.Tensor]] = []
        for t_index, template in enumerate(family.templates):
            if not state.templates >> t_index & 1:
                continue
            line = template.lines[segment.index]
            reqs = line.tones[state.chars:]
            if (reqs, line.rhyme, line.rhyme_suffix) in seen:
                continue
            seen.add((reqs, line.rhyme, line.rhyme_suffix))
            short, exact = self.table.fit(reqs)
            parts.append(short)
            if line.rhyme is None:
                parts.append(exact)
                continue
            keys = frozenset(g + line.rhyme_suffix for g in state.groups[line.rhyme])
            rhyming.append((line.rhyme, torch.from_numpy(self.table.rhyming(exact, reqs, keys))))
        base = torch.from_numpy(np.concatenate(parts))
        return Allowed(ids=torch.cat([base] + [ids for _, ids in rhyming])), base, rhyming

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
            keys = self.table.rhyme_keys.get(token_id, frozenset())
            fits = any(g + line.rhyme_suffix in keys for g in state.groups[line.rhyme])
            return fits and self.table.last_char[token_id] not in state.used[line.rhyme]
        return True

    def _advance_line(self, state: State, segment: Line, token_id: int) -> State:
        """Move along a poem line, narrowing templates; at its end, narrow rhyme groups and record the rhyme."""
        family = state.program.family
        assert family is not None
        alive = 0
        rhyme_slots: set[tuple[int, str]] = set()
        for t_index, template in enumerate(family.templates):
            line = template.lines[segment.index]
            if state.templates >> t_index & 1 and self._token_fits(line, state.chars, token_id, state):
                alive |= 1 << t_index
                if line.rhyme is not None:
                    rhyme_slots.add((line.rhyme, line.rhyme_suffix))
        if not alive:
            raise ValueError(f"token {token_id} does not fit line {segment.index + 1} at position {state.chars + 1}")
        chars = state.chars + int(self.table.han_len[token_id])
        new = replace(state, chars=chars, templates=alive)
        if chars < len(family.shape.lines[segment.index].tones):
            return new
        groups, used = list(state.groups), list(state.used)
        last = self.table.last_char[token_id]
        keys = self.table.rhyme_keys.get(token_id, frozenset())
        for rset, suffix in sorted(rhyme_slots):
            narrowed = frozenset(g for g in groups[rset] if g + suffix in keys)
            if narrowed:  # a template where this line does not rhyme may also be alive; only narrow when it rhymes
                groups[rset] = narrowed
                used[rset] = used[rset] | {last}
        return self._next(replace(new, groups=tuple(groups), used=tuple(used)))
