"""Calibrate the ablation thresholds of graders/test_unet.py (kept in graders/_unet.py): train a
submission's UNet (the reference by default) with and without skip connections with the grader's
own loop (torchgrade.probes.segmentation), budget and scoring (graders/_unet.py),
over many training seeds, and print min / mean / max of the validation mean IoU of each variant
and of the gain from the skips (paired by seed), with how many seeds pass the grader's current
thresholds.

The thresholds must hold for every correct architecture, not only the reference's: ``--arch``
trains, instead of a submission, one of the correct UNets of :data:`ARCHITECTURES` written the ways
students write them (two convolutions per block, no batch norm, other widths, bilinear upsampling
instead of the transposed convolution).

    python benchmarks/calibrate_unet.py --seeds 20
    python benchmarks/calibrate_unet.py --arch double bilinear narrow --seeds 10
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
from types import SimpleNamespace

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graders"))

import _unet  # noqa: E402  (the grader's budget, seeds, scenes and thresholds)
import _unet as segmentation  # noqa: E402  (the grader's IoU and scoring)

from fixtures import samples  # noqa: E402
from fixtures import segmentation as scenes  # noqa: E402
from torchgrade.importfile import import_file  # noqa: E402
from torchgrade.probes import segmentation as segmentation_probes  # noqa: E402

VARIANTS = {"with": False, "without": True}  # variant -> disable_skip_connections


# -- correct architectures other than the reference's -------------------------------------------------
def _block(c_in: int, c_out: int, *, double: bool, batch_norm: str) -> nn.Sequential:
    """conv(3x3, padding 1), batch norm and ReLU in the order ``batch_norm`` names (``"before"`` the ReLU,
    the handout's; ``"after"`` it; ``"none"``: conv-ReLU with biases), once or twice (the original
    UNet's double convolution)."""
    layers: list[nn.Module] = []
    for i in range(2 if double else 1):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=batch_norm == "none"))
        norm = [nn.BatchNorm2d(c_out)] if batch_norm != "none" else []
        layers += [*norm, nn.ReLU(inplace=True)] if batch_norm == "before" else [nn.ReLU(inplace=True), *norm]
    return nn.Sequential(*layers)


def architecture(
    widths: tuple[int, ...] = (64, 128, 64, 32, 32),
    *,
    double: bool = False,
    batch_norm: str = "before",
    upsample: str = "transposed",
) -> SimpleNamespace:
    """A module-like namespace with a correct ``UNet``: Down(1, w1), Down(w1, w2), a bottleneck to wb,
    Up(wb, w2, wu1), Up(wu1, w1, wu2), a 1x1 head; the skips concatenated, zeroed when disabled.

    Args:
        widths: ``(w1, w2, wb, wu1, wu2)``; the reference's are (64, 128, 64, 32, 32).
        double: two convolutions per block instead of one.
        batch_norm: where batch norm goes in each block: ``"before"`` the ReLU (the handout's
            conv-BN-ReLU), ``"after"`` it (conv-ReLU-BN), or ``"none"`` (conv-ReLU with biases).
        upsample: ``"transposed"`` (ConvTranspose2d 2x2, stride 2, the handout's) or ``"bilinear"``
            (nn.Upsample then a 3x3 convolution).
    """
    w1, w2, wb, wu1, wu2 = widths

    class Down(nn.Module):
        def __init__(self, c_in: int, c_out: int) -> None:
            super().__init__()
            self.block = _block(c_in, c_out, double=double, batch_norm=batch_norm)
            self.pool = nn.MaxPool2d(2)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            skip = self.block(x)
            return self.pool(skip), skip

    class Up(nn.Module):
        def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
            super().__init__()
            if upsample == "transposed":
                self.up = nn.ConvTranspose2d(c_in, c_in, 2, stride=2)
            else:
                self.up = nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(c_in, c_in, 3, padding=1),
                )
            self.block = _block(c_in + c_skip, c_out, double=double, batch_norm=batch_norm)

        def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return self.block(torch.cat((self.up(x), skip), dim=1))

    class UNet(nn.Module):
        def __init__(self, in_channels: int = 1, out_channels: int = 11, disable_skip_connections: bool = False):
            super().__init__()
            self.disable_skip_connections = disable_skip_connections
            self.down1, self.down2 = Down(in_channels, w1), Down(w1, w2)
            self.bottleneck = _block(w2, wb, double=double, batch_norm=batch_norm)
            self.up1, self.up2 = Up(wb, w2, wu1), Up(wu1, w1, wu2)
            self.head = nn.Conv2d(wu2, out_channels, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x, skip1 = self.down1(x)
            x, skip2 = self.down2(x)
            x = self.bottleneck(x)
            if self.disable_skip_connections:
                skip1, skip2 = torch.zeros_like(skip1), torch.zeros_like(skip2)
            return self.head(self.up2(self.up1(x, skip2), skip1))

    return SimpleNamespace(UNet=UNet)


#: Correct UNets as students write them (``--arch``); ``reference`` is reference/unet.py itself.
ARCHITECTURES = {
    "double": {"double": True},  # the original UNet's two conv-BN-ReLU per block (the student)
    "bilinear": {"upsample": "bilinear"},  # nn.Upsample + conv instead of the transposed convolution
    "narrow": {"widths": (32, 64, 32, 16, 16)},  # half the reference's widths
    "wide": {"widths": (64, 128, 128, 64, 64)},  # a bottleneck that keeps 128 channels, wider decoder
    "no_bn": {"batch_norm": "none"},  # conv-ReLU blocks with biases, no batch norm
    "double_no_bn": {"double": True, "batch_norm": "none"},  # the UNet paper's blocks (2015: no batch norm)
    # fixtures/variants/unet_relu_before_bn_width32: conv-ReLU-BN at half the widths
    "relu_bn_narrow": {"batch_norm": "after", "widths": (32, 64, 32, 16, 16)},
}


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
    source.add_argument("--arch", nargs="+", choices=["reference", *ARCHITECTURES], help="correct architectures")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["with", "without"])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = _unet.scene_tensors()
    if args.arch:
        for name in args.arch:
            unet = import_file(ROOT / "reference" / "unet.py", "calibrated_unet") if name == "reference" else None
            calibrate(unet or architecture(**ARCHITECTURES[name]), f"architecture {name}", data, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = samples.materialise(samples.load(args.sample), Path(tmp)) if args.sample else args.submission
        unet = import_file(folder / "unet.py", "calibrated_unet")
    calibrate(unet, f"submission {args.sample or args.submission}", data, args)


def calibrate(unet, name: str, data: dict[str, torch.Tensor], args: argparse.Namespace) -> None:
    """Train ``unet.UNet`` over the seeds and print the summaries."""
    print(
        f"{name}; budget {_unet.budget_text()}; thresholds: with skips "
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
        print(f"{name}: {variant} skips {summary('mean IoU', series)}")
    if "with" in values:
        learned = sum(v >= _unet.LEARN_THRESHOLD for v in values["with"])
        print(f"with skips >= {_unet.LEARN_THRESHOLD}: {learned}/{len(values['with'])} seeds")
    if len(values) == 2:
        gains = [a - b for a, b in zip(values["with"], values["without"], strict=True)]
        print(f"{name}: gain {summary('with - without', gains)}")
        print(f"gain >= {_unet.SKIP_MARGIN}: {sum(g >= _unet.SKIP_MARGIN for g in gains)}/{len(gains)} seeds")
    print(f"{statistics.mean(seconds):.1f} s per training run (1 thread)")


if __name__ == "__main__":
    main()
