"""The demo studio: choose a photo, customise the request, and compare Gemini, base Qwen and LoRA Qwen side by side.

    from poemlib.demo import build_app
    app = build_app(profile="offline")   # backends load in the background; the page is usable at once
    app.widget                           # display it (notebook 06_demo, served by Voilà with `poemlib demo`)

    config.py      configs/demo.yaml as DemoSettings (every default in one place), backend order and titles
    photos.py      samples, uploads (checked, EXIF-rotated, RGB, pixel budget), previews and gallery thumbnails
    state.py       Customisation (the fields → PoemRequest), Column (per-backend state), ControllerEvents
    controller.py  StudioController: the state engine without widgets (photo, customisation → PoemRequest, backend
                   selection, concurrent generation, per-column state, results and 格律 reports)
    markup.py      the studio's own HTML around poemlib.render's cards (pills, headers, banner, messages)
    panels.py      the ipywidgets, built by small builders
    studio.py      PoemStudio: binds the panels to a controller; headless run for papermill
    app.py         build_app

- Cards come from `poemlib.render` (the one renderer); 格律 reports from `poemlib.meter.check_annotation`.
- Generate runs the chosen backends concurrently in threads; each column shows a busy indicator and fills as its
  backend finishes; one backend's failure stays in its own column.
- Photos (uploads and samples) are EXIF-rotated, made RGB and downscaled to the shared pixel budget
  (configs/vision.yaml) once; a bad upload gives a message and the app keeps working.

Stable CSS hooks for tests: `.poem-studio`, `.sample-button`, `.generate-button`, `.demo-status`,
`.poem-col-<backend> .poem-card .poem-line`, `.meter-badge`, `.poem-busy`, `.poem-error`.
"""

from poemlib.demo.app import build_app
from poemlib.demo.config import (
    BACKEND_ORDER,
    OFFLINE_BANNER,
    DemoSettings,
    load_demo_config,
    running_in_voila,
)
from poemlib.demo.controller import StudioController, meter_report
from poemlib.demo.state import Column, ColumnPhase, ControllerEvents, Customisation
from poemlib.demo.studio import PoemStudio

__all__ = [
    "BACKEND_ORDER",
    "OFFLINE_BANNER",
    "Column",
    "ColumnPhase",
    "ControllerEvents",
    "Customisation",
    "DemoSettings",
    "PoemStudio",
    "StudioController",
    "build_app",
    "load_demo_config",
    "meter_report",
    "running_in_voila",
]
