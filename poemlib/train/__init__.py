"""Stage 04: LoRA fine-tuning through `llamafactory-cli`, reproducible from any working directory and observable.

`launch(config, **overrides)` loads a training YAML (a name in configs/ or a path), applies overrides, makes every
relative path in it absolute (`work/…` under WORK_DIR — POEMLIB_WORK when set —, anything else under the project
root: model dir, dataset_dir, media_dir — defaulted to dataset_dir so the dataset's `images/<sha>.jpg` resolve —,
output_dir, deepspeed, …), writes the resolved YAML next to the
outputs (`<output_dir>/poemlib_train_args.yaml`) and runs `llamafactory-cli train` on it as a subprocess. Its output
goes to `<output_dir>/train_stdout.log`; a progress bar is fed from LLaMA-Factory's `trainer_log.jsonl`; a failure
raises `TrainingFailed` with the tail of the log. It returns a `TrainResult` (paths, final metrics, best checkpoint).

Keep-best / early stopping: `launch(..., keep_best=True, early_stopping_patience=3)` sets
`load_best_model_at_end`, `metric_for_best_model: eval_loss`, saving at every evaluation, and LLaMA-Factory 0.9.5's
`early_stopping_steps` (HF EarlyStoppingCallback: stop after that many evaluations without improvement). The
adapter left in output_dir is then the best one by eval loss.

Configs: `configs/qwen2_5vl_7b_lora.yaml` (the seed's recipe on a GPU) and `configs/tiny_cpu.yaml` (the offline
default: the tiny random Qwen2.5-VL on 2 CPU cores, adapter at work/train/tiny_lora/). Both state
`image_max_pixels` / `image_min_pixels`, equal to `poemlib.config.vision_budget("full" / "tiny")`, which inference
reads too.

Multi-GPU (one node, N GPUs, DeepSpeed ZeRO-3), see docs/training.md:

    FORCE_TORCHRUN=1 NNODES=1 NPROC_PER_NODE=N poemlib train qwen2_5vl_7b_lora deepspeed=configs/deepspeed_z3.json

(`launch(..., nproc_per_node=N)` sets those variables; LLaMA-Factory then starts torchrun itself.)

`export(adapter_dir, export_dir)` wraps `llamafactory-cli export` to merge the adapter into the base model.

The base model is named once: the training config's `model_name_or_path` (or POEMLIB_BASE_MODEL, which overrides it
for training and inference alike); the adapter lands in its `output_dir`, where the backends' profiles read it.
Modules: settings (configs and overrides), run (llamafactory-cli with a progress bar), results (outcome, loss log and
plot), export (merge), parse_rates (a quick before/after check of the adapter).
"""

from poemlib.train.export import export
from poemlib.train.parse_rates import ParseRates, compare_parse_rates
from poemlib.train.results import TrainResult, collect_result, plot_loss, read_trainer_log
from poemlib.train.run import TrainingFailed, launch
from poemlib.train.settings import apply_keep_best, load_train_config, parse_overrides, resolve_config

__all__ = [
    "ParseRates",
    "TrainResult",
    "TrainingFailed",
    "apply_keep_best",
    "collect_result",
    "compare_parse_rates",
    "export",
    "launch",
    "load_train_config",
    "parse_overrides",
    "plot_loss",
    "read_trainer_log",
    "resolve_config",
]
