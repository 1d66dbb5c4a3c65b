"""Stage 03: clean annotation records → a leak-free LLaMA-Factory multimodal (sharegpt) dataset.

Layout written under `out_dir` (everything relative to it, so training works from any working directory):

    poem_train.json / poem_val.json / poem_test.json   sharegpt rows: {"messages": [user, assistant], "images": [...]}
    dataset_info.json                                  entries poem_train, poem_val, poem_test
    images/<sha256><suffix>                            each used image once, named by the sha256 of its source bytes
    split_report.json                                  sizes per split and poem type, the sha256 lists, length stats
    test_refs.jsonl                                    test rows with image sha, reference annotation and request
    lengths.csv                                        token length of every row (text, visual, total)

Image paths in the rows are relative to `out_dir` (`images/<sha>.jpg`); training sets `dataset_dir: out_dir` and
`media_dir: out_dir` (poemlib.train fills media_dir from dataset_dir), so LLaMA-Factory resolves them whatever
the working directory. `images/` holds hardlinks of the source files (a copy across file systems); a photo that needs
EXIF rotation or colour conversion (LLaMA-Factory does neither the way `poemlib.images.prepare_image` does) is stored
as the normalised PNG instead, so training sees the same pixels as inference.

User turn: `"<image>" + render_instruction(request)` with a request drawn by `request_for_annotation` (no system turn:
LLaMA-Factory's qwen2_vl default system prompt applies, see poemlib.instructions). Assistant turn: exactly
`annotation_to_target(annotation)`, the text `parse_annotation_text` reads back at inference.

Split: by image sha256 (records with the same bytes under several names are one image), stratified by poem_type
(unfit photos form their own stratum), deterministic by seed. Counts are taken over images: n_test = round(N·test)
and n_val = round(N·val) (half rounds up), each at least 1 when its fraction is > 0; train gets the rest and must keep
at least one image. Images are ordered by stratum (then shuffled by seed within it) and test, then val, are drawn by
systematic sampling (evenly spaced positions with a seeded offset), so every stratum contributes in proportion.

Modules: split (by image), records (verified images and their rows), tokens (LLaMA-Factory's own length count),
write (the files), report (statistics, split report, plot), references (sample data as clean records), run.
"""

from poemlib.transform.references import reference_records, request_from_ref
from poemlib.transform.report import (
    LengthStats,
    SplitStats,
    TransformReport,
    TransformValidationError,
    load_split_report,
    plot_lengths,
)
from poemlib.transform.run import TransformSettings, transform
from poemlib.transform.split import DATASET_NAMES, SPLITS, UNFIT_STRATUM, split_counts, split_images
from poemlib.transform.tokens import TokenCounter, default_processor_path, training_settings
from poemlib.transform.write import dataset_info

__all__ = [
    "DATASET_NAMES",
    "SPLITS",
    "UNFIT_STRATUM",
    "LengthStats",
    "SplitStats",
    "TokenCounter",
    "TransformReport",
    "TransformSettings",
    "TransformValidationError",
    "dataset_info",
    "default_processor_path",
    "load_split_report",
    "plot_lengths",
    "reference_records",
    "request_from_ref",
    "split_counts",
    "split_images",
    "training_settings",
    "transform",
]
