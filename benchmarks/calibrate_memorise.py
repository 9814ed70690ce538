"""Calibrate Q4b's threshold (``MEMORISE_THRESHOLD`` in ``graders/_shoes.py``) on a family of correct
CNNChannel architectures, not on the reference alone.

Each run does what the check does, with the reference's ``train_model`` standing for a correct loop: the
grader's five memorisation students (the fixture data set the graders write, decoded from its JPEG
files), every generator seeded with the run's seed, torch on ``MEMORISE_THREADS`` threads, the model
built and trained with ``MEMORISE_BUDGET`` (batch size, learning rate, iterations), then the training
accuracy measured by the grader's own ``accuracy`` (mean of the positive and negative accuracy). The
variants are correct solutions written the way students write them:

* ``reference``: the reference ``CNNChannel(n=4, kernel_size=3)``;
* ``batchnorm``: batch norm after every convolution and after fc1;
* ``kernel5``: ``CNNChannel(n=4, kernel_size=5)``;
* ``interleaved``: the shoes stacked on channels by ``x.reshape(B, 6, 224, 224)`` (channels interleaved);
* ``n8`` / ``n2``: other widths;
* ``cnn``: the handout's CNN (the shoes meet only in fc1), which the check does not require to memorise.

``--lr``, ``--batch-size`` and ``--threads`` try another budget than the check's (how the learning rate and
batch size were chosen), ``--report-at`` reads the accuracy at smaller iteration budgets from the same run
(training is deterministic and a shorter run is a prefix of a longer one).

It prints one line per run (final accuracy, the first iteration at which the training accuracy reached
the threshold at an epoch end, seconds) and per variant the min, mean and how many runs passed. Example::

    python benchmarks/calibrate_memorise.py --variants reference,batchnorm --seeds 0-19

Heavy: one run trains 400 iterations and evaluates both data sets after every epoch (134 epochs): 30-75 s CPU.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_ROOT = pathlib.Path(__file__).resolve().parents[1]
for path in (_ROOT, _ROOT / "graders"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import _shoes  # noqa: E402

from fixtures import shoes_data  # noqa: E402
from reference import shoes  # noqa: E402

# The graders' fixture data set (graders/conftest.py).
SHOE_SEED, N_TRAIN, N_TEST_W, N_TEST_M = 2021, 6, 3, 3


class BatchNormChannel(nn.Module):
    """CNNChannel with BatchNorm2d after every convolution and BatchNorm1d after fc1."""

    def __init__(self, n: int = 4, kernel_size: int = 3) -> None:
        super().__init__()
        pad = (kernel_size - 1) // 2
        widths = [6, n, 2 * n, 4 * n, 8 * n]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size, padding=pad) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in widths[1:])
        self.fc1, self.bn1, self.fc2 = nn.Linear(8 * n * 14 * 14, 100), nn.BatchNorm1d(100), nn.Linear(100, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, :224], x[:, :, 224:]], dim=1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = F.max_pool2d(F.relu(norm(conv(x))), 2)
        return self.fc2(F.relu(self.bn1(self.fc1(x.flatten(1)))))


class InterleavedChannel(shoes.CNNChannel):
    """The reference's layers; the shoes stacked by ``reshape``: channels L_r, R_r, L_g, R_g, L_b, R_b."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 6, 224, 224)
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


VARIANTS = {
    "reference": lambda: shoes.CNNChannel(n=4, kernel_size=3),
    "batchnorm": lambda: BatchNormChannel(n=4),
    "kernel5": lambda: shoes.CNNChannel(n=4, kernel_size=5),
    "interleaved": lambda: InterleavedChannel(n=4),
    "n8": lambda: shoes.CNNChannel(n=8),
    "n2": lambda: shoes.CNNChannel(n=2),
    # Not a variant of CNNChannel: the handout's CNN, which is not required to memorise (see _shoes.py).
    "cnn": lambda: shoes.CNN(n=4, kernel_size=3),
}


def _ints(text: str) -> list[int]:
    values: list[int] = []
    for part in text.split(","):
        if "-" in part[1:]:
            low, high = part.split("-", 1)
            values.extend(range(int(low), int(high) + 1))
        elif part:
            values.append(int(part))
    return values


def grader_data() -> np.ndarray:
    """The five memorisation students exactly as the check gets them: the fixture files, decoded, /255 - 0.5."""
    with tempfile.TemporaryDirectory() as folder:
        root = shoes_data.write_shoe_dataset(
            folder, n_train=N_TRAIN, n_test_w=N_TEST_W, n_test_m=N_TEST_M, seed=SHOE_SEED
        )
        pixels = shoes_data.read_shoe_dataset(root)["train"]
    return (pixels.astype(np.float32) / 255.0 - 0.5)[: _shoes.MEMORISE_STUDENTS]


def run(variant: str, seed: int, data: np.ndarray, iterations: int, report_at: list[int], budget: dict) -> dict:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    model = VARIANTS[variant]()
    start = time.process_time()
    curves = shoes.train_model(
        model,
        data,
        data,
        batch_size=budget["batch_size"],
        learning_rate=budget["learning_rate"],
        max_iters=iterations,
        max_epoch=1000,
    )
    model.eval()
    with torch.no_grad():
        pos, neg = _shoes.accuracy(model, data, _shoes.NCHW, variant)
    reached = next(
        (
            it
            for it, acc in zip(curves["epoch_iters"], curves["train_acc"], strict=True)
            if acc >= _shoes.MEMORISE_THRESHOLD
        ),
        None,
    )
    # Training is deterministic and a shorter run a prefix of a longer one: the accuracy at an epoch end in
    # the curves is what a run of that many iterations ends with (get_accuracy, in eval mode).
    at = {
        it: next((acc for end, acc in zip(curves["epoch_iters"], curves["train_acc"], strict=True) if end >= it), None)
        for it in report_at
    }
    return {"accuracy": (pos + neg) / 2, "reached": reached, "cpu": time.process_time() - start, "at": at}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0-19", help="e.g. 0-19 or 7,8")
    parser.add_argument("--iterations", type=int, default=_shoes.MEMORISE_BUDGET["iterations"])
    parser.add_argument("--report-at", default="", help="also print the accuracy at these iteration counts")
    parser.add_argument("--lr", type=float, default=_shoes.MEMORISE_BUDGET["learning_rate"], help="another rate")
    parser.add_argument("--batch-size", type=int, default=_shoes.MEMORISE_BUDGET["batch_size"], help="another size")
    parser.add_argument("--threads", type=int, default=_shoes.MEMORISE_THREADS, help="torch threads (the check: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = grader_data()
    budget = {**_shoes.MEMORISE_BUDGET, "learning_rate": args.lr, "batch_size": args.batch_size}
    print(
        f"budget {budget} (run for {args.iterations} iterations), {args.threads} thread(s), "
        f"threshold {_shoes.MEMORISE_THRESHOLD}, "
        f"{len(data)} students",
        flush=True,
    )
    summary = {}
    for variant in args.variants.split(","):
        results = []
        for seed in _ints(args.seeds):
            result = run(variant, seed, data, args.iterations, _ints(args.report_at), budget)
            results.append(result)
            print(
                f"{variant:12s} seed {seed:3d}: accuracy {result['accuracy']:.3f}, first >= "
                f"{_shoes.MEMORISE_THRESHOLD} at iteration {result['reached']}, {result['cpu']:.0f} s CPU"
                + "".join(f", at {it}: {acc:.3f}" for it, acc in result["at"].items() if acc is not None),
                flush=True,
            )
        accuracies = [r["accuracy"] for r in results]
        reached = [r["reached"] for r in results if r["reached"] is not None]
        summary[variant] = (
            f"min {min(accuracies):.3f}, mean {np.mean(accuracies):.3f}, "
            f"{sum(a >= _shoes.MEMORISE_THRESHOLD for a in accuracies)}/{len(accuracies)} pass, latest first "
            f"reach {max(reached) if reached else math.nan}"
        )
        print(f"== {variant}: {summary[variant]}", flush=True)
    print("\nsummary")
    for variant, text in summary.items():
        print(f"  {variant:12s} {text}")


if __name__ == "__main__":
    main()
