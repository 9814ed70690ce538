"""Calibrate the handout's Q4b sanity check: can the reference memorise 5 students quickly?

For every configuration (model x n x learning rate x batch size x iteration budget) and every
seed, the script builds 5 synthetic training students with ``fixtures.shoes_data``, seeds
``torch`` and ``np.random`` with the seed, trains the reference model with
``reference.shoes.train_model(model, data, data, ...)`` and reports

* the training accuracy: mean of ``get_accuracy``'s positive and negative accuracy on the same
  5 students (the Q4b criterion is >= 0.9), after the budget and, with ``--report-at``, after
  smaller budgets read from the training curves,
* the same accuracy on freshly generated ``test_w`` and ``test_m`` students,
* the first epoch end at which the training accuracy reached 0.9, the last loss, and the
  wall-clock seconds of ``train_model``.

Training is deterministic and a shorter run is an exact prefix of a longer one, so the
accuracy recorded in the curves at the end of an epoch equals what a run with that many
iterations would end with. With 5 students an epoch is ``ceil(15 / (batch_size // 2))``
iterations (3 at batch size 10), and ``train_model`` evaluates both data sets after every
epoch, which is a large part of the cost at small batch sizes.

Its measurements are recorded next to the check's budget and threshold (``MEMORISE_*`` in
``graders/_shoes.py``). It prints one line per run and a summary per configuration. Example::

    python benchmarks/calibrate_memorisation.py --models cnnchannel --seeds 0-19 \\
        --lr 1e-3,3e-3 --batch-size 10 --iters 201 --report-at 51,75,99,150
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
        elif part:
            values.append(int(part))
    return values


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _names(text: str) -> list[str]:
    names = [part.strip().lower() for part in text.split(",")]
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {unknown}; choose {sorted(MODELS)}")
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
    *,
    n_test: int,
    max_epoch: int,
    report_at: list[int],
    data_seed: int | None = None,
) -> dict:
    """Train one model on 5 students and measure it; returns the numbers.

    ``seed`` seeds ``torch`` and ``np.random`` (initialisation, shuffling); the photos come from
    ``data_seed``, or from ``seed`` too when it is ``None``.
    """
    data_seed = seed if data_seed is None else data_seed
    data = _as_data(shoe_students(N_MEMORISED, seed=data_seed, kind="train"))
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
    epochs = list(zip(curves["epoch_iters"], curves["train_acc"], strict=True))
    reached = [it for it, acc in epochs if acc >= TARGET]
    # Accuracy after a smaller budget: the last epoch end at or before it.
    earlier = {}
    for budget in report_at:
        done = [(it, acc) for it, acc in epochs if it <= budget]
        if done:
            earlier[budget] = done[-1]
    result = {
        "train_acc": _mean_accuracy(model, data),
        "earlier": earlier,
        "iters_done": curves["iters"][-1] if curves["iters"] else 0,
        "first_reach": reached[0] if reached else float("nan"),
        "last_loss": curves["loss"][-1] if curves["loss"] else float("nan"),
        "seconds": seconds,
    }
    if n_test:
        for kind in ("w", "m"):
            test = _as_data(shoe_students(n_test, seed=data_seed, kind=kind))
            result[f"test_{kind}"] = _mean_accuracy(model, test)
    return result


def _summary(label: str, results: list[dict], report_at: list[int]) -> str:
    acc = np.array([r["train_acc"] for r in results])
    first = np.array([r["first_reach"] for r in results], dtype=float)
    seconds = [r["seconds"] for r in results]
    slowest = f"{np.nanmax(first):g}" if np.isfinite(first).any() else "never"
    parts = [
        f"SUMMARY {label}: {int((acc >= TARGET).sum())}/{len(acc)} seeds >= {TARGET}",
        f"train min {acc.min():.3f} mean {acc.mean():.3f}",
        f"slowest first>=0.9 at {slowest} ({int(np.isnan(first).sum())} never)",
        f"seconds/run median {np.median(seconds):.1f} min {np.min(seconds):.1f}",
    ]
    for budget in report_at:
        values = [r["earlier"][budget] for r in results if budget in r["earlier"]]
        if values:
            at = np.array([acc for _, acc in values])
            iters = sorted({it for it, _ in values})
            parts.append(
                f"at {budget} (epoch end {iters}): {int((at >= TARGET).sum())}/{len(at)} "
                f"min {at.min():.3f} mean {at.mean():.3f}"
            )
    if "test_w" in results[0]:
        for kind in ("w", "m"):
            values = np.array([r[f"test_{kind}"] for r in results])
            parts.append(f"test_{kind} mean {values.mean():.3f} min {values.min():.3f}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=_ints, default=_ints("0-4"), help="e.g. 0-19 or 0,3,5")
    parser.add_argument("--models", type=_names, default=["cnnchannel"], help="cnn,cnnchannel")
    parser.add_argument("--n", type=_ints, default=[4], help="channels of conv 1, e.g. 2,4")
    parser.add_argument("--lr", type=_floats, default=[1e-3], help="learning rates: 1e-3,3e-3")
    parser.add_argument("--batch-size", type=_ints, default=[10], help="batch sizes, e.g. 10,30")
    parser.add_argument("--iters", type=_ints, default=[100], help="iteration budgets: 50,100")
    parser.add_argument(
        "--report-at",
        type=_ints,
        default=[],
        help="smaller budgets to read off the curves, e.g. 51,75,99 (exact at epoch ends)",
    )
    parser.add_argument(
        "--max-epoch",
        type=int,
        default=10_000,
        help="epoch cap passed to train_model (default: large, so --iters decides)",
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="one data set for every seed (default: each seed makes its own photos too)",
    )
    parser.add_argument("--test-students", type=int, default=3, help="per test set; 0: skip")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    grid = itertools.product(args.models, args.n, args.lr, args.batch_size, args.iters)
    for model_name, n, lr, batch_size, iters in grid:
        label = f"{model_name}(n={n}) lr={lr:g} batch={batch_size} iters={iters}"
        if args.data_seed is not None:
            label += f" data_seed={args.data_seed}"
        report_at = [b for b in args.report_at if b < iters]
        results = []
        for seed in args.seeds:
            r = run_once(
                model_name,
                n,
                lr,
                batch_size,
                iters,
                seed,
                n_test=args.test_students,
                max_epoch=args.max_epoch,
                report_at=report_at,
                data_seed=args.data_seed,
            )
            results.append(r)
            earlier = " ".join(f"@{it}:{acc:.3f}" for it, acc in r["earlier"].values())
            tests = f" test_w {r['test_w']:.3f} test_m {r['test_m']:.3f}" if "test_w" in r else ""
            print(
                f"{label} seed {seed:2d}: train {r['train_acc']:.3f} [{earlier}]{tests} "
                f"first>=0.9@{r['first_reach']:g} loss {r['last_loss']:.4f} "
                f"iters {r['iters_done']} {r['seconds']:.1f}s",
                flush=True,
            )
        print(_summary(label, results, report_at), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
