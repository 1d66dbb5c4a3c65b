"""Speed of the 格律 engine: check 10,000 poems (all five types, both well-formed and broken) and print the time.

    .venv/bin/python benchmarks/meter_speed.py [--regular-n 10000] [--repeat 5] [--n 10000] [--ci-n 10000] [--mode pingshui|xinyun]

Poems are generated deterministically from a pool of ~2,500 common characters, so the per-character caches
fill as they would on a real annotation file; table loading is included in the time. The first figure times
近体 alone (target REGULAR_TARGET_S), in a fresh engine.
The second figure times 词 alone: --ci-n 词 of 词牌 drawn from the whole 词谱 (817 词牌), each written in one of its
体 (half random, half following its 平仄 with a tenth of characters wrong; a tenth with a character missing),
checked against every 体 of its 词牌; target CI_TARGET_S.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time

TARGET_S = 5.0
CI_TARGET_S = 5.0
REGULAR_TARGET_S = 1.5  # 10,000 近体 alone

# A few real poems keep the mix honest (famous lines reach the 拗救 and 特定句式 paths).
_REAL = [
    ("七言律诗", "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。", None),
    ("七言绝句", "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。", None),
    ("五言律诗", "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。", None),
    ("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", None),
    ("词", "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回？\n\n无可奈何花落去，似曾相识燕归来。小园香径独徘徊。", "浣溪沙·春恨"),
]
_SHAPES = {"五言绝句": (4, 5), "七言绝句": (4, 7), "五言律诗": (8, 5), "七言律诗": (8, 7)}
_CI = [("浣溪沙", [[7, 7, 7], [7, 7, 7]]), ("如梦令", [[6, 6, 5, 6, 2, 2, 6]]), ("菩萨蛮", [[7, 7, 5, 5], [5, 5, 5, 5]]),
       ("水调歌头", [[5, 5, 6, 5, 6, 6, 5, 5, 5], [3, 3, 3, 4, 7, 6, 6, 5, 5, 5]]), ("无名调", [[4, 4, 4]])]


def _pool() -> str:
    """Common characters: GB2312 level 1 (3,755 characters), skipping a third to keep some variety in lookups."""
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.append(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return "".join(chars[::3] + chars[1::3])


def make_poems(n: int, seed: int = 0) -> list[tuple[str, str, str | None]]:
    """n (poem_type, content, title) triples: a few real poems, random regular verse (some broken), random 词."""
    rng = random.Random(seed)
    pool = _pool()
    poems: list[tuple[str, str, str | None]] = []
    while len(poems) < n:
        roll = rng.random()
        if roll < 0.1:
            poems.append(rng.choice(_REAL))
        elif roll < 0.8:
            ptype = rng.choice(list(_SHAPES))
            count, length = _SHAPES[ptype]
            if rng.random() < 0.1:  # broken form: a line too long or a line missing
                count += rng.choice((-1, 0))
            lines = ["".join(rng.choice(pool) for _ in range(length + (rng.random() < 0.05))) for _ in range(count)]
            sep = rng.choice(("，。\n", "\n"))
            poems.append((ptype, "".join(f"{line}{sep[i % 2] if len(sep) > 1 else sep}" for i, line in enumerate(lines)), None))
        else:
            name, stanzas = rng.choice(_CI)
            text = "\n\n".join("，".join("".join(rng.choice(pool) for _ in range(k)) for k in stanza) + "。" for stanza in stanzas)
            poems.append(("词", text, f"{name}·无题"))
    return poems


def _pools_by_tone(pool: str) -> dict[str, str]:
    """The character pool split by 平水韵 tone (平, 仄) and everything for 中."""
    from poemlib.meter.readings import PING, ZE, reading

    return {"平": "".join(ch for ch in pool if reading(ch).tone == PING), "仄": "".join(ch for ch in pool if reading(ch).tone == ZE), "中": pool}


def make_ci(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """n (content, title) pairs in the 句 structure of a random 体 of a random 词牌 of the whole 词谱.

    Half are random characters (dozens of faults each); half follow the 体's 平仄 with one character in ten
    wrong, as a model that has learnt the form writes; a tenth lose a character (no 体, or another one, fits).
    """
    from poemlib.meter.cipai import load_cipai

    rng = random.Random(seed)
    pool = _pool()
    by_tone = _pools_by_tone(pool)
    table = list(load_cipai().values())
    out = []
    for _ in range(n):
        cipai = rng.choice(table)
        ti = rng.choice(cipai.variants)
        shaped = rng.random() < 0.5
        chars = [rng.choice(by_tone[want] if shaped and rng.random() > 0.1 else pool) for want in ti.pattern]
        if rng.random() < 0.1:
            chars.pop()
        text, pos = [], 0
        for length, mark in ti.pieces:
            text.append("".join(chars[pos:pos + length]) + ("、" if mark == "读" else "，" if mark == "句" else "。"))
            pos += length
        out.append(("".join(text), f"{cipai.name}·无题"))
    return out


def time_ci(n: int, mode: str) -> None:
    """Time the check of n generated 词 of mixed 词牌 and print the figure (the 词谱 is loaded before the clock starts)."""
    from poemlib.meter import check

    poems = make_ci(n)
    start, cpu_start = time.perf_counter(), time.process_time()
    passed = sum(check("词", text, title, mode).form_ok is True for text, title in poems)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"{n} 词 of mixed 词牌 in {elapsed:.2f} s (target <= {CI_TARGET_S:.0f} s; {passed} fit a 体; CPU {cpu:.2f} s)")


def time_regular(n: int, mode: str) -> tuple[float, float, int]:
    """Seconds (wall, CPU) and passes for n generated 近体 alone (绝句 and 律诗, some broken; engine import and tables
    inside the clock, so this must run in a process that has not imported the engine)."""
    poems = [p for p in make_poems(2 * n, seed=2) if p[0] != "词"][:n]
    start, cpu_start = time.perf_counter(), time.process_time()
    from poemlib.meter import check

    passed = sum(check(ptype, content, title, mode).ok for ptype, content, title in poems)
    return time.perf_counter() - start, time.process_time() - cpu_start, passed


def report_regular(n: int, mode: str, repeat: int) -> None:
    """Time n 近体 in `repeat` fresh processes (this one first) and print each run, the best and the median."""
    runs = [time_regular(n, mode)]
    for _ in range(repeat - 1):
        cmd = [sys.executable, __file__, "--regular-n", str(n), "--n", "0", "--ci-n", "0", "--mode", mode, "--regular-json"]
        runs.append(tuple(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)))
    for elapsed, cpu, passed in runs:
        print(f"{n} 近体 in {elapsed:.2f} s (target <= {REGULAR_TARGET_S:.1f} s; {passed} pass; CPU {cpu:.2f} s)")
    if repeat > 1:
        walls = sorted(run[0] for run in runs)
        # The host's speed drifts by a third between runs of the same code: the best run is the code's own figure.
        print(f"{n} 近体, {repeat} fresh processes: best {walls[0]:.2f} s, median {statistics.median(walls):.2f} s (target <= {REGULAR_TARGET_S:.1f} s)")


def main() -> None:
    """Time the check of n generated poems and print the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--ci-n", type=int, default=10_000, help="词 of mixed 词牌 for the second timing (0 skips it)")
    parser.add_argument("--mode", default="pingshui", choices=("pingshui", "xinyun"))
    parser.add_argument("--regular-n", type=int, default=10_000, help="近体 alone, timed first in a fresh engine (0 skips it)")
    parser.add_argument("--repeat", type=int, default=1, help="time the 近体 in this many fresh processes (best and median)")
    parser.add_argument("--regular-json", action="store_true", help=argparse.SUPPRESS)  # one 近体 timing as JSON (for --repeat)
    args = parser.parse_args()
    if args.regular_json:
        print(json.dumps(time_regular(args.regular_n, args.mode)))
        return
    if args.regular_n:
        report_regular(args.regular_n, args.mode, args.repeat)
    poems = make_poems(args.n)
    start, cpu_start = time.perf_counter(), time.process_time()
    from poemlib.meter import check

    passed = 0
    for ptype, content, title in poems:
        report = check(ptype, content, title, args.mode)
        passed += report.ok
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    # CPU time too: on a shared machine the wall clock also counts other people's processes.
    print(f"{args.n / elapsed:,.0f} poems/s ({args.mode}; {passed} of {args.n} pass every applicable check; CPU {cpu:.2f} s)")
    print(f"{args.n} poems in {elapsed:.2f} s (target <= {TARGET_S:.0f} s)")
    if args.ci_n:
        time_ci(args.ci_n, args.mode)


if __name__ == "__main__":
    main()
