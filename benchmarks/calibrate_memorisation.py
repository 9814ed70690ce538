"""Calibrate the handout's Q4b sanity check: can the reference memorise 5 students quickly?

For every configuration (model x n x learning rate x batch size x iteration budget) and every
seed, the script builds 5 synthetic training students with ``fixtures.shoes_data``, seeds
``torch`` and ``np.random`` with the seed, trains the reference model with
``reference.shoes.train_model(model, data, data, ...)`` and reports

* the training accuracy: mean of ``get_accuracy``'s positive and negative accuracy on the same
  5 students (the Q4b criterion is >= 0.9),
* the accuracy (same mean) on freshly generated ``test_w`` and ``test_m`` students,
* the first iteration, among the epoch ends recorded in the curves, where the training accuracy
  reached 0.9, the last loss, and the wall-clock seconds.

It prints one line per run and a summary per configuration. Example::

    python benchmarks/calibrate_memorisation.py --models cnnchannel --seeds 0-19 \\
        --lr 1e-3,3e-3 --batch-size 10 --iters 100
"""

from __future__ import annotations

import argparse
import itertools
import pathlib
import sys
import time

import numpy as np
import torch

_ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from fixtures.shoes_data import shoe_students  # noqa: E402
from reference import shoes  # noqa: E402

MODELS = {"cnn": shoes.CNN, "cnnchannel": shoes.CNNChannel}
N_MEMORISED = 5
TARGET = 0.9


def _ints(text: str) -> list[int]:
    """Parse ``"0-4,7"`` into ``[0, 1, 2, 3, 4, 7]``."""
    values: list[int] = []
    for part in text.split(","):
        if "-" in part[1:]:
            low, high = part.split("-", 1)
            values.extend(range(int(low), int(high) + 1))
        else:
            values.append(int(part))
    return values


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _names(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",")]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    return names


def _as_data(pixels: np.ndarray) -> np.ndarray:
    """uint8 photos -> float32 in [-0.5, 0.5], exactly as ``load_shoes`` scales them."""
    return pixels.astype(np.float32) / 255.0 - 0.5


def _mean_accuracy(model: torch.nn.Module, data: np.ndarray) -> float:
    return float(np.mean(shoes.get_accuracy(model, data)))


def run_once(
    model_name: str,
    n: int,
    learning_rate: float,
    batch_size: int,
    iters: int,
    seed: int,
    n_test: int,
    max_epoch: int,
) -> dict[str, float]:
    """Train one model on 5 students from ``seed`` and measure it; returns the numbers."""
    data = _as_data(shoe_students(N_MEMORISED, seed=seed, kind="train"))
    torch.manual_seed(seed)
    np.random.seed(seed)
    model = MODELS[model_name](n=n)
    start = time.perf_counter()
    curves = shoes.train_model(
        model,
        data,
        data,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_iters=iters,
        max_epoch=max_epoch,
    )
    seconds = time.perf_counter() - start
    reached = [it for it, acc in zip(curves["epoch_iters"], curves["train_acc"]) if acc >= TARGET]
    result = {
        "train_acc": _mean_accuracy(model, data),
        "iters_done": curves["iters"][-1] if curves["iters"] else 0,
        "first_reach": reached[0] if reached else float("nan"),
        "last_loss": curves["loss"][-1] if curves["loss"] else float("nan"),
        "seconds": seconds,
    }
    if n_test:
        result["test_w"] = _mean_accuracy(model, _as_data(shoe_students(n_test, seed=seed, kind="w")))
        result["test_m"] = _mean_accuracy(model, _as_data(shoe_students(n_test, seed=seed, kind="m")))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_ints, default=_ints("0-4"), help="e.g. 0-19 or 0,3,5")
    parser.add_argument("--models", type=_names, default=["cnnchannel"], help="cnn,cnnchannel")
    parser.add_argument("--n", type=_ints, default=[4], help="channels of conv 1, e.g. 2,4")
    parser.add_argument("--lr", type=_floats, default=[1e-3], help="learning rates, e.g. 1e-3,3e-3")
    parser.add_argument("--batch-size", type=_ints, default=[10], help="batch sizes, e.g. 10,30")
    parser.add_argument("--iters", type=_ints, default=[100], help="iteration budgets, e.g. 50,100")
    parser.add_argument(
        "--max-epoch",
        type=int,
        default=10_000,
        help="epoch cap passed to train_model (default: large, so --iters decides; with 5 "
        "students an epoch is ceil(15 / (batch_size // 2)) iterations)",
    )
    parser.add_argument("--test-students", type=int, default=3, help="students per test set (0: skip)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    grid = itertools.product(args.models, args.n, args.lr, args.batch_size, args.iters)
    for model_name, n, lr, batch_size, iters in grid:
        label = f"{model_name}(n={n}) lr={lr:g} batch={batch_size} iters={iters}"
        results = []
        for seed in args.seeds:
            r = run_once(model_name, n, lr, batch_size, iters, seed, args.test_students, args.max_epoch)
            results.append(r)
            tests = f" test_w {r['test_w']:.3f} test_m {r['test_m']:.3f}" if "test_w" in r else ""
            print(
                f"{label} seed {seed:2d}: train {r['train_acc']:.3f}{tests} "
                f"first>=0.9@{r['first_reach']:g} loss {r['last_loss']:.4f} "
                f"iters {r['iters_done']} {r['seconds']:.1f}s",
                flush=True,
            )
        acc = np.array([r["train_acc"] for r in results])
        first = np.array([r["first_reach"] for r in results])
        line = (
            f"SUMMARY {label}: {int((acc >= TARGET).sum())}/{len(acc)} seeds >= {TARGET}; "
            f"train min {acc.min():.3f} mean {acc.mean():.3f}; "
            f"first>=0.9 max {np.nanmax(first) if np.isfinite(first).any() else float('nan'):g}; "
            f"{np.mean([r['seconds'] for r in results]):.1f}s/run"
        )
        if args.test_students:
            line += (
                f"; test_w mean {np.mean([r['test_w'] for r in results]):.3f} "
                f"min {np.min([r['test_w'] for r in results]):.3f}, "
                f"test_m mean {np.mean([r['test_m'] for r in results]):.3f} "
                f"min {np.min([r['test_m'] for r in results]):.3f}"
            )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
