"""Dev-time check that a change to the engine leaves every report as it was (not collected by pytest).

    # the poem set: calls recorded from the meter tests (optional) + generated 近体 and 词 of the speed benchmark
    python tests/meter/report_equivalence.py gen POEMS.json [RECORDED_CALLS.json]
    # reports of one checkout (run once with PYTHONPATH=<a `git archive` of the old tree>, once without)
    python tests/meter/report_equivalence.py dump POEMS.json REPORTS.json
    python tests/meter/report_equivalence.py compare OLD.json NEW.json POEMS.json   # exit 1 when any report differs

Fields added since (rhyme_positions) are left out of the comparison.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

_NEW_FIELDS = ("rhyme_positions",)


def speed_module():
    """benchmarks/meter_speed.py, for its poem generators."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "meter_speed.py"
    spec = importlib.util.spec_from_file_location("meter_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(out: Path, recorded: Path | None = None) -> None:
    """Write the poem set: [poem_type, content, title, mode] per poem."""
    speed = speed_module()
    calls = [tuple(c) for c in json.loads(recorded.read_text(encoding="utf-8"))] if recorded else []
    calls = list(dict.fromkeys(calls))
    calls += [(p, c, t, "pingshui") for p, c, t in speed.make_poems(6000, seed=2) if p != "词"][:4000]
    calls += [(p, c, t, "xinyun") for p, c, t in speed.make_poems(1500, seed=5)]
    calls += [(p, c, t, "pingshui") for p, c, t in speed.make_poems(1500, seed=7)]
    calls += [("词", c, t, "pingshui") for c, t in speed.make_ci(3000, seed=3)]
    calls += [("词", c, t, "xinyun") for c, t in speed.make_ci(500, seed=4)]
    out.write_text(json.dumps(calls, ensure_ascii=False), encoding="utf-8")
    print(f"{len(calls)} poems -> {out}")


def dump(poems: Path, out: Path) -> None:
    """Write every poem's report (or the error it raised) as JSON."""
    from poemlib.meter import check

    rows = []
    for ptype, content, title, mode in json.loads(poems.read_text(encoding="utf-8")):
        try:
            report = check(ptype, content, title, mode).model_dump(mode="json")
        except Exception as exc:  # noqa: BLE001 - an error is a result to compare too
            rows.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        for name in _NEW_FIELDS:
            report.pop(name, None)
        rows.append(report)
    out.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")


def compare(old: Path, new: Path, poems: Path) -> bool:
    """Print how many reports differ (and the first few differences); True when none does."""
    before, after = json.loads(old.read_text(encoding="utf-8")), json.loads(new.read_text(encoding="utf-8"))
    inputs = json.loads(poems.read_text(encoding="utf-8"))
    differ = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    print(f"{len(before)} vs {len(after)} reports, {len(differ)} differ")
    for i in differ[:5]:
        print(inputs[i])
        for key in sorted(set(before[i]) | set(after[i])):
            if before[i].get(key) != after[i].get(key):
                print("  ", key, "OLD", before[i].get(key), "NEW", after[i].get(key))
    return not differ and len(before) == len(after)


if __name__ == "__main__":
    command, *paths = sys.argv[1:]
    if command == "gen":
        generate(Path(paths[0]), Path(paths[1]) if len(paths) > 1 else None)
    elif command == "dump":
        dump(Path(paths[0]), Path(paths[1]))
    elif command == "compare":
        sys.exit(0 if compare(Path(paths[0]), Path(paths[1]), Path(paths[2])) else 1)
    else:
        sys.exit(f"unknown command {command!r}; expected gen, dump or compare")
