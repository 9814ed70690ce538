"""Calibrate the training threshold of graders/test_lstm.py (its numbers live in graders/_lstm.py): train a
submission's TextGenerationModel (the reference by default) with the grader's own loop
(graders/_probes_lstm.py's train_language_model), sizes and budget on the synthetic corpus of
fixtures/text.py, over many training seeds, and print min / mean / max of the held-out loss with
how many seeds pass the grader's bound, next to the n-gram cross-entropies of the corpus.

    python benchmarks/calibrate_lstm.py --seeds 20
    python benchmarks/calibrate_lstm.py --sample lstm_forget_bias_not_shifted --seeds 5
    python benchmarks/calibrate_lstm.py --memoryless --seeds 5
    python benchmarks/calibrate_lstm.py --variant x_at_w --seeds 10

``--variant`` trains a correct model of the family the threshold must hold for (issue 17: calibrated
on the reference alone, a threshold may fail correct code written differently): ``x_at_w`` (per-gate
weights stored ``[inputs, H]`` and applied as ``x @ W``, forward returning ``(logits, (h, c))``, as
most real submissions write it), ``xavier`` (the reference with Glorot-uniform weights and zero
biases, forget gate +1: another initialisation), ``one_hot`` (one-hot characters into the LSTM, no
embedding).

``--memoryless`` trains the model on every character alone (each position a sequence of length 1,
so the LSTM's state never carries anything): what a model without recurrence reaches. Each seed
replaces the grader's fixed training seed (initialisation and window offsets); the corpus stays the
grader's. Runs one thread per process: start two processes for two cores.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "graders"))

import _lstm as grader  # noqa: E402  (the grader's budget, sizes, seeds and bound)
from _lstm import held_out_windows, score_language_run  # noqa: E402
from _probes_lstm import train_language_model  # noqa: E402

from fixtures import samples, text  # noqa: E402
from torchgrade.importfile import import_file  # noqa: E402
from torchgrade.probes.training import first_tensor  # noqa: E402


class Memoryless(nn.Module):
    """Runs a character model on every position of ``x (T, B)`` alone: a sequence of length 1 each."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = first_tensor(self.model(x.reshape(1, -1)))
        return logits.reshape(*x.shape, -1)


class XAtWLSTM(nn.Module):
    """Equations (8)-(13) with per-gate weights stored ``[inputs, H]`` and applied as ``x @ W``."""

    def __init__(self, hidden: int, embed: int) -> None:
        super().__init__()
        self.hidden = hidden
        for gate in "gifo":
            setattr(self, f"W_{gate}x", nn.Parameter(torch.empty(embed, hidden)))
            setattr(self, f"W_{gate}h", nn.Parameter(torch.empty(hidden, hidden)))
            setattr(self, f"b_{gate}", nn.Parameter(torch.empty(hidden)))
        bound = 1 / math.sqrt(hidden)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.uniform_(-bound, bound)
            self.b_f += 1

    def forward(self, x: torch.Tensor, state=None):
        h = x.new_zeros(x.shape[1], self.hidden) if state is None else state[0]
        c = x.new_zeros(x.shape[1], self.hidden) if state is None else state[1]
        outputs = []
        for x_t in x:
            pre = {
                g: x_t @ getattr(self, f"W_{g}x") + h @ getattr(self, f"W_{g}h") + getattr(self, f"b_{g}")
                for g in "gifo"
            }
            c = torch.sigmoid(pre["f"]) * c + torch.sigmoid(pre["i"]) * torch.tanh(pre["g"])
            h = torch.sigmoid(pre["o"]) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs), (h, c)


class XAtWModel(nn.Module):
    def __init__(self, vocabulary: int, embed: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocabulary, embed)
        self.lstm = XAtWLSTM(hidden, embed)
        self.classifier = nn.Linear(hidden, vocabulary)

    def forward(self, x: torch.Tensor, state=None):
        out, state = self.lstm(self.embedding(x), state)
        return self.classifier(out), state


class OneHotModel(nn.Module):
    """One-hot characters straight into the submission's LSTM (input size V), no embedding."""

    def __init__(self, lstm, vocabulary: int, hidden: int) -> None:
        super().__init__()
        self.vocabulary = vocabulary
        self.lstm = lstm.LSTM(hidden, vocabulary)
        self.output = nn.Linear(hidden, vocabulary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(first_tensor(self.lstm(F.one_hot(x, self.vocabulary).float())))


def xavier(model: nn.Module) -> nn.Module:
    """Glorot-uniform weights, zero biases, +1 on the forget gate's (the reference's ``b_f``)."""
    with torch.no_grad():
        for parameter in model.lstm.parameters():
            if parameter.dim() == 2:
                nn.init.xavier_uniform_(parameter)
            else:
                parameter.zero_()
        model.lstm.b_f += 1
    return model


VARIANTS = {
    "reference": lambda lstm, v, e, h: lstm.TextGenerationModel(v, e, h),
    "x_at_w": lambda lstm, v, e, h: XAtWModel(v, e, h),
    "xavier": lambda lstm, v, e, h: xavier(lstm.TextGenerationModel(v, e, h)),
    "one_hot": lambda lstm, v, e, h: OneHotModel(lstm, v, h),
}


def text_run(lstm, data: dict[str, torch.Tensor], seed: int, memoryless: bool, variant: str = "reference") -> dict:
    """One training run as the grader's ``train_text_model`` does it, with ``seed`` for its fixed seed."""
    torch.manual_seed(seed)
    sizes = grader.TEXT_SIZES
    model = VARIANTS[variant](lstm, len(text.VOCABULARY), sizes["embed"], sizes["hidden"])
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
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), default="reference", help="a correct model of the family"
    )
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
        f"submission {args.sample or args.submission}, variant {args.variant}"
        f"{' (memoryless)' if args.memoryless else ''}; budget "
        f"{grader.budget_text()}; sizes {grader.TEXT_SIZES}; bound <= {grader.LEARN_BOUND}; corpus "
        f"cross-entropies (nats/char): {grams}",
        flush=True,
    )
    losses, seconds = [], []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        started = time.perf_counter()
        result = text_run(lstm, data, seed, args.memoryless, args.variant)
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
