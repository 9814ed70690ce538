"""Calibrate the training threshold of graders/test_lstm.py (its numbers live in graders/_lstm.py): train a
submission's TextGenerationModel (the reference by default) with the grader's own loop
(torchgrade.probes.language_model.train_language_model), sizes and budget on the synthetic corpus of
fixtures/text.py, over many training seeds, and print min / mean / max of the held-out loss with
how many seeds pass the grader's bound, next to the n-gram cross-entropies of the corpus.

    python benchmarks/calibrate_lstm.py --seeds 20
    python benchmarks/calibrate_lstm.py --sample lstm_forget_bias_not_shifted --seeds 5
    python benchmarks/calibrate_lstm.py --memoryless --seeds 5

``--memoryless`` trains the model on every character alone (each position a sequence of length 1,
so the LSTM's state never carries anything): what a model without recurrence reaches. Each seed
replaces the grader's fixed training seed (initialisation and window offsets); the corpus stays the
grader's. Runs one thread per process: start two processes for two cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graders"))

import _lstm as grader  # noqa: E402  (the grader's budget, sizes, seeds and bound)

from fixtures import samples, text  # noqa: E402
from torchgrade.checks.language_model import held_out_windows, score_language_run  # noqa: E402
from torchgrade.importfile import import_file  # noqa: E402
from torchgrade.probes.language_model import train_language_model  # noqa: E402
from torchgrade.probes.training import first_tensor  # noqa: E402


class Memoryless(nn.Module):
    """Runs a character model on every position of ``x (T, B)`` alone: a sequence of length 1 each."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = first_tensor(self.model(x.reshape(1, -1)))
        return logits.reshape(*x.shape, -1)


def text_run(lstm, data: dict[str, torch.Tensor], seed: int, memoryless: bool) -> dict:
    """One training run as the grader's ``train_text_model`` does it, with ``seed`` for its fixed seed."""
    torch.manual_seed(seed)
    sizes = grader.TEXT_SIZES
    model = lstm.TextGenerationModel(len(text.VOCABULARY), sizes["embed"], sizes["hidden"])
    if memoryless:
        model = Memoryless(model)
    inputs, targets = held_out_windows(data["val"], grader.TEXT_BUDGET["seq_length"])
    vocabulary = len(text.VOCABULARY)
    run = train_language_model(model, data["train"], inputs, vocabulary=vocabulary, seed=seed, **grader.TEXT_BUDGET)
    return score_language_run(run, targets, vocabulary)


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: min {min(values):.4f}  mean {statistics.mean(values):.4f}  max {max(values):.4f}  (n={len(values)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--submission", type=Path, default=ROOT / "reference", help="a folder with lstm.py")
    source.add_argument("--sample", help="a sample of fixtures/submissions (e.g. lstm_gates_swapped)")
    parser.add_argument("--memoryless", action="store_true", help="train on every character alone")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = samples.materialise(samples.load(args.sample), Path(tmp)) if args.sample else args.submission
        lstm = import_file(folder / "lstm.py", "calibrated_lstm")
    data = {
        name: torch.from_numpy(stream)
        for name, stream in text.make_dataset(seed=grader.CORPUS_SEED, n_val=grader.HELD_OUT_CHARS).items()
    }
    grams = ", ".join(
        f"{order}-gram {text.conditional_entropy(data['train'].numpy(), data['val'].numpy(), order):.3f}"
        for order in (1, 2, 3, 5)
    )
    print(
        f"submission {args.sample or args.submission}{' (memoryless)' if args.memoryless else ''}; budget "
        f"{grader.budget_text()}; sizes {grader.TEXT_SIZES}; bound <= {grader.LEARN_BOUND}; corpus "
        f"cross-entropies (nats/char): {grams}",
        flush=True,
    )
    losses, seconds = [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        started = time.perf_counter()
        result = text_run(lstm, data, seed, args.memoryless)
        seconds.append(time.perf_counter() - started)
        losses.append(result.get("val_loss", float("nan")))
        print(
            f"  seed {seed}: held-out loss {losses[-1]:.4f}, final training loss "
            f"{result.get('final_loss', float('nan')):.4f}{' error: ' + result['error'] if 'error' in result else ''}"
            f"; {seconds[-1]:.1f} s",
            flush=True,
        )
    print(summary("held-out loss", losses))
    print(f"held-out loss <= {grader.LEARN_BOUND}: {sum(v <= grader.LEARN_BOUND for v in losses)}/{len(losses)} seeds")
    print(f"{statistics.mean(seconds):.1f} s per training run (1 thread)")


if __name__ == "__main__":
    main()
