"""Helpers of ``test_shoes.py``: the grader's own pair building and accuracy, the parts of the checks
(each raises CheckFailure with its check's message), the coded photos that let a recording model tell
which shoes a training loop used, and the memorisation run of Q4b with its calibration.

One bug, one deduction: Q4b trains the submission's CNNChannel with its train_model, and runs the parts
of Q1c/Q1d, Q3b and Q4a first to lend the grader's version of a unit that failed its own check (the
pair builders, the model of ``_probes_shoes.py``, or its training loop).

Runs on the grader side: a submission's objects are reached only through the ``sub`` proxy, and
what must run next to them comes from :mod:`torchgrade.probes`.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from pathlib import Path
from typing import Any

import _probes_shoes as pair_classifier
import numpy as np
import torch

from torchgrade.checks import shapes
from torchgrade.errors import CheckFailure, MissingName, StudentTimeout
from torchgrade.probes import params, substitute
from torchgrade.probes import training as training_probes

#: Height and width of one shoe photo; a pair image is ``[2 * SIZE, SIZE]`` (left shoe on top).
SIZE = 224
#: The two input layouts a model may take: NCHW ``[B, 3, 448, 224]``, or the handout's
#: ``transpose(1, 3)`` of NHWC pair images, ``[B, 3, 224, 448]``.
NCHW, TRANSPOSED = "NCHW", "transposed"


# -- pairs and accuracy, computed by the grader ----------------------------------------------------
def same_pairs(data: np.ndarray) -> np.ndarray:
    """Left shoe on top of the right shoe of the same pair: ``[S*3, 448, 224, 3]``."""
    return np.concatenate([data[:, :, 0], data[:, :, 1]], axis=2).reshape(-1, 2 * SIZE, SIZE, 3)


def different_pairs(data: np.ndarray) -> np.ndarray:
    """Left shoe of pair p on top of the right shoe of pair (p + 1) mod 3 of the same student."""
    return np.concatenate([data[:, :, 0], np.roll(data[:, :, 1], -1, axis=1)], axis=2).reshape(-1, 2 * SIZE, SIZE, 3)


def model_input(pairs: np.ndarray, layout: str) -> torch.Tensor:
    """NHWC pair images to the model's input: NCHW, or the handout's ``transpose(1, 3)``."""
    x = torch.from_numpy(np.ascontiguousarray(pairs, dtype=np.float32))
    return (x.permute(0, 3, 1, 2) if layout == NCHW else x.transpose(1, 3)).contiguous()


def predict(model, pairs: np.ndarray, layout: str, who: str, batch_sizes: list[int] | None = None) -> np.ndarray:
    """Class predictions (argmax of the two outputs) of a submitted model, in batches of
    ``batch_sizes`` in turn (16 each by default)."""
    predictions, start, sizes = [], 0, iter(batch_sizes or [])
    while start < len(pairs):
        batch = pairs[start : start + next(sizes, 16)]
        start += len(batch)
        out = model(model_input(batch, layout))
        if isinstance(out, tuple):  # a model returning (logits, extra): grade the leading element
            out = out[0]
        logits = shapes.check_shape(out, (len(batch), 2), f"{who} on a batch of {len(batch)}")
        predictions.append(np.argmax(logits, axis=1))
    return np.concatenate(predictions)


def accuracy(model, data: np.ndarray, layout: str, who: str) -> tuple[float, float]:
    """(accuracy on same pairs, accuracy on different pairs), computed by the grader.

    Both kinds are scored in one shuffled mix, in batches of random sizes, drawn afresh at every
    grading: neither the order nor the number of calls tells a model which answer is expected (a
    model that answers "same" on odd calls and "different" on even ones is right by chance only).
    """
    same, different = same_pairs(data), different_pairs(data)
    pairs = np.concatenate([same, different])
    labels = np.concatenate([np.ones(len(same), int), np.zeros(len(different), int)])
    rng = np.random.default_rng()  # the grader's entropy: a student who reads this file cannot replay it
    order = rng.permutation(len(pairs))
    sizes = rng.integers(3, 17, size=len(pairs)).tolist()
    correct = np.empty(len(pairs), bool)
    correct[order] = predict(model, pairs[order], layout, who, sizes) == labels[order]
    return float(correct[: len(same)].mean()), float(correct[len(same) :].mean())


def find_layout(model, who: str) -> str:
    """NCHW if the model accepts ``[2, 3, 448, 224]``, else the handout's transposed layout. Probed with
    two images: a model with ``BatchNorm1d`` cannot take one image in train mode."""
    try:
        model(torch.zeros(2, 3, 2 * SIZE, SIZE))
        return NCHW
    except CheckFailure as nchw_failure:
        try:
            model(torch.zeros(2, 3, SIZE, 2 * SIZE))
        except CheckFailure:
            raise nchw_failure from None
        return TRANSPOSED


# -- which photo is where --------------------------------------------------------------------------
def random_shoes(n_students: int, seed: int) -> np.ndarray:
    """Random photos in [-0.5, 0.5], ``[S, 3, 2, 224, 224, 3]``: every photo tells itself apart."""
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n_students, 3, 2, SIZE, SIZE, 3)).astype(np.float32)


def image_index(data: np.ndarray) -> dict[bytes, tuple[int, int, int]]:
    """Map each shoe photo's float32 bytes to (student, pair, side)."""
    return {
        data[s, p, side].astype(np.float32).tobytes(): (s, p, side)
        for s in range(data.shape[0])
        for p in range(3)
        for side in range(2)
    }


def split_rows(pairs: np.ndarray, index: dict) -> list[tuple]:
    """Identify the top and bottom photo of each returned pair image (None where no photo matches)."""

    def photo(half: np.ndarray):
        return index.get(np.ascontiguousarray(half).tobytes())

    return [(photo(row[:SIZE]), photo(row[SIZE:])) for row in pairs.astype(np.float32)]


def photo_text(found: tuple[int, int, int] | None) -> str:
    """``(student, pair, side)`` in words, for messages."""
    if found is None:
        return "not a photo of the data"
    student, pair, side = found
    return f"student {student}, pair {pair}, {'left' if side == 0 else 'right'}"


# -- the parts of the checks: each raises CheckFailure with its check's message -----------------------
# The checks in test_shoes.py grade these; Q4b runs them too, to decide which of the submission's
# units (pair builders, model, training loop) failed its own check and is replaced by the grader's.
def builder_label(name: str, data: np.ndarray) -> str:
    return f"{name}(data[{data.shape[0]}, 3, 2, 224, 224, 3])"


def check_pair_shape(out: Any, data: np.ndarray, who: str) -> np.ndarray:
    """Q1c/Q1d: ``[S*3, 448, 224, 3]``, as many pairs as the data has (3 per student)."""
    return shapes.check_shape(out, (data.shape[0] * 3, 2 * SIZE, SIZE, 3), who)


def check_same_pair_rows(out: Any, data: np.ndarray, who: str) -> None:
    """Q1c: each pair once, left shoe on top of its right shoe."""
    count = data.shape[0] * 3
    array = check_pair_shape(out, data, who)
    found = set()
    for i, (top, bottom) in enumerate(split_rows(array, image_index(data))):
        if top is None or bottom is None or top[2] != 0 or bottom[2] != 1 or top[:2] != bottom[:2]:
            raise CheckFailure(
                f"{who}[{i}] is not a left shoe on top of the right shoe of the same pair "
                f"(top: {photo_text(top)}, bottom: {photo_text(bottom)})."
            )
        found.add(top[:2])
    if len(found) != count:
        raise CheckFailure(f"{who} contains {len(found)} distinct pairs; each of the {count} should appear once.")


def check_different_pair_rows(out: Any, data: np.ndarray, who: str) -> None:
    """Q1d: left and right shoes of different pairs of the same student, 3 distinct ones per student."""
    students = data.shape[0]
    array = check_pair_shape(out, data, who)
    per_student: dict[int, set] = {}
    for i, (top, bottom) in enumerate(split_rows(array, image_index(data))):
        if top is None or bottom is None or top[2] != 0 or bottom[2] != 1:
            raise CheckFailure(
                f"{who}[{i}] is not a left shoe on top of a right shoe from the data "
                f"(top: {photo_text(top)}, bottom: {photo_text(bottom)})."
            )
        if top[0] != bottom[0]:
            raise CheckFailure(
                f"{who}[{i}] mixes students {top[0]} and {bottom[0]}; both shoes must come "
                f"from the same student (otherwise background and lighting give the answer away)."
            )
        if top[1] == bottom[1]:
            raise CheckFailure(
                f"{who}[{i}] is a true pair (student {top[0]}, pair {top[1]}): a 'different' "
                f"pair must combine shoes of two different pairs."
            )
        per_student.setdefault(top[0], set()).add((top[1], bottom[1]))
    counts = {s: len(v) for s, v in per_student.items()}
    if sorted(counts) != list(range(students)) or set(counts.values()) != {3}:
        raise CheckFailure(
            f"{who}: distinct mismatched pairs per student are {counts}; expected 3 for each of the "
            f"{students} students."
        )


# -- calls bound by the names the submission uses ------------------------------------------------------
# The engine binds every call of a handout name (CNN, CNNChannel, train_model) to the submitted
# signature by parameter name (torchgrade.engine.binding): a keyword reaches the submission's own name
# for it or an alias, or is left out where the submission has no such parameter (its own default or
# fixed value is then graded, read back from the weights or the run). These helpers only ask it how.
def received(plan, name: str) -> bool:
    """Whether the handout parameter ``name`` reaches the submission in the call ``plan`` describes; a
    signature that cannot be read gets the call as written, so every value is taken as received."""
    return plan.parameters is None or plan.received(name)


# -- the models' layers ----------------------------------------------------------------------------
#: Kernel sizes the handout allows ("You can use either 3x3 or 5x5 convolutions kernels").
KERNEL_SIZES = (3, 5)


class BuiltModel:
    """A submitted model built for a check: the handle, the call as made (``CNN()`` for a constructor
    without n and kernel size), and which of the handout's hyperparameters the constructor took (a
    missing one is the model's own, read from its weights)."""

    def __init__(self, model, label: str, took_n: bool, took_k: bool) -> None:
        self.model, self.label, self.took_n, self.took_k = model, label, took_n, took_k


def build_model(sub, name: str, n: int | None = 4, kernel_size: int | None = None) -> BuiltModel:
    """``name(n=..., kernel_size=...)``, bound by the engine to the submitted constructor: one without a
    kernel size (or without n) is built without it and graded on the one it has."""
    values = {key: value for key, value in (("n", n), ("kernel_size", kernel_size)) if value is not None}
    model = sub.lookup(name)(**values)
    plan = sub.last_binding(name)
    if plan is None:  # not a handout name: the call went as written
        return BuiltModel(model, call_text(name, values), "n" in values, "kernel_size" in values)
    took = {key: key in values and received(plan, key) for key in ("n", "kernel_size")}
    return BuiltModel(model, plan.called, took["n"], took["kernel_size"])


def call_text(name: str, values: dict[str, Any]) -> str:
    return f"{name}({', '.join(f'{key}={value}' for key, value in values.items())})"


def conv_and_fc_shapes(sub, model) -> tuple[list[list[int]], list[list[int]]]:
    """Weight shapes of a submitted model's convolutions (4-D) and fully connected layers (2-D)."""
    shapes_ = sub.apply(params.parameter_shapes, model)
    weights = [shape for name, shape in shapes_ if name.endswith("weight")]
    return [s for s in weights if len(s) == 4], [s for s in weights if len(s) == 2]


def read_n_and_k(convs: list[list[int]], in_channels: int, who: str) -> tuple[int, int]:
    """n and the kernel size of a model, read from its first convolution (the one taking
    ``in_channels`` channels; the first registered one if none does)."""
    if not convs:
        raise CheckFailure(f"{who} has no convolution weights; expected four 2-D convolutions.")
    first = next((c for c in convs if c[1] == in_channels), convs[0])
    if first[1] != in_channels:
        raise CheckFailure(
            f"{who}'s first convolution has weights {first}: it takes {first[1]} input channels; expected "
            f"{in_channels}" + (" (the left and right shoe's 3 colour channels each)." if in_channels == 6 else ".")
        )
    return first[0], first[2]


def check_layers(
    sub, built: BuiltModel, in_channels: int, fc_hw: tuple[int, int], n: int | None = None, k: int | None = None
) -> tuple[int, int]:
    """Four k x k convolutions ``in_channels -> n -> 2n -> 4n -> 8n``, then FC ``8n * H * W -> 100 -> 2``,
    with n and k read from the model's first convolution. Where the constructor took n (``n``) or a
    kernel size (``k``), the weights must show the requested one. Returns (n, k) as read."""
    who = built.label
    convs, fcs = conv_and_fc_shapes(sub, built.model)
    n_read, k_read = read_n_and_k(convs, in_channels, who)
    first = next(c for c in convs if c[1] == in_channels)
    if first[2] != first[3] or k_read not in KERNEL_SIZES:
        raise CheckFailure(
            f"{who}'s first convolution has {first[2]}x{first[3]} kernels; the handout allows 3x3 or 5x5."
        )
    if n is not None and built.took_n and n_read != n:
        raise CheckFailure(f"{who}'s first convolution has {n_read} output channels; expected n = {n}.")
    if k is not None and built.took_k and k_read != k:
        raise CheckFailure(f"{who}'s convolutions have {k_read}x{k_read} kernels; expected {k}x{k}.")
    c, kk = n_read, k_read
    want_convs = [[c, in_channels, kk, kk], [2 * c, c, kk, kk], [4 * c, 2 * c, kk, kk], [8 * c, 4 * c, kk, kk]]
    if sorted(convs) != sorted(want_convs):
        raise CheckFailure(
            f"{who} has convolution weights {convs}; with n = {c} and {kk}x{kk} kernels (read from its first "
            f"convolution) expected {want_convs} ({in_channels} -> n -> 2n -> 4n -> 8n channels)."
        )
    fc_in = 8 * c * fc_hw[0] * fc_hw[1]
    want_fcs = [[100, fc_in], [2, 100]]
    if sorted(fcs) != sorted(want_fcs):
        raise CheckFailure(
            f"{who} has fully connected weights {fcs}; with n = {c} expected {want_fcs} "
            f"(8n x {fc_hw[0]} x {fc_hw[1]} features -> 100 -> 2)."
        )
    return c, kk


def kernel_builds(sub, name: str) -> list[BuiltModel]:
    """The two builds whose layers Q3a/Q3b grade: ``kernel_size=3`` and ``kernel_size=5`` where the
    constructor takes a kernel size; else its own kernel with ``n=4`` and ``n=2`` where it takes n; else
    the one model it builds, twice."""
    first = build_model(sub, name, n=4, kernel_size=3)
    if first.took_k:
        return [first, build_model(sub, name, n=4, kernel_size=5)]
    return [first, build_model(sub, name, n=2) if first.took_n else first]


def layers_part(built: BuiltModel, k: int) -> str:
    own = "its own kernel size" if not built.took_k else f"kernel_size={k}"
    return f"{own}: four convolutions n -> 8n, FC -> 100 -> 2 relative to n and k read from the weights ({built.label})"


def channel_order(seen: np.ndarray, left: np.ndarray, right: np.ndarray) -> list[str | None]:
    """Which of the six shoe channels (``L0..L2``, ``R0..R2``) each of the first convolution's input
    channels is (None where it is none of them); a shoe's channel transposed counts too."""
    sources = {f"L{c}": left[:, c] for c in range(3)} | {f"R{c}": right[:, c] for c in range(3)}
    found = []
    for channel in range(seen.shape[1]):
        plane = seen[:, channel]
        match = None
        for label, source in sources.items():
            if np.allclose(plane, source, atol=1e-6) or (
                plane.shape[-2:] == source.shape[-2:][::-1]
                and np.allclose(plane, np.swapaxes(source, -1, -2), atol=1e-6)
            ):
                match = label
                break
        found.append(match)
    return found


CHANNEL_OUTPUT = "output [B, 2] for input [B, 3, 448, 224]"
CHANNEL_STACKED = "left and right shoes stacked on channels: the first convolution sees [B, 6, 224, 224]"
CHANNEL_LAYERS = "six input channels, n -> 8n convolutions, FC 8n*14*14 -> 100 -> 2 (n and k read from the weights)"


def check_channel_output(sub) -> None:
    """Q3b: ``[B, 2]`` logits for batches of 2 and 3 pairs (n = 2 and 4 where the constructor takes n)."""
    for n in (2, 4):
        built = build_model(sub, "CNNChannel", n=n)
        layout = find_layout(built.model, built.label)
        for batch in (2, 3):  # two images at least: BatchNorm1d cannot take one in train mode
            x = model_input(np.zeros((batch, 2 * SIZE, SIZE, 3), np.float32), layout)
            shapes.check_shape(built.model(x), (batch, 2), f"{built.label}(x{list(x.shape)})")
        if not built.took_n:
            break


def check_channel_stacked(sub) -> None:
    """Q3b: the first convolution sees the left shoe's and the right shoe's 3 channels, in any order."""
    built = build_model(sub, "CNNChannel", n=4)
    layout = find_layout(built.model, built.label)
    pairs = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 2 * SIZE, SIZE, 3)).astype(np.float32)
    seen = sub.apply(training_probes.first_conv_input, built.model, model_input(pairs, layout))
    who = f"the input of {built.label}'s first convolution"
    array = shapes.check_shape(seen, (2, 6, SIZE, SIZE), who)
    left = np.transpose(pairs[:, :SIZE], (0, 3, 1, 2))
    right = np.transpose(pairs[:, SIZE:], (0, 3, 1, 2))
    order = channel_order(array, left, right)
    if sorted(map(str, order)) != ["L0", "L1", "L2", "R0", "R1", "R2"]:
        named = ", ".join(
            f"{c}: " + ("not a shoe's channel" if o is None else f"{'left' if o[0] == 'L' else 'right'} {o[1]}")
            for c, o in enumerate(order)
        )
        raise CheckFailure(
            f"{who} is not the left shoe's 3 channels stacked with the right shoe's 3 channels, each once "
            f"(channel {named}). Hint: slice the top and bottom 224 rows and torch.cat them on dim 1."
        )


def check_channel_layers(sub) -> None:
    """Q3b: the layers relative to n and k read from the weights, for both kernel builds."""
    for k, built in zip((3, 5), kernel_builds(sub, "CNNChannel"), strict=True):
        check_layers(sub, built, 6, (14, 14), n=4 if k == 3 or built.took_k else 2, k=k)


#: The parts of Q3b: (points, name, check).
CHANNEL_PARTS = (
    (1, CHANNEL_OUTPUT, check_channel_output),
    (1, CHANNEL_STACKED, check_channel_stacked),
    (1, CHANNEL_LAYERS, check_channel_layers),
)


# -- Q4a: the training loop, observed through a recording model -------------------------------------
#: The probe run of Q4a: 4 students (12 pairs), batches of 6 (3 positives, 3 negatives), 3 epochs.
PROBE_STUDENTS, PROBE_BATCH, PROBE_EPOCHS = 4, 6, 3
STEPS_PER_EPOCH = PROBE_STUDENTS * 3 // (PROBE_BATCH // 2)


def coded_shoes(n_students: int, first_code: int, n_codes: int) -> np.ndarray:
    """Photos filled with one value each, ``code(s, p, side) = first_code + 6 s + 2 p + side``, so a
    recording model can tell which photos a training loop put in each input."""
    data = np.empty((n_students, 3, 2, SIZE, SIZE, 3), np.float32)
    for s in range(n_students):
        for p in range(3):
            for side in range(2):
                data[s, p, side] = code_value(first_code + 6 * s + 2 * p + side, n_codes)
    return data


def code_value(code: int, n_codes: int) -> float:
    return -0.45 + 0.9 * code / (n_codes - 1)


def decode(value: float, n_codes: int) -> tuple[int, int, int] | None:
    """The (student, pair, side) of a coded photo's mean value; None for any other value."""
    code = round((value + 0.45) * (n_codes - 1) / 0.9)
    if not 0 <= code < n_codes or abs(code_value(code, n_codes) - value) > 1e-3:
        return None
    return code // 6, code % 6 // 2, code % 2


#: The handout's leading parameters of train_model, which the grader passes by position.
LEADING = ("model", "train_data", "valid_data")


class TrainingCall:
    """A call of the student's ``train_model``: the grader's values under the handout's names, how the
    engine binds them to the submitted signature (``plan``), and the call as messages print it (the
    submission's own parameter names, the grader's values in words)."""

    def __init__(self, args: tuple, kwargs: dict[str, Any], texts: dict[str, str], plan) -> None:
        self.args, self.kwargs, self.plan = args, kwargs, plan
        by_target = {target: handout for handout, target in plan.targets.items()}
        shown = [texts[name] for name in LEADING[: len(plan.args)]]
        for key in plan.kwargs:
            handout = key if key in texts else by_target.get(key, key)
            shown.append(f"{key}={texts.get(handout, '...')}")
        self.label = f"train_model({', '.join(shown)})"

    def has(self, name: str) -> bool:
        """Whether the handout parameter ``name`` (``max_iters``, ``checkpoint_path``) reaches the loop."""
        return received(self.plan, name)

    def requires(self, name: str) -> bool:
        """Whether the submitted parameter that takes the handout's ``name`` has no default."""
        target = self.plan.target(name)
        return any(p.name == target and not p.has_default for p in self.plan.parameters or ())

    def __call__(self, submission) -> Any:
        return submission.lookup("train_model")(*self.args, **self.kwargs)


def training_call(
    submission,
    *,
    model,
    train: np.ndarray,
    valid: np.ndarray,
    batch_size: int,
    learning_rate: float,
    iterations: int,
    epochs: int,
    checkpoint: str | None = None,
    weight_decay: float | None = None,
) -> TrainingCall:
    """The student's ``train_model`` call, bound by the engine to the names its signature uses.

    The budget is passed as the loop takes it: an iteration count where it has one (with a generous
    epoch count beside it, so that the iterations decide), else ``max_epoch``, the grader's iteration
    budget converted at ``pairs / (batch_size / 2)`` steps per epoch by the caller.

    Raises:
        SignatureMismatch: the signature cannot take the handout's call (a required extra parameter).
    """
    texts = {
        "model": "model",
        "train_data": f"train_data[{len(train)} students]",
        "valid_data": f"valid_data[{len(valid)} student{'s' if len(valid) != 1 else ''}]",
        "batch_size": str(batch_size),
        "learning_rate": f"{learning_rate:g}",
    }
    kwargs: dict[str, Any] = {"batch_size": batch_size, "learning_rate": learning_rate}
    if weight_decay is not None:
        kwargs["weight_decay"], texts["weight_decay"] = weight_decay, f"{weight_decay:g}"
    if checkpoint is not None:
        kwargs["checkpoint_path"], texts["checkpoint_path"] = checkpoint, f"'{checkpoint}'"
    args = (model, train, valid)
    budget = {"max_iters": iterations, "max_epoch": max(epochs, 1000)}
    plan = submission.plan_call("train_model", *args, **kwargs, **budget)
    if not received(plan, "max_iters"):
        budget = {"max_epoch": epochs}
        plan = submission.plan_call("train_model", *args, **kwargs, **budget)
    texts.update({key: str(value) for key, value in budget.items()})
    return TrainingCall(args, {**kwargs, **budget}, texts, plan)


def budget_text(call: TrainingCall) -> str:
    """What a message says about how the training budget reached the loop."""
    if call.has("max_iters"):
        return ""
    if call.has("max_epoch"):
        return " (train_model takes no iteration count: the grader's budget was given in epochs)"
    return " (train_model takes neither an iteration nor an epoch count: its own defaults decide how long it trains)"


def run_training_probe(submission) -> dict[str, Any]:
    """Run the student's train_model on a RecordingModel and coded photos; return what it saw.

    A run that raises keeps what it recorded up to the crash (``failure`` beside the calls), so the parts
    that do not depend on what failed are still graded. A run that raised with a checkpoint path is run
    again without one (where the loop allows it): a crash at the checkpoint save then costs only that part.
    ``from google.colab import drive; drive.mount(...)`` inside the loop mounts nothing and goes on.
    """
    n_codes = 6 * (PROBE_STUDENTS + 1)
    train, valid = coded_shoes(PROBE_STUDENTS, 0, n_codes), coded_shoes(1, 6 * PROBE_STUDENTS, n_codes)
    submission.seed(421)
    submission.set_cpu_budget(120)
    stand_in: list[str] = []
    try:
        stand_in = submission.apply(training_probes.install_colab_stand_in)
        # a folder the submission may write to, also in a sandbox
        target = submission.apply(training_probes.checkpoint_target, "torchgrade-checkpoints-")
        first = _recorded_run(submission, train, valid, target)
        first["checkpoints"] = _saved(submission, os.path.dirname(target))
        first["n_codes"] = n_codes
        first["colab"] = bool(stand_in)
        first["target"] = target
        if first.get("failure") is None or not first["binding"].has("checkpoint_path"):
            return first
        if isinstance(first["failure"], StudentTimeout) or first["binding"].requires("checkpoint_path"):
            return first
        second = _recorded_run(submission, train, valid, None)
        first["rerun"] = second
        return first
    finally:
        submission.set_cpu_budget(None)
        if stand_in:
            try:
                submission.apply(training_probes.remove_colab_stand_in, stand_in)
            except CheckFailure:
                pass  # the worker died: its successor starts without it


def _saved(submission, folder: str) -> list[dict]:
    try:
        return submission.apply(training_probes.read_checkpoints_under, folder)
    except CheckFailure:
        return []


def _recorded_run(submission, train: np.ndarray, valid: np.ndarray, target: str | None) -> dict[str, Any]:
    """One run of train_model on a fresh RecordingModel: its calls (also those before a crash), its
    parameters before and after, what it returned, and the failure (None if it returned)."""
    model = submission.apply(training_probes.RecordingModel)
    before = model.parameter_values()
    binding = training_call(
        submission,
        model=model,
        train=train,
        valid=valid,
        batch_size=PROBE_BATCH,
        learning_rate=0.01,
        weight_decay=0.0,
        iterations=PROBE_EPOCHS * STEPS_PER_EPOCH,
        epochs=PROBE_EPOCHS,
        checkpoint=target,
    )
    run: dict[str, Any] = {"binding": binding, "before": before, "failure": None, "returned": None}
    try:
        run["returned"] = binding(submission)
    except CheckFailure as exc:
        run["failure"] = exc
    try:
        run["calls"], run["after"] = model.calls, model.parameter_values()
    except CheckFailure:  # the worker died or timed out: nothing it recorded survives
        run["calls"], run["after"] = [], before
    return run


def probe_label(probe: dict[str, Any]) -> str:
    """The probe's train_model call as text, with the scratch folder shortened."""
    label = probe["binding"].label if "binding" in probe else "train_model(...)"
    return label.replace(os.path.dirname(probe.get("target", "")) or "\0", "...")


def training_steps(probe: dict[str, Any], *, needs_all: bool = False) -> list[dict]:
    """The forward calls of the probe run that a loss was backpropagated through.

    Where the run with a checkpoint path raised and a run without one went further, that run's steps.
    Steps recorded before a crash are graded (``needs_all``: a part that needs the whole run fails with
    the crash instead)."""
    run = _step_run(probe)
    steps = [c for c in run.get("calls", []) if c.get("label_sign") is not None]
    failure = run.get("failure")
    if failure is not None and (needs_all or not steps):
        raise CheckFailure(
            f"{failure}" + (f" (after {len(steps)} training steps)" if steps else " (before any training step)")
        )
    if not steps:
        raise CheckFailure(
            "train_model(...) never backpropagated through the model's output: no training step "
            "was observed. Hint: compute the loss on model(x) and call loss.backward()."
        )
    return steps


def _step_run(probe: dict[str, Any]) -> dict[str, Any]:
    rerun = probe.get("rerun")
    if rerun is None:
        return probe
    count = lambda run: sum(c.get("label_sign") is not None for c in run.get("calls", []))  # noqa: E731
    return rerun if rerun.get("failure") is None or count(rerun) > count(probe) else probe


def rerun_note(probe: dict[str, Any]) -> str:
    """Said in the messages of the parts graded on the run without a checkpoint path."""
    if _step_run(probe) is probe:
        return ""
    return (
        f" (graded on a second run without a checkpoint path: the run with one raised "
        f"{type(probe['failure']).__name__})"
    )


def step_samples(step: dict, n_codes: int) -> list[tuple]:
    """Per sample of a step: (top photo, bottom photo, trained label)."""
    labels = [1 if sign < 0 else 0 for sign in step["label_sign"]]
    halves = step.get("halves") or [[math.nan, math.nan]] * len(labels)
    return [(decode(a, n_codes), decode(b, n_codes), label) for (a, b), label in zip(halves, labels, strict=False)]


def evaluation_counts(probe: dict[str, Any], n_codes: int) -> dict[str, int]:
    """Forward calls without a training step (no loss backpropagated) on validation and on training
    photos: how often the loop evaluated its accuracies."""
    counts = {"train": 0, "valid": 0}
    for call in _step_run(probe).get("calls", []):
        if call.get("label_sign") is not None:
            continue
        students = {
            found[0] for pair in call.get("halves") or [] for found in map(lambda v: decode(v, n_codes), pair) if found
        }
        counts["valid"] += any(s >= PROBE_STUDENTS for s in students)
        counts["train"] += any(s < PROBE_STUDENTS for s in students)
    return counts


def training_layout(probe: dict[str, Any]) -> str:
    """The layout the student's train_model feeds its model (NCHW unless it transposes)."""
    for call in probe.get("calls", []):
        if call.get("label_sign") is not None and len(call["shape"]) == 4 and call["shape"][3] == 2 * SIZE:
            return TRANSPOSED
    return NCHW


def returned_curves(returned: Any) -> dict[str, list[float]]:
    """Lists of finite numbers in a returned dict, tuple or list, by key or position."""
    items = (
        returned.items()
        if isinstance(returned, dict)
        else enumerate(returned or ())
        if isinstance(returned, (list, tuple))
        else ()
    )
    found = {}
    for key, value in items:
        if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)):
            numbers = (
                np.asarray(value, dtype=object).ravel().tolist()
                if not isinstance(value, torch.Tensor)
                else value.flatten().tolist()
            )
            if numbers and all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in numbers):
                found[str(key)] = [float(v) for v in numbers]
    return found


LOOP_LABELS = "each step: batch_size/2 true pairs labelled 1 and batch_size/2 mismatches labelled 0"
LOOP_INPUTS = "inputs NCHW [B, 3, 448, 224], left shoe on top"
LOOP_UPDATES = "trains in train mode and updates the parameters"


def loop_label(probe: dict[str, Any]) -> str:
    """The probe's train_model call, as Q4a's messages name it."""
    return probe_label(probe) + budget_text(probe["binding"])


def check_loop_labels(probe: dict[str, Any]) -> None:
    """Q4a: every training step has batch_size/2 true pairs labelled 1 and batch_size/2 inputs labelled 0."""
    who, note, n_codes = loop_label(probe), rerun_note(probe), probe.get("n_codes", 0)
    for number, step in enumerate(training_steps(probe), 1):
        samples = step_samples(step, n_codes)
        labels = [label for _, _, label in samples]
        if len(samples) != PROBE_BATCH or sum(labels) != PROBE_BATCH // 2:
            raise CheckFailure(
                f"{who}: step {number} trained on {len(samples)} inputs with labels {labels}; "
                f"expected {PROBE_BATCH // 2} labelled 1 and {PROBE_BATCH // 2} labelled 0{note}."
            )
        for top, bottom, label in samples:
            true_pair = (
                top is not None and bottom is not None and top[:2] == bottom[:2] and (top[2], bottom[2]) == (0, 1)
            )
            if label == 1 and not true_pair:
                raise CheckFailure(
                    f"{who}: step {number} labelled 1 an input that is not a true pair "
                    f"(top: {photo_text(top)}, bottom: {photo_text(bottom)}){note}. Hint: same pairs get "
                    f"label 1, different pairs label 0."
                )


def check_loop_inputs(probe: dict[str, Any]) -> None:
    """Q4a: the model is fed ``[B, 3, 448, 224]`` (or its transpose) with a left shoe in the first half."""
    who, note, n_codes = loop_label(probe), rerun_note(probe), probe.get("n_codes", 0)
    for number, step in enumerate(training_steps(probe), 1):
        shape = step["shape"]
        if len(shape) != 4 or shape[1] != 3 or sorted(shape[2:]) != [SIZE, 2 * SIZE]:
            raise CheckFailure(
                f"{who}: step {number} fed the model a {step['dtype']} tensor of shape {shape}; "
                f"expected [{PROBE_BATCH}, 3, 448, 224]{note}. Hint: permute NHWC images to NCHW."
            )
        for top, bottom, _ in step_samples(step, n_codes):
            if top is None or bottom is None or top[2] != 0:
                raise CheckFailure(
                    f"{who}: step {number} fed an input whose first half is not a left shoe "
                    f"(first half: {photo_text(top)}, second half: {photo_text(bottom)}){note}."
                )


def check_loop_updates(probe: dict[str, Any]) -> None:
    """Q4a: every training step runs in train mode, and the parameters change."""
    who, note = loop_label(probe), rerun_note(probe)
    steps = training_steps(probe)
    eval_steps = [i for i, step in enumerate(steps, 1) if not step["training"]]
    if eval_steps:
        raise CheckFailure(
            f"{who}: {len(eval_steps)} of {len(steps)} training steps ran with the model in eval "
            f"mode (first: step {eval_steps[0]}){note}. Hint: call model.train() before training steps, "
            f"again after evaluating."
        )
    run = probe if not note else probe["rerun"]
    if run["before"] == run["after"]:
        raise CheckFailure(f"{who} left the model's parameters unchanged{note}; call optimizer.step().")


#: The parts of Q4a that decide whether a loop can teach a model anything (Q4b lends the grader's loop
#: where one fails): (points, name, check).
LOOP_PARTS = (
    (2, LOOP_LABELS, check_loop_labels),
    (1, LOOP_INPUTS, check_loop_inputs),
    (1, LOOP_UPDATES, check_loop_updates),
)


def failed_parts(parts: tuple, *args: Any) -> dict[str, str]:
    """The parts of a check (``(points, name, check)``) that fail on ``args``: name -> message, capped."""
    failed = {}
    for _, name, check in parts:
        try:
            check(*args)
        except CheckFailure as exc:
            failed[name] = capped(str(exc))
    return failed


# -- Q4b: memorising five students ------------------------------------------------------------------
# What the check demands, decided by measurement (the reference, 2 cores). Negatives pair L_p with
# R_(p+1), so every photo is in one positive and one negative and neither half alone predicts the
# label: the model must compare the two shoes.
# * CNNChannel (the shoes meet in conv1): at lr 3e-3, batch 10, the reference over 40 runs (20 seeds
#   x 2 data seeds, one of them this grader's) is at min 1.000, mean 1.000 after 150 iterations; it
#   first reaches 90% after 42-126 iterations (only 14/20 seeds by 99). At lr 1e-3 and 150 iterations,
#   19 of 20 (min 0.867). The handout's "~50 iterations" is too few here (1 of 20 seeds).
#   Those runs used 2 threads. On 1 thread the numbers take another path: 20 seeds (each with its own
#   photos) first reach 90% after 45-108 iterations and are all at 1.000 after 150, but this grader's
#   seed on its own photos first reaches 90% after 174 and stays at 1.000 from 210 (with 2 threads it
#   was at 1.000 by 150). Training is pinned to 1 thread (MEMORISE_THREADS, so that a batch job and a
#   student's laptop give one verdict) with 250 iterations: 40 iterations of margin for this seed.
#   Known bugs at this budget reach at most: positives 0.80 / negatives 0.33 (a "different" pair
#   that can be a true pair), 1.00 / 0.00 (negatives across students; shoes stacked on width),
#   0.00 / 0.00 (labels swapped).
# * CNN (the shoes meet only in fc1) stays at loss ln 2 and 50% for the reference: 0 of 13 runs reached
#   90% within 200 iterations (n = 2 and 4, lr 1e-4 to 3e-3, batch 10 and 30; never above 0.567); a
#   completed student submission of this handout also stayed at 50% over 1000 iterations, and the
#   handout warns of it ("If you have trouble with CNN() but not CNNChannel()"). fc1's inputs are
#   nearly constant across samples at initialisation and its units die within 25 Adam steps (56 of
#   100 alive at init, 5 after). A check on it would fail correct work, so the memorisation
#   points go to CNNChannel alone; the training loop itself is graded in Q4a, whatever the model.
MEMORISE_STUDENTS = 5
MEMORISE_SEED = 7
#: The seeds of Q4b's run, in turn: the next one only where a run stalls at chance (MEMORISE_STALLED), as
#: the reference does on some seeds (a dead start: 0.500 for all 400 iterations on seed 1). The better
#: run is graded, and the evidence says so.
MEMORISE_SEEDS = (MEMORISE_SEED, MEMORISE_SEED + 1)
#: A run whose training accuracy (the mean of positives and negatives) is at most this stalled at chance.
MEMORISE_STALLED = 0.6
MEMORISE_MODEL = "CNNChannel"
#: Training runs on this many torch threads wherever it is graded (see training_probes.set_threads).
MEMORISE_THREADS = 1
#: The budget of the memorisation check: the student's train_model with these arguments.
# Issue 17: the photos became JPEG files (decoded as plt.imread reads them). Measured by the instructor's
# calibration script calibrate_memorise.py (not shipped to students) on the grader's data, 1 thread, 400 iterations,
# seeds 0-19 (each seeds every generator, as the check seeds the worker), the reference's train_model
# standing for a correct loop:
# * reference CNNChannel: 19 of 20 at 1.000; the first epoch end at >= 0.9 after 60-258 iterations
#   (median 87; the latest, 258, is seed 7, this grader's first seed: 142 iterations of margin). Seed 1
#   is a dead start: 0.500 at every epoch end of the 400 iterations (0.467 after 150). 28-44 s CPU a run.
# * interleaved channels (x.reshape(B, 6, 224, 224), the slowest variant measured): 20 of 20 at 1.000,
#   first >= 0.9 after 57-231 iterations (median 99); 59-76 s CPU a run.
# * at seed 7 only (the cores were shared; see VARIANTS_MEASURED): batch norm after every layer, 5x5
#   kernels, n = 8 all at 1.000, first >= 0.9 after 48-96 iterations.
# A dead start ends at chance (0.5) and every learning run at 1.000, so a run at most MEMORISE_STALLED
# (0.6) after the budget is run again from the next seed: one dead start in 20 runs of the reference
# makes two in a row about 1 in 400 (the two seeds' runs are independent draws of the initial weights);
# both of this grader's seeds (7, 8) learn. The second run costs a stalled or non-learning submission
# another ~40-70 s of CPU.
MEMORISE_BUDGET = dict(n=4, batch_size=10, learning_rate=3e-3, iterations=400)
MEMORISE_THRESHOLD = 0.9
#: The error of ``x.view(...)`` on a channels_last tensor, and what the check says when it graded around it.
VIEW_DRIFT = "view size is not compatible with input tensor's size and stride"
MSG_VIEW_DRIFT = (
    "the model's x.view(...) failed on the channels_last batches that torch 2.13 makes of a permuted NHWC "
    "batch (a difference of torch versions, not of your logic), so it was trained on the same batches made "
    "contiguous; .reshape(...) or .flatten(1) works on every version"
)
#: Training accuracy of correct CNNChannel variants with MEMORISE_BUDGET (calibrate_memorise.py, 1 thread).
VARIANTS_MEASURED: dict[str, str] = {
    "reference, seeds 0-19": "19 of 20 at 1.000 (first >= 0.9 after 60-258 iterations); seed 1 a dead start at 0.500",
    "channels interleaved by reshape(B, 6, 224, 224), seeds 0-19": "20 of 20 at 1.000 (after 57-231)",
    "batch norm after every layer, seed 7": "1.000 (after 48)",
    "5x5 kernels, seed 7": "1.000 (after 90)",
    "n = 8, seed 7": "1.000 (after 96)",
}
CALIBRATION_CNN_CHANNEL = (
    "on one thread, on the grader's JPEG photos, the reference over 20 seeds first reaches 90% after 60-258 "
    "iterations and ends at 100% (one seed in 20 stalls at 50% from the start: such a run is repeated from "
    "the next seed); CNN is not required to memorise, see the handout's warning"
)


#: The submission's pair builders train_model reads, the grader's versions and their own checks' parts
#: (Q1c, Q1d), each a function ``(out, data, who)`` that raises CheckFailure with the check's message.
PAIR_BUILDERS: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "generate_same_pair": (same_pairs, (check_pair_shape, check_same_pair_rows)),
    "generate_different_pair": (different_pairs, (check_pair_shape, check_different_pair_rows)),
}


def failed_pair_builders(submission, data: np.ndarray) -> dict[str, str]:
    """The submission's pair builders that fail a part of their own check (Q1c/Q1d) on ``data``, with its
    message. A builder that raises, or that the submission lacks, counts as failed."""
    failed = {}
    for name, (_, parts) in PAIR_BUILDERS.items():
        who = builder_label(name, data)
        try:
            out = submission.lookup(name)(data)
            for part in parts:
                part(out, data, who)
        except CheckFailure as exc:
            failed[name] = capped(f"{type(exc).__name__}: {exc}" if isinstance(exc, MissingName) else str(exc))
    return failed


def capped(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def lend_pair_builders(submission, data: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Make the student's train_model read the grader's pair builders for ``names`` (a
    :class:`substitute.Replay` answering ``data`` with the grader's pairs, the student's own function for
    any other input). Returns what to pass to :func:`restore_pair_builders`."""
    train_model = submission.lookup("train_model")
    previous = {}
    for name in names:
        own = submission.lookup(name) if name in submission_names(submission) else None
        replay = submission.apply(substitute.Replay, [(data, PAIR_BUILDERS[name][0](data))], own)
        previous[name] = (submission.apply(substitute.swap, train_model, name, replay), replay)
    return previous


def restore_pair_builders(submission, previous: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Put the student's pair builders back; return the Replays' hit and miss counts."""
    counts = {}
    train_model = submission.lookup("train_model")
    for name, (own, replay) in previous.items():
        counts[name] = replay.counts()
        submission.apply(substitute.swap, train_model, name, own)
    return counts


def submission_names(submission) -> set[str]:
    names = set()
    for name in PAIR_BUILDERS:
        try:
            submission.lookup(name)
            names.add(name)
        except CheckFailure:
            pass
    return names


#: What Q4b's message says where it trained with a unit of the grader's (one bug, one deduction).
MSG_LENT_LOOP = (
    "trained with the grader's training loop ({how}) instead of your train_model, which failed its own "
    "check Q4a (failed parts: {why}; see lent in the evidence), so that it costs points only in Q4a"
)
MSG_LENT_MODEL = (
    "trained the grader's CNNChannel ({how}) with your train_model instead of your CNNChannel, which "
    "failed its own check Q3b (failed parts: {why}; see lent in the evidence), so that it costs points only in Q3b"
)
MSG_NOT_INDEPENDENT = (
    "Q4b could not be graded independently of Q3b and Q4a: your CNNChannel failed Q3b ({model}) and your "
    "train_model failed Q4a ({loop}), so there is no unit of yours to grade alone; graded with both of yours"
)
MSG_STALLED = (
    "with seed {first} the run stalled at chance (positives {pos:.2f}, negatives {neg:.2f}), a dead start that "
    "correct models also have on some seeds: the run with seed {second} was graded"
)
GRADER_LOOP = (
    "Adam, cross-entropy on the 2 logits, batch_size/2 true pairs and batch_size/2 mismatches of the "
    "grader's per step, shuffled every epoch"
)
GRADER_MODEL = "convolutions n -> 2n -> 4n -> 8n with 2x2 max-pooling, FC 100, FC 2, the shoes stacked on channels"


def lent_units(submission, probe: dict[str, Any]) -> dict[str, Any]:
    """Which units Q4b trains with the grader's version: ``loop`` (the parts of Q4a the student's
    train_model failed) where the student's CNNChannel passes Q3b, ``model`` (the parts of Q3b its
    CNNChannel failed) where its train_model passes Q4a's learning parts; where both failed, neither
    (``not_independent``: there is nothing of the student's left to grade alone)."""
    model_failed = failed_parts(CHANNEL_PARTS, submission)
    loop_failed = failed_parts(LOOP_PARTS, probe)
    if model_failed and loop_failed:
        return {"not_independent": {"model": model_failed, "loop": loop_failed}}
    if loop_failed:
        return {"loop": loop_failed}
    if model_failed:
        return {"model": model_failed}
    return {}


def mean_accuracy(result: dict[str, Any]) -> float:
    return float(np.mean(result["train"]))


def seeded_run(run_seed) -> dict[str, Any]:
    """``run_seed(seed)`` for the first of MEMORISE_SEEDS, and for the next only where the run stalled at
    chance (training accuracy at most MEMORISE_STALLED); the better run (the first of equals), with a
    ``stalled`` note where a second seed ran."""
    runs = []
    for seed in MEMORISE_SEEDS:
        runs.append(run_seed(seed))
        if mean_accuracy(runs[-1]) > MEMORISE_STALLED:
            break
    best = max(runs, key=mean_accuracy)
    if len(runs) > 1:
        pos, neg = runs[0]["train"]
        best = {**best, "stalled": MSG_STALLED.format(first=runs[0]["seed"], pos=pos, neg=neg, second=runs[1]["seed"])}
    return best


def _probe_digest() -> str:
    """A digest of the grader's model and loop lent to the worker, for the grade-cache key."""
    return hashlib.sha256(Path(inspect.getsourcefile(pair_classifier)).read_bytes()).hexdigest()[:16]


def memorise(submission, grade_cache, shoe_arrays: dict[str, np.ndarray], probe: dict[str, Any]) -> dict[str, Any]:
    """Train CNNChannel with the student's train_model on five students, once per submission (shared
    through the grade cache); the grader measures the accuracies itself, on the training students and
    on both test sets.

    One bug, one deduction: where the submission's generate_same_pair or generate_different_pair fails its
    own check (Q1c/Q1d) on these students, train_model reads the grader's version instead during this
    run (``borrowed``); where its train_model fails a part of Q4a that decides whether a model can learn
    (``LOOP_PARTS``), its CNNChannel is trained by the grader's loop (``lent["loop"]``); where its
    CNNChannel fails Q3b, the grader's model is trained by its train_model (``lent["model"]``). Where
    both failed, both of the submission's run and the result says it is not independent. A run that
    stalls at chance is run again with the next of MEMORISE_SEEDS, and the better run is graded."""
    data = shoe_arrays["train"][:MEMORISE_STUDENTS]
    budget = MEMORISE_BUDGET
    lent = lent_units(submission, probe)
    # The grader's loop builds the grader's pairs: the student's builders are not called then.
    borrowed = {} if "loop" in lent else failed_pair_builders(submission, data)
    steps_per_epoch = math.ceil(MEMORISE_STUDENTS * 3 / (budget["batch_size"] // 2))
    epochs = math.ceil(budget["iterations"] / steps_per_epoch)

    def run() -> dict:
        try:
            return {**seeded_run(run_seed), "lent": lent, "borrowed": borrowed}
        except CheckFailure as exc:  # the run failed: say with which units of the grader's it ran
            notes = memorise_notes({"lent": lent, "borrowed": borrowed})
            if not notes:
                raise
            raise type(exc)(f"{exc}" + "".join(f" Note: {note}." for note in notes.values())) from None

    def run_seed(seed: int) -> dict:
        try:
            return attempt(seed, contiguous=False)
        except CheckFailure as exc:
            if VIEW_DRIFT not in str(exc):
                raise
        # The model's .view met the channels_last batches torch 2.13 makes of a permuted NHWC batch, a
        # difference of torch versions, not of logic: the same run again, inputs made contiguous.
        return {**attempt(seed, contiguous=True), "drift": MSG_VIEW_DRIFT}

    def attempt(seed: int, contiguous: bool) -> dict:
        submission.seed(seed)
        submission.set_cpu_budget(240)  # CPU seconds; the 400 iterations take ~55
        threads = submission.apply(training_probes.set_threads, MEMORISE_THREADS)
        try:
            if "model" in lent:
                model = submission.apply(pair_classifier.PairClassifier, budget["n"])
                label = f"the grader's CNNChannel(n={budget['n']})"
            else:
                built = build_model(submission, MEMORISE_MODEL, n=budget["n"])
                model, label = built.model, built.label
            result: dict[str, Any] = {"seed": seed, "model": label}
            if "loop" in lent:
                layout = find_layout(model, label)
                result["steps"] = submission.apply(
                    pair_classifier.train_pair_classifier,
                    model,
                    same_pairs(data),
                    different_pairs(data),
                    layout=pair_classifier.NCHW if layout == NCHW else pair_classifier.TRANSPOSED,
                    batch_size=budget["batch_size"],
                    learning_rate=budget["learning_rate"],
                    iterations=budget["iterations"],
                    seed=seed,
                )["steps"]
                result["call"] = (
                    f"the grader's training loop on {label} ({budget['iterations']} iterations, batch_size="
                    f"{budget['batch_size']}, learning_rate={budget['learning_rate']:g}, {layout} inputs)"
                )
                returned = None
            else:
                layout = training_layout(probe)
                trained = submission.apply(training_probes.ContiguousInputs, model) if contiguous else model
                call = training_call(
                    submission,
                    model=trained,
                    train=data,
                    valid=data,
                    batch_size=budget["batch_size"],
                    learning_rate=budget["learning_rate"],
                    iterations=budget["iterations"],
                    epochs=epochs,
                )
                swapped = lend_pair_builders(submission, data, sorted(borrowed))
                try:
                    returned = call(submission)
                finally:
                    result["replays"] = restore_pair_builders(submission, swapped) if swapped else {}
                result["call"] = call.label + budget_text(call)
            model.eval()
            who = f"{label} after training"
            return {
                **result,
                "train": accuracy(model, data, layout, who),
                "test_w": accuracy(model, shoe_arrays["test_w"], layout, who),
                "test_m": accuracy(model, shoe_arrays["test_m"], layout, who),
                "curves": returned_curves(returned),
                "layout": layout,
            }
        finally:
            submission.set_cpu_budget(None)
            try:
                submission.apply(training_probes.set_threads, threads)
            except CheckFailure:
                pass  # the worker died or timed out: its successor starts with the default count

    settings = {
        **budget,
        "seeds": list(MEMORISE_SEEDS),
        "stalled": MEMORISE_STALLED,
        "threads": MEMORISE_THREADS,
        "borrowed": sorted(borrowed),
        "lent": {unit: sorted(parts) for unit, parts in lent.items() if unit != "not_independent"},
        "not_independent": "not_independent" in lent,
        "layout": training_layout(probe),
        "probe": _probe_digest(),
    }
    return grade_cache.compute(f"memorise-{MEMORISE_MODEL}", ("shoes",), settings, run, ignore=("load_shoes",))


def memorise_notes(memorised: dict[str, Any]) -> dict[str, str]:
    """What Q4b's message and evidence say about how the run was made: the units of the grader's it
    used and why, a seed that stalled, a difference of torch versions graded around."""
    notes = {}
    borrowed = memorised.get("borrowed") or {}
    if borrowed:
        notes["borrowed pair builders"] = (
            "trained with the grader's "
            + " and ".join(sorted(borrowed))
            + " (yours failed its own check: "
            + "; ".join(f"{name}: {why}" for name, why in sorted(borrowed.items()))
            + "), so that it costs points only in Q1c/Q1d"
        )
    lent = memorised.get("lent") or {}
    if "loop" in lent:
        notes["grader's loop"] = MSG_LENT_LOOP.format(how=GRADER_LOOP, why="; ".join(lent["loop"]))
    if "model" in lent:
        notes["grader's model"] = MSG_LENT_MODEL.format(how=GRADER_MODEL, why="; ".join(lent["model"]))
    if "not_independent" in lent:
        failed = lent["not_independent"]
        notes["not independent"] = MSG_NOT_INDEPENDENT.format(
            model=", ".join(failed["model"]), loop=", ".join(failed["loop"])
        )
    if memorised.get("stalled"):
        notes["stalled seed"] = memorised["stalled"]
    if memorised.get("drift"):
        notes["version drift"] = memorised["drift"]
    return notes
