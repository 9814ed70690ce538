"""Graders of the shoe-pairs assignment (CSC421 A2, ASSIGNMENTS.md section A): Q1, Q3a-b, Q4, Q5.

Expected values come from the independent implementations below, never from ``reference/``.
Models are fed NCHW ``[B, 3, 448, 224]`` batches (left shoe on top), the convention of DESIGN.md;
a model that only works on the handout's ``transpose(1, 3)`` layout ``[B, 3, 224, 448]`` is graded
in that layout, and the message says so.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from torchgrade.checks import shapes, training
from torchgrade.errors import CheckFailure
from torchgrade.probes import params
from torchgrade.probes import training as training_probes

ASSIGNMENT = "shoes"
MANUAL = {
    "Q1a": (1, "why track men's and women's accuracy separately"),
    "Q1e": (1, "why different pairs come from the same student"),
    "Q1f": (1, "why a balanced data set"),
    "Q2c": (3, "2-D kernels on one-hot text; what to use instead"),
    "Q3c": (2, "why two-class cross-entropy instead of BCE"),
    "Q3e": (2, "why one architecture performs better"),
    "Q3g": (2, "why track positive and negative accuracy separately"),
    "Q4c": (4, "hyperparameter tuning and training curves"),
    "Q4d": (2, "training curves of the best models"),
    "Q5b": (1, "a men's pair shown with its prediction"),
    "Q5c": (1, "a women's pair shown with its prediction"),
    "Q7": (2, "work allocation"),
}

SIZE = 224
NCHW, TRANSPOSED = "NCHW", "transposed"


# -- independent implementations -------------------------------------------------------------------
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


def predict(model, pairs: np.ndarray, layout: str, who: str, batch_size: int = 16) -> np.ndarray:
    """Class predictions (argmax of the two outputs) of a submitted model, in batches."""
    predictions = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        out = model(model_input(batch, layout))
        if isinstance(out, tuple):  # a model returning (logits, extra): grade the leading element
            out = out[0]
        logits = shapes.check_shape(out, (len(batch), 2), f"{who} on a batch of {len(batch)}")
        predictions.append(np.argmax(logits, axis=1))
    return np.concatenate(predictions)


def accuracy(model, data: np.ndarray, layout: str, who: str) -> tuple[float, float]:
    """(accuracy on same pairs, accuracy on different pairs), computed by the grader."""
    pos = predict(model, same_pairs(data), layout, who)
    neg = predict(model, different_pairs(data), layout, who)
    return float(np.mean(pos == 1)), float(np.mean(neg == 0))


def find_layout(model, who: str) -> str:
    """NCHW if the model accepts ``[1, 3, 448, 224]``, else the handout's transposed layout."""
    try:
        model(torch.zeros(1, 3, 2 * SIZE, SIZE))
        return NCHW
    except CheckFailure as nchw_failure:
        try:
            model(torch.zeros(1, 3, SIZE, 2 * SIZE))
        except CheckFailure:
            raise nchw_failure from None
        return TRANSPOSED


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


def random_shoes(n_students: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (n_students, 3, 2, SIZE, SIZE, 3)).astype(np.float32)


# -- Q1: data ----------------------------------------------------------------------------------
@pytest.mark.points(4, question="Q1b")
def test_load_shoes(sub, parts, shoe_folder, shoe_pixels):
    loaded = {}
    for name in ("train", "test_w", "test_m"):
        try:
            loaded[name] = sub.load_shoes(str(shoe_folder / name))
        except CheckFailure as exc:
            loaded[name] = exc

    def get(name):  # noqa: E306 - a failure to load fails every part with the same message
        if isinstance(loaded[name], Exception):
            raise loaded[name]
        return shapes.as_array(loaded[name], f"load_shoes('{name}/')", shape_hint="[S, 3, 2, 224, 224, 3]")

    with parts.part(1, "layout [S, 3, 2, 224, 224, C] for train/, test_w/, test_m/"):
        for name, pixels in shoe_pixels.items():
            got = get(name).shape
            if got[:-1] != pixels.shape[:-1]:
                raise CheckFailure(
                    f"load_shoes('{name}/') returned shape {shapes.shape_text(got)}; expected "
                    f"{shapes.shape_text(pixels.shape)} ({pixels.shape[0]} students, 3 pairs, "
                    f"left/right, 224 x 224 pixels, colour)."
                )
    with parts.part(1, "alpha channel dropped (3 colour channels)"):
        for name in shoe_pixels:
            got = get(name).shape
            if got[-1:] != (3,):
                raise CheckFailure(
                    f"load_shoes('{name}/') returned shape {shapes.shape_text(got)}: the last axis "
                    f"should hold 3 colour channels. Hint: some photos are RGBA PNGs; drop the "
                    f"alpha channel with img[:, :, :3]."
                )
    with parts.part(1, "values scaled to pixel / 255 - 0.5"):
        array, pixels = get("train"), shoe_pixels["train"]
        got = np.sort(array[..., :3].ravel()) if array.ndim == 6 else np.sort(array.ravel())
        want = np.sort(pixels.ravel().astype(np.float64) / 255.0 - 0.5)
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
            low, high = (float(got.min()), float(got.max())) if got.size else (math.nan, math.nan)
            raise CheckFailure(
                f"load_shoes('train/') values span [{low:.4f}, {high:.4f}] and do not match "
                f"pixel / 255 - 0.5 (expected span [{want.min():.4f}, {want.max():.4f}])."
            )
    with parts.part(1, "students, pairs and left/right in sorted file-name order"):
        array, pixels = get("train"), shoe_pixels["train"].astype(np.float64)
        if array.shape[:5] != pixels.shape[:5] or array.shape[-1] < 3:
            raise CheckFailure(
                f"load_shoes('train/') returned shape {shapes.shape_text(array.shape)}; "
                f"cannot compare images with the files."
            )
        got = array[..., :3]
        # Fit one affine map (got ~ a * pixels + b) so that a scaling bug does not also fail this part.
        a, b = np.polyfit(pixels.ravel()[::97], got.ravel()[::97], 1)
        error = np.abs(got - (a * pixels + b)).reshape(pixels.shape[0], 3, 2, -1).max(axis=-1)
        bad = np.argwhere(error > 1e-3)
        if len(bad):
            s, p, side = (int(v) for v in bad[0])
            raise CheckFailure(
                f"load_shoes('train/')[{s}, {p}, {side}] is not the photo "
                f"{'left' if side == 0 else 'right'} shoe of pair {p} of student {s} "
                f"({len(bad)} of {error.size} photos misplaced). Hint: sort the file names."
            )


@pytest.mark.points(2, question="Q1c")
def test_generate_same_pair(sub, parts):
    data = random_shoes(4, seed=11)
    out = sub.generate_same_pair(data)
    who = "generate_same_pair(data[4, 3, 2, 224, 224, 3])"
    with parts.part(1, "shape [S*3, 448, 224, 3]"):
        shapes.check_shape(out, (12, 2 * SIZE, SIZE, 3), who)
    with parts.part(1, "each pair once, left shoe on top of its right shoe"):
        array = shapes.check_shape(out, (12, 2 * SIZE, SIZE, 3), who)
        rows = split_rows(array, image_index(data))
        found = set()
        for i, (top, bottom) in enumerate(rows):
            if top is None or bottom is None or top[2] != 0 or bottom[2] != 1 or top[:2] != bottom[:2]:
                raise CheckFailure(
                    f"{who}[{i}] is not a left shoe on top of the right shoe of the same pair "
                    f"(top: {_photo(top)}, bottom: {_photo(bottom)})."
                )
            found.add(top[:2])
        if len(found) != 12:
            raise CheckFailure(f"{who} contains {len(found)} distinct pairs; each of the 12 should appear once.")


@pytest.mark.points(2, question="Q1d")
def test_generate_different_pair(sub, parts):
    data = random_shoes(6, seed=12)
    out = sub.generate_different_pair(data)
    who = "generate_different_pair(data[6, 3, 2, 224, 224, 3])"
    with parts.part(1, "shape [S*3, 448, 224, 3], as many as the same pairs"):
        shapes.check_shape(out, (18, 2 * SIZE, SIZE, 3), who)
    with parts.part(1, "left and right shoes of different pairs of the same student, 3 per student"):
        array = shapes.check_shape(out, (18, 2 * SIZE, SIZE, 3), who)
        per_student: dict[int, set] = {}
        for i, (top, bottom) in enumerate(split_rows(array, image_index(data))):
            if top is None or bottom is None or top[2] != 0 or bottom[2] != 1:
                raise CheckFailure(
                    f"{who}[{i}] is not a left shoe on top of a right shoe from the data "
                    f"(top: {_photo(top)}, bottom: {_photo(bottom)})."
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
        if sorted(counts) != list(range(6)) or set(counts.values()) != {3}:
            raise CheckFailure(
                f"{who}: distinct mismatched pairs per student are {counts}; expected 3 for each of the 6 students."
            )


def _photo(found) -> str:
    if found is None:
        return "not a photo of the data"
    student, pair, side = found
    return f"student {student}, pair {pair}, {'left' if side == 0 else 'right'}"


# -- Q3: the models ------------------------------------------------------------------------------
def conv_and_fc_shapes(sub, model) -> tuple[list[list[int]], list[list[int]]]:
    shapes_ = sub.apply(params.parameter_shapes, model)
    weights = [shape for name, shape in shapes_ if name.endswith("weight")]
    return [s for s in weights if len(s) == 4], [s for s in weights if len(s) == 2]


def check_layers(sub, model, who: str, n: int, k: int, in_channels: int, fc_in: int) -> None:
    convs, fcs = conv_and_fc_shapes(sub, model)
    want_convs = [[n, in_channels, k, k], [2 * n, n, k, k], [4 * n, 2 * n, k, k], [8 * n, 4 * n, k, k]]
    if sorted(convs) != sorted(want_convs):
        raise CheckFailure(
            f"{who} has convolution weights {convs}; expected {want_convs} "
            f"({in_channels} -> n -> 2n -> 4n -> 8n channels, {k}x{k} kernels)."
        )
    want_fcs = [[100, fc_in], [2, 100]]
    if sorted(fcs) != sorted(want_fcs):
        raise CheckFailure(
            f"{who} has fully connected weights {fcs}; expected {want_fcs} "
            f"(8n x {fc_in // (8 * n)} features -> 100 -> 2)."
        )


@pytest.mark.points(3, question="Q3a")
def test_cnn(sub, parts):
    with parts.part(1, "output [B, 2] for input [B, 3, 448, 224]"):
        for n in (2, 4):
            model = sub.CNN(n=n)
            for batch in (1, 3):
                out = model(torch.zeros(batch, 3, 2 * SIZE, SIZE))
                shapes.check_shape(out, (batch, 2), f"CNN(n={n})(x[{batch}, 3, 448, 224])")
    for k in (3, 5):
        with parts.part(1, f"four convolutions n -> 8n and FC 8n*28*14 -> 100 -> 2, kernel_size={k}"):
            model = sub.CNN(n=4, kernel_size=k)
            check_layers(sub, model, f"CNN(n=4, kernel_size={k})", 4, k, 3, 32 * 28 * 14)


@pytest.mark.points(3, question="Q3b")
def test_cnn_channel(sub, parts):
    with parts.part(1, "output [B, 2] for input [B, 3, 448, 224]"):
        for n in (2, 4):
            model = sub.CNNChannel(n=n)
            layout = find_layout(model, f"CNNChannel(n={n})")
            for batch in (1, 3):
                x = model_input(np.zeros((batch, 2 * SIZE, SIZE, 3), np.float32), layout)
                shapes.check_shape(model(x), (batch, 2), f"CNNChannel(n={n})(x{list(x.shape)})")
    with parts.part(1, "left and right shoes stacked on channels: the first convolution sees [B, 6, 224, 224]"):
        model = sub.CNNChannel(n=4)
        layout = find_layout(model, "CNNChannel(n=4)")
        pairs = np.random.default_rng(5).uniform(-0.5, 0.5, (2, 2 * SIZE, SIZE, 3)).astype(np.float32)
        seen = sub.apply(training_probes.first_conv_input, model, model_input(pairs, layout))
        who = "the input of CNNChannel(n=4)'s first convolution"
        array = shapes.check_shape(seen, (2, 6, SIZE, SIZE), who)
        left = np.transpose(pairs[:, :SIZE], (0, 3, 1, 2))
        right = np.transpose(pairs[:, SIZE:], (0, 3, 1, 2))
        if layout == TRANSPOSED:
            left, right = np.swapaxes(left, 2, 3), np.swapaxes(right, 2, 3)
        stacked = [np.concatenate([left, right], 1), np.concatenate([right, left], 1)]
        if not any(np.allclose(array, s, atol=1e-6) for s in stacked):
            raise CheckFailure(
                f"{who} is not the left shoe's 3 channels stacked with the right shoe's 3 channels. "
                f"Hint: slice the top and bottom 224 rows and torch.cat them on dim 1."
            )
    with parts.part(1, "six input channels, n -> 8n convolutions, FC 8n*14*14 -> 100 -> 2"):
        for k in (3, 5):
            check_layers(
                sub, sub.CNNChannel(n=4, kernel_size=k), f"CNNChannel(n=4, kernel_size={k})", 4, k, 6, 32 * 14 * 14
            )


# -- Q4a: the training loop, observed through a recording model -------------------------------------
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
    code = round((value + 0.45) * (n_codes - 1) / 0.9)
    if not 0 <= code < n_codes or abs(code_value(code, n_codes) - value) > 1e-3:
        return None
    return code // 6, code % 6 // 2, code % 2


@pytest.fixture(scope="module")
def training_probe(submission):
    """Run the student's train_model on a RecordingModel and coded photos; return what it saw."""
    n_codes = 6 * (PROBE_STUDENTS + 1)
    train, valid = coded_shoes(PROBE_STUDENTS, 0, n_codes), coded_shoes(1, 6 * PROBE_STUDENTS, n_codes)
    submission.seed(421)
    submission.set_time_limit(120)
    try:
        model = submission.apply(training_probes.RecordingModel)
        # a folder the submission may write to, also in a sandbox
        checkpoints = submission.apply(training_probes.scratch_folder, "torchgrade-checkpoints-")
        before = model.parameter_values()
        try:
            returned = submission.train_model(
                model,
                train,
                valid,
                batch_size=PROBE_BATCH,
                learning_rate=0.01,
                weight_decay=0.0,
                max_iters=1000,
                max_epoch=PROBE_EPOCHS,
                checkpoint_path=os.path.join(checkpoints, "epoch-{}.pt"),
            )
        except CheckFailure as exc:
            return {"failure": exc}
        return {
            "calls": model.calls,
            "before": before,
            "after": model.parameter_values(),
            "returned": returned,
            "checkpoints": submission.apply(training_probes.read_checkpoints, os.path.join(checkpoints, "*")),
            "n_codes": n_codes,
        }
    finally:
        submission.set_time_limit(None)


def training_steps(probe) -> list[dict]:
    if "failure" in probe:
        raise probe["failure"]
    steps = [c for c in probe["calls"] if c.get("label_sign") is not None]
    if not steps:
        raise CheckFailure(
            "train_model(...) never backpropagated through the model's output: no training step "
            "was observed. Hint: compute the loss on model(x) and call loss.backward()."
        )
    return steps


def step_samples(step: dict, n_codes: int) -> list[tuple]:
    """Per sample of a step: (top photo, bottom photo, trained label)."""
    labels = [1 if sign < 0 else 0 for sign in step["label_sign"]]
    halves = step.get("halves") or [[math.nan, math.nan]] * len(labels)
    return [(decode(a, n_codes), decode(b, n_codes), label) for (a, b), label in zip(halves, labels, strict=False)]


@pytest.mark.points(8, question="Q4a")
@pytest.mark.timeout(180)
def test_train_model(training_probe, parts, evidence):
    who = (
        f"train_model(model, train_data[{PROBE_STUDENTS} students], valid_data, batch_size={PROBE_BATCH}, "
        f"max_epoch={PROBE_EPOCHS})"
    )
    n_codes = training_probe.get("n_codes", 0)
    with parts.part(2, "each step: batch_size/2 true pairs labelled 1 and batch_size/2 mismatches labelled 0"):
        for number, step in enumerate(training_steps(training_probe), 1):
            samples = step_samples(step, n_codes)
            labels = [label for _, _, label in samples]
            if len(samples) != PROBE_BATCH or sum(labels) != PROBE_BATCH // 2:
                raise CheckFailure(
                    f"{who}: step {number} trained on {len(samples)} inputs with labels {labels}; "
                    f"expected {PROBE_BATCH // 2} labelled 1 and {PROBE_BATCH // 2} labelled 0."
                )
            for top, bottom, label in samples:
                true_pair = (
                    top is not None and bottom is not None and top[:2] == bottom[:2] and (top[2], bottom[2]) == (0, 1)
                )
                if label == 1 and not true_pair:
                    raise CheckFailure(
                        f"{who}: step {number} labelled 1 an input that is not a true pair "
                        f"(top: {_photo(top)}, bottom: {_photo(bottom)}). Hint: same pairs get "
                        f"label 1, different pairs label 0."
                    )
    with parts.part(1, "inputs NCHW [B, 3, 448, 224], left shoe on top"):
        for number, step in enumerate(training_steps(training_probe), 1):
            shape = step["shape"]
            if len(shape) != 4 or shape[1] != 3 or sorted(shape[2:]) != [SIZE, 2 * SIZE]:
                raise CheckFailure(
                    f"{who}: step {number} fed the model a {step['dtype']} tensor of shape {shape}; "
                    f"expected [{PROBE_BATCH}, 3, 448, 224]. Hint: permute NHWC images to NCHW."
                )
            for top, bottom, _ in step_samples(step, n_codes):
                if top is None or bottom is None or top[2] != 0:
                    raise CheckFailure(
                        f"{who}: step {number} fed an input whose first half is not a left shoe "
                        f"(first half: {_photo(top)}, second half: {_photo(bottom)})."
                    )
    with parts.part(2, "every epoch visits each pair once, in a new random order"):
        steps = training_steps(training_probe)
        epochs = [steps[i : i + STEPS_PER_EPOCH] for i in range(0, len(steps) - STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH)]
        if len(epochs) < 2:
            raise CheckFailure(
                f"{who} made {len(steps)} training steps; expected {STEPS_PER_EPOCH} per epoch for "
                f"{PROBE_EPOCHS} epochs."
            )
        orders = []
        for number, epoch in enumerate(epochs, 1):
            positives = [(t, b) for step in epoch for t, b, label in step_samples(step, n_codes) if label == 1]
            negatives = [(t, b) for step in epoch for t, b, label in step_samples(step, n_codes) if label == 0]
            if len(set(positives)) != PROBE_STUDENTS * 3 or len(set(negatives)) != PROBE_STUDENTS * 3:
                raise CheckFailure(
                    f"{who}: epoch {number} ({STEPS_PER_EPOCH} steps) showed {len(set(positives))} "
                    f"distinct positives and {len(set(negatives))} distinct negatives; expected each "
                    f"of the {PROBE_STUDENTS * 3} of each once per epoch."
                )
            orders.append(positives)
        if all(order == orders[0] for order in orders):
            raise CheckFailure(
                f"{who} showed the positives in the same order in every epoch; shuffle them at the start of each epoch."
            )
    with parts.part(1, "trains in train mode and updates the parameters"):
        steps = training_steps(training_probe)
        eval_steps = [i for i, step in enumerate(steps, 1) if not step["training"]]
        if eval_steps:
            raise CheckFailure(
                f"{who}: {len(eval_steps)} of {len(steps)} training steps ran with the model in eval "
                f"mode (first: step {eval_steps[0]}). Hint: call model.train() before training steps, "
                f"again after evaluating."
            )
        if training_probe["before"] == training_probe["after"]:
            raise CheckFailure(f"{who} left the model's parameters unchanged; call optimizer.step().")
    with parts.part(1, "saves a checkpoint after every epoch"):
        training_steps(training_probe)
        saved = training_probe["checkpoints"]
        readable = [c for c in saved if c["keys"] == ["scale", "shift"]]
        if len(readable) < PROBE_EPOCHS:
            problems = "; ".join(f"{c['file']}: {c['error'] or c['keys']}" for c in saved if c not in readable)
            raise CheckFailure(
                f"{who} with checkpoint_path='.../epoch-{{}}.pt' left {len(readable)} loadable "
                f"state_dict checkpoints; expected one per epoch ({PROBE_EPOCHS})"
                + (f" ({problems})" if problems else "")
                + "."
            )
        if len({tuple(c["values"]) for c in readable}) < 2:
            raise CheckFailure(f"{who} saved {len(readable)} identical checkpoints; save the weights of each epoch.")
    with parts.part(1, "returns the training curves"):
        training_steps(training_probe)
        curves = _curves(training_probe["returned"])
        if not curves:
            raise CheckFailure(
                f"{who} returned {shapes.describe_value(training_probe['returned'])}; expected the "
                f"training curves (lists of numbers, e.g. loss per iteration and accuracies per epoch)."
            )
        evidence["curves"] = curves


# -- Q4b: memorising five students ------------------------------------------------------------------
# What the check demands, decided by measurement (benchmarks/calibrate_memorisation.py, reference,
# 2 cores). Negatives pair L_p with R_(p+1), so every photo is in one positive and one negative and
# neither half alone predicts the label: the model must compare the two shoes.
# * CNNChannel (the shoes meet in conv1): at lr 3e-3, batch 10, the reference over 40 runs (20 seeds
#   x 2 data seeds, one of them this grader's) is at min 1.000, mean 1.000 after 150 iterations; it
#   first reaches 90% after 42-126 iterations (only 14/20 seeds by 99). At lr 1e-3 and 150 iterations,
#   19 of 20 (min 0.867). The handout's "~50 iterations" is too few here (1 of 20 seeds).
#   Those runs used 2 threads. On 1 thread the numbers take another path: 20 seeds (each with its own
#   photos) first reach 90% after 45-108 iterations and are all at 1.000 after 150, but this grader's
#   seed on its own photos first reaches 90% after 174 and stays at 1.000 from 210 (with 2 threads it
#   was at 1.000 by 150). Training is pinned to 1 thread (MEMORISE_THREADS, so that a batch job and a
#   student's laptop give one verdict) with 250 iterations: 40 iterations of margin for this seed.
#   Buggy samples at this budget reach at most: positives 0.80 / negatives 0.33 (a "different" pair
#   that can be a true pair), 1.00 / 0.00 (negatives across students; shoes stacked on width),
#   0.00 / 0.00 (labels swapped).
# * CNN (the shoes meet only in fc1) stays at loss ln 2 and 50% for the reference: 0 of 13 runs reached
#   90% within 200 iterations (n = 2 and 4, lr 1e-4 to 3e-3, batch 10 and 30; never above 0.567), as
#   ASSIGNMENTS.md also measured over 1000 iterations and as the handout warns. fc1's inputs are nearly
#   constant across samples at initialisation and its units die within 25 Adam steps (56 of 100 alive
#   at init, 5 after). A check on it would fail correct work, so the memorisation points go to
#   CNNChannel alone; the training loop itself is graded in Q4a, whatever the model.
MEMORISE_STUDENTS = 5
MEMORISE_SEED = 7
MEMORISE_MODEL = "CNNChannel"
#: Training runs on this many torch threads wherever it is graded (see training_probes.set_threads).
MEMORISE_THREADS = 1
#: The budget of the memorisation check: the student's train_model with these arguments.
MEMORISE_BUDGET = dict(n=4, batch_size=10, learning_rate=3e-3, max_iters=250)
MEMORISE_THRESHOLD = 0.9
CALIBRATION_CNN_CHANNEL = (
    "on one thread the reference is at 100% after 150 iterations for 20 of 20 seeds and "
    "after 210 for this grader's seed; CNN is not required to memorise, see the handout's "
    "warning"
)


def training_layout(probe) -> str:
    """The layout the student's train_model feeds its model (NCHW unless it transposes)."""
    for call in probe.get("calls", []):
        if call.get("label_sign") is not None and len(call["shape"]) == 4 and call["shape"][3] == 2 * SIZE:
            return TRANSPOSED
    return NCHW


@pytest.fixture(scope="module")
def memorised(submission, grade_cache, shoe_arrays, training_probe) -> dict:
    """Train CNNChannel with the student's train_model on five students, once per submission; the
    grader measures the accuracies itself, on the training students and on both test sets."""
    data = shoe_arrays["train"][:MEMORISE_STUDENTS]
    layout = training_layout(training_probe)
    budget = MEMORISE_BUDGET

    def run() -> dict:
        submission.seed(MEMORISE_SEED)
        submission.set_time_limit(150)
        threads = submission.apply(training_probes.set_threads, MEMORISE_THREADS)
        try:
            model = submission.lookup(MEMORISE_MODEL)(n=budget["n"])
            returned = submission.train_model(
                model,
                data,
                data,
                batch_size=budget["batch_size"],
                learning_rate=budget["learning_rate"],
                max_iters=budget["max_iters"],
                max_epoch=1000,
            )
            model.eval()
            who = f"{MEMORISE_MODEL}(n={budget['n']}) after train_model"
            return {
                "train": accuracy(model, data, layout, who),
                "test_w": accuracy(model, shoe_arrays["test_w"], layout, who),
                "test_m": accuracy(model, shoe_arrays["test_m"], layout, who),
                "curves": _curves(returned),
                "layout": layout,
            }
        finally:
            submission.set_time_limit(None)
            try:
                submission.apply(training_probes.set_threads, threads)
            except CheckFailure:
                pass  # the worker died or timed out: its successor starts with the default count

    settings = {**budget, "layout": layout, "seed": MEMORISE_SEED, "threads": MEMORISE_THREADS}
    return grade_cache.compute(f"memorise-{MEMORISE_MODEL}", ("shoes",), settings, run, ignore=("load_shoes",))


@pytest.mark.points(2, question="Q4b")
@pytest.mark.timeout(400)
def test_memorise_five_students(memorised, evidence):
    evidence[MEMORISE_MODEL] = memorised
    pos, neg = memorised["train"]
    budget = MEMORISE_BUDGET
    training.check_at_least(
        (pos + neg) / 2,
        MEMORISE_THRESHOLD,
        f"train_model({MEMORISE_MODEL}(n={budget['n']}), {MEMORISE_STUDENTS} students, batch_size="
        f"{budget['batch_size']}, learning_rate={budget['learning_rate']:g}, max_iters={budget['max_iters']})",
        f"{MEMORISE_MODEL}'s training accuracy on {MEMORISE_STUDENTS} students (positives {pos:.2f}, negatives "
        f"{neg:.2f})",
        CALIBRATION_CNN_CHANNEL,
    )


@pytest.mark.points(3, question="Q5a")
def test_get_accuracy(sub, parts, shoe_arrays):
    """Accuracy reported separately for positives and negatives, on each test set, in eval mode.

    Probed with models that always answer 1 (or 0): their accuracies are known exactly, (1, 0) and
    (0, 1), whatever pairs the submission builds.
    """
    modes = []
    for folder in ("test_w", "test_m"):
        with parts.part(1, f"{folder}: (accuracy on same pairs, accuracy on different pairs)"):
            data = shoe_arrays[folder]
            for label, expected in ((1, (1.0, 0.0)), (0, (0.0, 1.0))):
                model = sub.apply(training_probes.ConstantModel, label)
                got = sub.get_accuracy(model, data)
                modes += model.modes
                who = f"get_accuracy(a model that always predicts {label}, {folder})"
                if isinstance(got, (list, tuple)) and len(got) == 2:
                    got = [float(v) for v in got]  # numpy scalars and 0-d tensors alike
                shapes.check_close(got, expected, who, atol=1e-9)
    with parts.part(1, "evaluates the model in eval mode"):
        if not modes:
            raise CheckFailure(
                "get_accuracy(model, test data) could not be checked: it did not return "
                "(pos_acc, neg_acc) for the probe models."
            )
        if any(modes):
            raise CheckFailure(
                f"get_accuracy(model, test data) ran {sum(modes)} of {len(modes)} forward passes in "
                f"training mode; call model.eval() first (dropout and batch norm behave differently)."
            )


def _curves(returned) -> dict[str, list[float]]:
    """Lists of finite numbers in a returned dict, tuple or list, by key or position."""
    items = (
        returned.items()
        if isinstance(returned, dict)
        else enumerate(returned or ())
        if isinstance(returned, (list, tuple))
        else ()
    )
    curves = {}
    for key, value in items:
        if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)):
            numbers = (
                np.asarray(value, dtype=object).ravel().tolist()
                if not isinstance(value, torch.Tensor)
                else value.flatten().tolist()
            )
            if numbers and all(isinstance(v, (int, float, np.number)) and math.isfinite(v) for v in numbers):
                curves[str(key)] = [float(v) for v in numbers]
    return curves
