"""`annotate_image`: one image for other stages, through the same request, retries and parsing."""

from __future__ import annotations

from PIL import Image

from poemlib import annotate as ann
from poemlib.config import SAMPLE_DIR
from poemlib.samples import reference_by_name
from tests.annotate.helpers import fast_config


def test_annotate_image_for_other_stages(gemini_replay_server) -> None:
    cfg = fast_config()
    client = ann.make_client(cfg, api_key="offline", base_url=gemini_replay_server.base_url)
    result = ann.annotate_image(client, cfg, SAMPLE_DIR / "cat_chelsea.jpg")
    assert result.ok and result.annotation == reference_by_name()["cat_chelsea.jpg"] and result.usage.prompt_tokens > 0
    with Image.open(SAMPLE_DIR / "text_page_scan.jpg") as image:
        unfit = ann.annotate_image(client, cfg, image, instruction="请作一首七言绝句。")
    assert unfit.annotation is not None and unfit.annotation.create_condition is False
    bad = ann.annotate_image(client, cfg, b"not an image")
    assert bad.error_kind == "bad_image" and gemini_replay_server.stats.requests == 2
    gemini_replay_server.plan.extend_script(["503", "ok"])
    assert ann.annotate_image(client, cfg, SAMPLE_DIR / "coffee_cup.jpg").ok  # retried like the stage does
