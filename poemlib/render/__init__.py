"""The one poem renderer (HTML): 平/仄-coloured lines, violations, 格律 badges and cards, with one stylesheet.

    from poemlib import render
    render.poem_card_html(annotation, meter_report)      # a poem as a card
    render.result_card_html(generation_result, report)   # a backend's answer: poem, unfit verdict or failure
    render.styled(html)                                   # with the stylesheet inlined (notebooks)
"""

from poemlib.render.card import (
    ERROR_TITLES,
    PARSE_KINDS,
    PARSE_TITLE,
    busy_html,
    error_card_html,
    idle_html,
    poem_card_html,
    result_card_html,
    stats_html,
)
from poemlib.render.poem import (
    MARK_CLASSES,
    MARK_NAMES,
    badge_html,
    escape,
    meter_badges_html,
    poem_lines_html,
    tone_legend_html,
    violations_html,
)
from poemlib.render.style import stylesheet, styled

__all__ = [
    "ERROR_TITLES",
    "MARK_CLASSES",
    "MARK_NAMES",
    "PARSE_KINDS",
    "PARSE_TITLE",
    "badge_html",
    "busy_html",
    "error_card_html",
    "escape",
    "idle_html",
    "meter_badges_html",
    "poem_card_html",
    "poem_lines_html",
    "result_card_html",
    "stats_html",
    "styled",
    "stylesheet",
    "tone_legend_html",
    "violations_html",
]
