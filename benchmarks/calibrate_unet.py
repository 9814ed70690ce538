"""Calibrate the ablation thresholds of graders/test_unet.py (kept in graders/_unet.py): train a
submission's UNet (the reference by default) with and without skip connections with the grader's
own loop (torchgrade.probes.segmentation), budget and scoring (torchgrade.checks.segmentation),
over many training seeds, and print min / mean / max of the validation mean IoU of each variant
and of the gain from the skips (paired by seed), with how many seeds pass the grader's current
thresholds.

    python benchmarks/calibrate_unet.py --seeds 20
    python benchmarks/calibrate_unet.py --sample unet_flag_ignored --seeds 5
    python benchmarks/calibrate_unet.py --submission /tmp/samples/mine --variants with

Each seed replaces the grader's fixed training seed (initialisation and shuffling); the scenes stay
the grader's. Runs one thread per process: start two processes for two cores. The time per check
of a whole grading run is ``python benchmarks/grade_time.py -k unet``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graders"))

import _unet  # noqa: E402  (the grader's budget, seeds, scenes and thresholds)

from fixtures import samples  # noqa: E402
from fixtures import segmentation as scenes  # noqa: E402
from torchgrade.checks import segmentation  # noqa: E402
from torchgrade.importfile import import_file  # noqa: E402
from torchgrade.probes import segmentation as segmentation_probes  # noqa: E402

VARIANTS = {"with": False, "without": True}  # variant -> disable_skip_connections


def unet_run(unet, data: dict[str, torch.Tensor], disable: bool, seed: int) -> dict:
    """One training run as the grader's ``train_unet`` does it, with ``seed`` for its fixed seed."""
    torch.manual_seed(seed)
    model = unet.UNet(disable_skip_connections=disable)
    run = segmentation_probes.train_segmenter(
        model,
        data["train_images"],
        data["train_labels"],
        data["val_images"],
        num_classes=scenes.N_CLASSES,
        seed=seed,
        **_unet.UNET_BUDGET,
    )
    return segmentation.score_training_run(run, data["val_labels"], scenes.N_CLASSES)


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: min {min(values):.4f}  mean {statistics.mean(values):.4f}  max {max(values):.4f}  (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--submission", type=Path, default=ROOT / "reference", help="a folder with unet.py")
    source.add_argument("--sample", help="a sample of fixtures/submissions (e.g. unet_flag_ignored)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["with", "without"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = samples.materialise(samples.load(args.sample), Path(tmp)) if args.sample else args.submission
        unet = import_file(folder / "unet.py", "calibrated_unet")
    data = _unet.scene_tensors()
    print(
        f"submission {args.sample or args.submission}; budget {_unet.budget_text()}; thresholds: with skips "
        f">= {_unet.LEARN_THRESHOLD}, gain >= {_unet.SKIP_MARGIN}",
        flush=True,
    )
    values: dict[str, list[float]] = {variant: [] for variant in args.variants}
    seconds: list[float] = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        row = []
        for variant in args.variants:
            started = time.perf_counter()
            try:
                result = unet_run(unet, data, VARIANTS[variant], seed)
            except Exception as exc:  # noqa: BLE001 - a buggy sample may crash; report it and go on
                result = {"error": f"{type(exc).__name__}: {exc}"}
            seconds.append(time.perf_counter() - started)
            mean_iou = result.get("mean_iou", float("nan"))
            values[variant].append(mean_iou)
            per_class = " ".join("-" if v is None else f"{v:.2f}" for v in result.get("per_class_iou", []))
            row.append(
                f"{variant} skips {mean_iou:.4f} [{per_class}] loss {result.get('final_loss', float('nan')):.3f}"
                + (f" error: {result['error']}" if "error" in result else "")
            )
        print(f"  seed {seed}: " + "; ".join(row) + f"; {seconds[-1]:.1f} s per run", flush=True)
    for variant, series in values.items():
        print(f"{variant} skips {summary('mean IoU', series)}")
    if "with" in values:
        learned = sum(v >= _unet.LEARN_THRESHOLD for v in values["with"])
        print(f"with skips >= {_unet.LEARN_THRESHOLD}: {learned}/{len(values['with'])} seeds")
    if len(values) == 2:
        gains = [a - b for a, b in zip(values["with"], values["without"], strict=True)]
        print(f"gain {summary('with - without', gains)}")
        print(f"gain >= {_unet.SKIP_MARGIN}: {sum(g >= _unet.SKIP_MARGIN for g in gains)}/{len(gains)} seeds")
    print(f"{statistics.mean(seconds):.1f} s per training run (1 thread)")


if __name__ == "__main__":
    main()
