"""Hand-written poems, legacy shards and store lines shared by the clean tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from poemlib.clean import clean
from poemlib.config import SAMPLE_DIR

# Classical poems that are right in every respect, and one that is clearly broken.
DENG = "白日依山尽，\n黄河入海流。\n欲穷千里目，\n更上一层楼。"  # 五言绝句
ZAOFA = "朝辞白帝彩云间，\n千里江陵一日还。\n两岸猿声啼不住，\n轻舟已过万重山。"  # 七言绝句
CHUNWANG = "国破山河在，\n城春草木深。\n感时花溅泪，\n恨别鸟惊心。\n烽火连三月，\n家书抵万金。\n白头搔更短，\n浑欲不胜簪。"  # 五言律诗
SHANXING_TRAD = "遠上寒山石徑斜，\n白雲生處有人家。\n停車坐愛楓林晚，\n霜葉紅於二月花。"  # 七言絕句, traditional
HUANXISHA = "一曲新词酒一杯，\n去年天气旧亭台。\n夕阳西下几时回。\n\n无可奈何花落去，\n似曾相识燕归来。\n小园香径独徘徊。"  # 词
BROKEN = "白日山，\n黄河入海流去也不回头啊。\n欲穷。"  # not a 五言绝句 by any measure

# The policy of the hand counts: unfit photos and wrong forms are dropped, 平仄/rhyme faults kept but flagged.
POLICY = {"drop_unfit": True, "drop_form_fail": True, "drop_tone_fail": False, "drop_rhyme_fail": False, "drop_missing_image": True}


def gc(ptype, title, content, explanation="赏析。", **extra):
    """A legacy generated_content object for a poem."""
    return {"create_condition": True, "poem_type": ptype, "poem_title": title, "poem_content": content, "poem_explanation": explanation, **extra}


def unfit(reason):
    """A legacy generated_content object for an unfit photo."""
    return {"create_condition": False, "poem_type": None, "poem_title": None, "poem_content": reason, "poem_explanation": "不宜作诗。"}


def sample_files() -> list[Path]:
    """Distinct image files to copy under an images root (the sample photos, else matplotlib's sample images)."""
    files = sorted(p for p in SAMPLE_DIR.glob("*.jpg")) if SAMPLE_DIR.is_dir() else []
    if len(files) >= 6:
        return files
    import matplotlib

    data = Path(matplotlib.get_data_path()) / "sample_data"
    return sorted(p for p in data.iterdir() if p.suffix.lower() in (".png", ".jpg"))


def write_legacy_shards(tmp_path: Path) -> dict[str, Path]:
    """Three legacy shards over a Train/ + Val/ folder; Train/99.jpg is referenced but missing."""
    root = tmp_path / "seed_images"
    names = ["Train/1.jpg", "Train/2.jpg", "Train/3.jpg", "Train/4.jpg", "Val/1.jpg", "Val/2.jpg"]
    for name, src in zip(names, sample_files()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, root / name)
    shards = tmp_path / "shards"
    shards.mkdir()
    a = [
        {"generated_content": gc("五言绝句", "登楼", DENG), "total_token_count": 1000, "image_path": "Train\\1.jpg"},  # 0
        {"generated_content": {**{k: v for k, v in gc("七言绝句", "早发", ZAOFA).items() if k != "poem_explanation"}, "poem_analysis": "写轻快。"}, "total_token_count": 1200, "image_path": "Train\\2.jpg"},  # 1
        {"generated_content": unfit("图片为文字扫描页，缺乏意象。"), "total_token_count": 500, "image_path": "Train\\3.jpg"},  # 2
        {"generated_content": gc("五言律诗", "春望", CHUNWANG), "total_token_count": 1500, "image_path": "Train\\99.jpg"},  # 3: file missing
        {"generated_content": gc("五言绝句", "无图", DENG), "total_token_count": 10},  # 4: malformed, no image_path
    ]
    b = [
        {"generated_content": gc("五言绝句", "残句", BROKEN), "total_token_count": 900, "image_path": "Train\\1.jpg"},  # dup of a[0], broken poem
        {"generated_content": gc("七言絕句", "山行", SHANXING_TRAD), "total_token_count": 1100, "image_path": "Val\\1.jpg"},
        {"generated_content": {**unfit("图片为统计图表。"), "create_condition": "false"}, "image_path": "Train\\4.jpg"},  # no token count
        {"generated_content": unfit("扫描的书页。"), "total_token_count": 450, "image_path": "Train\\3.jpg"},  # dup of a[2]
    ]
    c = {
        "records": [
            {"generated_content": "```json\n" + json.dumps(gc("七绝", "早发白帝城", ZAOFA), ensure_ascii=False) + "\n```", "total_token_count": 1300, "image_path": "Train/2.jpg"},  # dup of a[1]
            {"generated_content": gc("詞", "浣溪沙·春恨", HUANXISHA), "total_token_count": 800, "image_path": "Val\\2.jpg"},
        ]
    }
    paths = {"root": root, "a": shards / "shard_a.json", "b": shards / "shard_b.json", "c": shards / "shard_c.json"}
    paths["a"].write_text(json.dumps(a, ensure_ascii=False, indent=1), encoding="utf-8")
    paths["b"].write_text(json.dumps(b, ensure_ascii=False), encoding="utf-8")
    paths["c"].write_text(json.dumps(c, ensure_ascii=False, indent=2), encoding="utf-8")
    return paths


def run_clean(legacy, tmp_path, **kw):
    """clean() over the three shards with the hand-count policy; (report, clean file)."""
    out = tmp_path / "out" / "clean.jsonl"
    kw.setdefault("policy", POLICY)
    rep = clean([legacy["a"], legacy["b"], legacy["c"]], out, tmp_path / "out" / "report.json", images_root=legacy["root"], **kw)
    return rep, out


def read_lines(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def store_line(sha, path, status="ok", annotation=None, **extra):
    """One line of an annotate store."""
    row = {"image_sha256": sha, "image_paths": [path], "status": status, "model": "offline", "prompt_version": "v1", "usage": {"total_tokens": 100}}
    if annotation is not None:
        row["annotation"] = annotation
    row.update(extra)
    return json.dumps(row, ensure_ascii=False)
