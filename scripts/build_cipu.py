"""Convert the 词谱 data in ../shared/cipu/ (couyun, MIT) into the compact resource poemlib.meter reads at runtime.

    .venv/bin/python scripts/build_cipu.py [--src ../shared/cipu] [--out poemlib/resources/cipu]

Writes `cipu.json.gz` (deterministic bytes: the same input gives the same file) and copies the MIT `LICENSE`.
Run it at development time only; the package and CI read the committed output and never need ../shared.

Per 体 the resource keeps: the 平仄 pattern (平/仄/中 per character), the 句 structure as (length, mark) pieces
(mark: 韵 叶 叠 = a rhyme unit ends, 句 = a line ends, 读 = a pause inside a line), the rhyme groups (positions
from `yun_classify`, negative = 叶 in the other tone of the same rhyme) and the 谱's example text.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = ROOT.parent / "shared" / "cipu"
DEFAULT_OUT = ROOT / "poemlib" / "resources" / "cipu"
FORMAT_VERSION = 1

# Common alternative names the data does not list (龙榆生《唐宋词格律》 and everyday usage); the data's own
# names win where a name is a 词牌 of its own there (山花子, 浪淘沙令 …).
EXTRA_ALIASES: dict[str, tuple[str, ...]] = {
    "浣溪沙": ("浣沙溪", "浣溪纱", "小庭花", "满院春", "东风寒", "醉木犀"),
    "摊破浣溪沙": ("南唐浣溪沙", "添字浣溪沙"),
    "如梦令": ("忆仙姿", "宴桃源"),
    "忆江南": ("梦江南", "谢秋娘", "春去也", "望江梅"),
    "长相思": ("双红豆", "忆多娇", "吴山青", "山渐青"),
    "菩萨蛮": ("菩萨鬘", "巫山一片云"),
    "西江月": ("白蘋香", "步虚词", "江月令"),
    "鹧鸪天": ("思佳客", "醉梅花"),
    "蝶恋花": ("鹊踏枝", "凤栖梧", "黄金缕", "一箩金", "鱼水同欢", "卷珠帘"),
    "清平乐": ("清平乐令", "忆萝月", "醉东风"),
    "卜算子": ("百尺楼", "楚天遥", "眉峰碧"),
    "点绛唇": ("点樱桃", "十八香", "南浦月", "沙头雨"),
    "虞美人": ("一江春水", "玉壶水", "巫山十二峰"),
    "临江仙": ("谢新恩", "雁后归", "画屏春", "庭院深深"),
    "浪淘沙": ("卖花声", "过龙门", "曲入冥"),
    "渔家傲": ("吴门柳", "忍辱仙人", "荆溪咏", "游仙关"),
    "江城子": ("江神子", "村意远"),
    "满江红": ("上江虹", "念良游", "伤春曲"),
    "水调歌头": ("元会曲", "凯歌", "台城游", "花犯念奴"),
    "念奴娇": ("百字令", "百字谣", "湘月", "壶中天", "无俗念", "大江东去", "酹江月"),
    "沁园春": ("东仙", "寿星明", "洞庭春色"),
    "青玉案": ("横塘路", "西湖路"),
    "一剪梅": ("玉簟秋",),
    "天净沙": ("塞上秋",),
    "相见欢": ("上西楼", "忆真妃", "月上瓜洲"),
    "采桑子": ("丑奴儿", "丑奴儿令", "罗敷媚", "罗敷艳歌"),
    "钗头凤": ("折红英", "惜分钗"),
    "破阵子": ("十拍子",),
    "定风波": ("定风流", "卷春空", "醉琼枝"),
    "声声慢": ("胜胜慢", "凤求凰", "人在楼上"),
    "雨霖铃": ("雨淋铃",),
    "苏幕遮": ("鬓云松令", "云雾敛"),
    "踏莎行": ("柳长春", "芳心苦"),
    "生查子": ("楚云深", "梅和柳", "晴色入青山", "陌上郎"),
    "南乡子": ("好离乡", "蕉叶怨"),
    "忆秦娥": ("碧云深", "双荷叶"),
    "武陵春": ("武林春", "花想容"),
    "捣练子": ("深院月", "捣练子令"),
    "眼儿媚": ("秋波媚", "小阑干"),
    "诉衷情": ("桃花水",),
    "减字木兰花": ("木兰香", "减兰"),
    "鹊桥仙": ("金风玉露相逢曲", "广寒秋"),
    "玉楼春": ("木兰花", "惜春容"),
    "朝中措": ("照江梅", "芙蓉曲"),
    "阮郎归": ("醉桃源", "碧桃春"),
    "太常引": ("太清引", "腊前梅"),
    "永遇乐": ("消息",),
    "八声甘州": ("甘州", "潇潇雨", "宴瑶池"),
    "扬州慢": ("郎州慢",),
    "桂枝香": ("疏帘淡月",),
    "水龙吟": ("龙吟曲", "庄椿岁", "小楼连苑"),
    "行香子": ("爇心香",),
}

# Everyday names that the 谱 lists as an alias: they become the canonical name (the 谱's name an alias).
PREFERRED_NAMES = ("钗头凤", "调笑令", "十六字令")

_TONES = "平仄中"
_UNIT_END = "韵叶叠重"
_KEEP = re.compile(r"[^平仄中句读韵叶叠重换\u3000]")


def _unit_pieces(unit: str, strip_rhyme_tone: bool) -> tuple[str, list[tuple[int, str]]] | None:
    """One rhyme unit of ge_lyu_sep as (tones, [(length, mark)...]); None when it cannot be read this way."""
    text = _KEEP.sub("", unit).strip("\u3000")  # drops 和声 words (竹枝, 女儿) the 谱 prints inside the pattern
    text = re.sub(r"换[平仄]?", "", text)  # 换平韵 / 换仄韵: the tone after 换 names the new rhyme, not a character
    if not text or text[-1] not in _UNIT_END:
        return None
    end = "叠" if text[-1] == "重" else text[-1]
    body = text[:-1]
    if strip_rhyme_tone and end in "韵叶" and body and body[-1] in "平仄":
        body = body[:-1]  # some 体 print the rhyme's tone before 韵 (仄韵) in addition to the pattern
    tones, pieces, run = [], [], 0
    for ch in body:
        if ch in _TONES:
            tones.append(ch)
            run += 1
        elif run:
            pieces.append((run, "句" if ch == "句" else "读"))
            run = 0
    if not run:
        return None
    pieces.append((run, end))
    return "".join(tones), pieces


def parse_structure(ti: dict[str, Any]) -> list[tuple[int, str]] | None:
    """The (length, mark) pieces of one 体 whose tones equal its ge_lyu_str; None when no reading fits."""
    pattern = ti["ge_lyu_str"]
    for strip in (False, True):
        units = [_unit_pieces(unit, strip) for unit in ti["ge_lyu_sep"]]
        if all(units) and "".join(u[0] for u in units) == pattern:  # type: ignore[index]
            return [piece for u in units for piece in u[1]]  # type: ignore[index]
    # Fallback: the example text cut the same way (a full-width space marks a pause inside a unit).
    pieces = []
    for unit in ti.get("ci_sep") or []:
        parts = [p for p in unit.split("\u3000") if p]
        pieces += [(len(p), "句") for p in parts[:-1]] + ([(len(parts[-1]), "韵")] if parts else [])
    return pieces if sum(n for n, _ in pieces) == len(pattern) and pieces else None


def _n_pian(kind: str, length: int, base_length: int) -> int:
    """Number of 片 of a 体: the 词牌's (单调 1, 双调 2, 三叠 3, 四叠 4), scaled when a 体 doubles or halves it."""
    base = {"单调": 1, "双调": 2, "三叠": 3, "四叠": 4}.get(kind, 1)
    ratio = length / base_length if base_length else 1.0
    return base if 0.6 < ratio < 1.6 else max(1, round(base * ratio))


def _convert_ti(ti: dict[str, Any], label: str, kind: str, base_length: int) -> dict[str, Any] | None:
    """One 体 in the compact form, or None when its structure cannot be read."""
    pieces = parse_structure(ti)
    pattern = ti["ge_lyu_str"]
    if pieces is None or not set(pattern) <= set(_TONES):
        return None
    groups = sorted((sorted(v, key=abs) for v in ti["yun_classify"].values() if v), key=lambda g: abs(g[0]))
    if any(abs(p) >= len(pattern) for g in groups for p in g):
        return None
    return {
        "label": label,
        "pattern": pattern,
        "pieces": "".join(f"{n}{m}" for n, m in pieces),
        "rhymes": groups,
        "pian": _n_pian(kind, len(pattern), base_length),
        "origin": ti.get("origin", ""),
    }


def build(src: Path = DEFAULT_SRC) -> dict[str, Any]:
    """The whole resource as a JSON-ready dict (also reports how many 词牌 and 体 were read)."""
    index = json.loads((src / "ci_index.json").read_text(encoding="utf-8"))
    taken = {name for entry in index for name in entry["names"]}
    cipai, n_ti, skipped = [], 0, []
    for entry in index:
        name, kind = entry["names"][0], entry["type"][0]
        tis = json.loads((src / "ci_list" / f"cipai_{entry['idx']}.json").read_text(encoding="utf-8"))
        base_length = len(tis[0]["ge_lyu_str"]) if tis else 0
        labels = ["正体"] + [f"又一体{i}" for i in range(1, len(tis))]
        forms = [_convert_ti(ti, label, kind, base_length) for ti, label in zip(tis, labels)]
        n_ti += len(tis)
        skipped += [f"{name} {label}" for form, label in zip(forms, labels) if form is None]
        long_path = src / "ci_long" / f"cipai_{entry['idx']}_long.json"
        if entry.get("long_exist") and long_path.exists():
            long_tis = json.loads(long_path.read_text(encoding="utf-8"))
            forms += [_convert_ti(ti, f"龙谱{i + 1}" if len(long_tis) > 1 else "龙谱", kind, base_length) for i, ti in enumerate(long_tis)]
        forms = [f for f in forms if f is not None]
        if not forms:
            continue
        names = list(entry["names"])
        preferred = [n for n in names if n in PREFERRED_NAMES]
        if preferred:
            name = preferred[0]
            names.remove(name)
            names.insert(0, name)
        extra = [a for a in EXTRA_ALIASES.get(name, ()) if a not in taken]
        aliases = list(dict.fromkeys([*names[1:], *extra, *entry.get("names_trad", [])]))
        cipai.append({"name": name, "aliases": [a for a in aliases if a != name], "kind": kind, "forms": forms})
    return {
        "version": FORMAT_VERSION,
        "source": "couyun ci_pu (MIT): 《钦定词谱》 ci_list, 龙榆生《唐宋词格律》 ci_long",
        "counts": {"cipai_in": len(index), "ti_in": n_ti, "cipai": len(cipai), "ti_skipped": skipped},
        "cipai": cipai,
    }


def encode(data: dict[str, Any]) -> bytes:
    """Deterministic gzip bytes of the resource."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return gzip.compress(raw, compresslevel=9, mtime=0)


def main() -> None:
    """Convert and write the resource and its licence."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    data = build(args.src)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cipu.json.gz").write_bytes(encode(data))
    shutil.copyfile(args.src / "LICENSE", args.out / "LICENSE")
    counts = data["counts"]
    n_forms = sum(len(c["forms"]) for c in data["cipai"])
    print(f"{counts['cipai']}/{counts['cipai_in']} 词牌, {counts['ti_in'] - len(counts['ti_skipped'])}/{counts['ti_in']} 体 "
          f"(+ 龙榆生 forms: {n_forms} forms in all); skipped: {counts['ti_skipped']}")


if __name__ == "__main__":
    main()
