"""Graders of the shoe-pairs assignment: Q1 (the data), Q3a-b (the two CNNs), Q4a-b (training) and
Q5a (test accuracy). The questions answered in ``answers.py`` (Q2, Q3d, Q3f, Q6) are graded in
``test_answers.py``; the written answers and plots are graded by hand (``MANUAL``).

Expected values come from the grader's own implementations in ``_shoes.py``. Models are fed NCHW
``[B, 3, 448, 224]`` batches (left shoe on top); a model that only works on the handout's
``transpose(1, 3)`` layout ``[B, 3, 224, 448]`` is graded in that layout, and the message says so.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _shoes import (
    CALIBRATION_CNN_CHANNEL,
    CHANNEL_PARTS,
    LOOP_INPUTS,
    LOOP_LABELS,
    LOOP_UPDATES,
    MEMORISE_MODEL,
    MEMORISE_STUDENTS,
    MEMORISE_THRESHOLD,
    PROBE_EPOCHS,
    PROBE_STUDENTS,
    SIZE,
    STEPS_PER_EPOCH,
    _step_run,
    build_model,
    builder_label,
    check_different_pair_rows,
    check_layers,
    check_loop_inputs,
    check_loop_labels,
    check_loop_updates,
    check_pair_shape,
    check_same_pair_rows,
    evaluation_counts,
    kernel_builds,
    layers_part,
    loop_label,
    memorise,
    memorise_notes,
    random_shoes,
    rerun_note,
    returned_curves,
    run_training_probe,
    step_samples,
    training_steps,
)

from torchgrade.checks import shapes, training
from torchgrade.errors import CheckFailure, MissingName
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


# -- Q1: the data ----------------------------------------------------------------------------------
@pytest.mark.points(4, question="Q1b")
def test_load_shoes(sub, parts, shoe_folder, shoe_pixels):
    """Loads train/, test_w/ and test_m/ as [students, 3 pairs, left/right, 224, 224, 3] arrays of pixel / 255 - 0.5.

    The photos are ``*.jpg`` files, as the course's; some load with a 4th channel through ``plt.imread``."""
    loaded = {}
    for name in ("train", "test_w", "test_m"):
        try:
            loaded[name] = sub.load_shoes(str(shoe_folder / name))
        except MissingName as exc:
            raise MissingName(
                f"Q1b could not be graded: {exc} This check calls load_shoes(folder) on the course's "
                f"train/, test_w/ and test_m/ folders and tests the [S, 3, 2, 224, 224, 3] layout, the "
                f"dropped alpha channel, the scaling pixel / 255 - 0.5 and the sorted file order. The "
                f"handout's starter code is a notebook cell reading a Colab path: wrap it in a function "
                f"load_shoes(folder) for the autograder, or the TA grades Q1b by hand."
            ) from None
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
                    f"should hold 3 colour channels. Hint: some photos load with a 4th channel "
                    f"(plt.imread returns RGBA for them); drop it with img[:, :, :3]."
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
    """Concatenates the left and right shoe of each pair along the height: [S*3, 448, 224, 3], each pair once."""
    data = random_shoes(4, seed=11)
    out = sub.generate_same_pair(data)
    who = builder_label("generate_same_pair", data)
    with parts.part(1, "shape [S*3, 448, 224, 3]"):
        check_pair_shape(out, data, who)
    with parts.part(1, "each pair once, left shoe on top of its right shoe"):
        check_same_pair_rows(out, data, who)


@pytest.mark.points(2, question="Q1d")
def test_generate_different_pair(sub, parts):
    """Pairs shoes of different pairs of the same student, three per student, as many as the same pairs."""
    data = random_shoes(6, seed=12)
    out = sub.generate_different_pair(data)
    who = builder_label("generate_different_pair", data)
    with parts.part(1, "shape [S*3, 448, 224, 3], as many as the same pairs"):
        check_pair_shape(out, data, who)
    with parts.part(1, "left and right shoes of different pairs of the same student, 3 per student"):
        check_different_pair_rows(out, data, who)


# -- Q3: the models ------------------------------------------------------------------------------
@pytest.mark.points(3, question="Q3a")
def test_cnn(sub, parts):
    """CNN: convolutions n -> 2n -> 4n -> 8n, each downsampled 2x2, FC 100, FC 2; [B, 3, 448, 224] -> [B, 2].

    n and the kernel size (3 or 5) are read from the first convolution; a constructor without them
    (``CNN()``) is graded on the ones it has."""
    with parts.part(1, "output [B, 2] for input [B, 3, 448, 224]"):
        for n in (2, 4):
            built = build_model(sub, "CNN", n=n)
            for batch in (2, 3):  # two images at least: BatchNorm1d cannot take one in train mode
                out = built.model(torch.zeros(batch, 3, 2 * SIZE, SIZE))
                shapes.check_shape(out, (batch, 2), f"{built.label}(x[{batch}, 3, 448, 224])")
            if not built.took_n:
                break
    for k, built in zip((3, 5), kernel_builds(sub, "CNN"), strict=True):
        with parts.part(1, layers_part(built, k)):
            check_layers(sub, built, 3, (28, 14), n=4 if k == 3 or built.took_k else 2, k=k)


@pytest.mark.points(3, question="Q3b")
def test_cnn_channel(sub, parts):
    """CNNChannel: the same layers; left and right shoes concatenated on channels, [B, 6, 224, 224] into conv 1.

    The six channels may come in any order (``torch.cat([left, right], 1)``, right before left, or the
    interleaved ``x.reshape(B, 6, 224, 224)``): the same model up to a permutation of conv 1's inputs."""
    for points, name, check in CHANNEL_PARTS:
        with parts.part(points, name):
            check(sub)


# -- Q4: training -------------------------------------------------------------------------------
@pytest.mark.points(8, question="Q4a")
@pytest.mark.timeout(180)
def test_train_model(training_probe, parts, evidence):
    """train_model: batch_size/2 positives (label 1) and negatives (label 0), shuffled, NCHW, checkpoints,
    accuracies after every epoch.

    Called with the names its signature uses (an epoch count where it takes no iteration count). Each part
    is graded on what the run did: a loop that raises at its checkpoint save loses the checkpoint part only
    (the other parts are graded on a second run without a checkpoint path, or on the steps before the crash).
    The handout asks to plot the training curves, not to return them: returned curves are kept as evidence."""
    who = loop_label(training_probe)
    note = rerun_note(training_probe)
    n_codes = training_probe.get("n_codes", 0)
    if training_probe.get("colab"):
        evidence["google.colab"] = "a stand-in whose drive.mount() does nothing"
    with parts.part(2, LOOP_LABELS):
        check_loop_labels(training_probe)
    with parts.part(1, LOOP_INPUTS):
        check_loop_inputs(training_probe)
    with parts.part(2, "every epoch visits each pair once, in a new random order"):
        steps = training_steps(training_probe)
        epochs = [steps[i : i + STEPS_PER_EPOCH] for i in range(0, len(steps) - STEPS_PER_EPOCH + 1, STEPS_PER_EPOCH)]
        if len(epochs) < 2:
            training_steps(training_probe, needs_all=True)  # a crash cut the run short: say so
            raise CheckFailure(
                f"{who} made {len(steps)} training steps; expected {STEPS_PER_EPOCH} per epoch for "
                f"{PROBE_EPOCHS} epochs{note}."
            )
        orders = []
        for number, epoch in enumerate(epochs, 1):
            positives = [(t, b) for step in epoch for t, b, label in step_samples(step, n_codes) if label == 1]
            negatives = [(t, b) for step in epoch for t, b, label in step_samples(step, n_codes) if label == 0]
            if len(set(positives)) != PROBE_STUDENTS * 3 or len(set(negatives)) != PROBE_STUDENTS * 3:
                raise CheckFailure(
                    f"{who}: epoch {number} ({STEPS_PER_EPOCH} steps) showed {len(set(positives))} "
                    f"distinct positives and {len(set(negatives))} distinct negatives; expected each "
                    f"of the {PROBE_STUDENTS * 3} of each once per epoch{note}."
                )
            orders.append(positives)
        if all(order == orders[0] for order in orders):
            raise CheckFailure(
                f"{who} showed the positives in the same order in every epoch{note}; shuffle them at the start "
                f"of each epoch."
            )
    with parts.part(1, LOOP_UPDATES):
        check_loop_updates(training_probe)
    with parts.part(1, "saves a checkpoint after every epoch"):
        saved = training_probe["checkpoints"]
        readable = [c for c in saved if c["keys"] == ["scale", "shift"]]
        if len(readable) < PROBE_EPOCHS:
            if not training_probe["binding"].has("checkpoint_path"):
                raise CheckFailure(
                    f"{who}: train_model takes no checkpoint path (none of its parameters is named like "
                    f"checkpoint_path or path), so the grader cannot tell where it saves; expected one "
                    f"state_dict per epoch in the folder or pattern it is given."
                )
            problems = "; ".join(f"{c['file']}: {c['error'] or c['keys']}" for c in saved if c not in readable)
            failure = training_probe.get("failure")
            raise CheckFailure(
                f"{who} left {len(readable)} loadable state_dict checkpoints in the scratch folder; expected "
                f"one per epoch ({PROBE_EPOCHS})"
                + (f" ({problems[:300]}{'...' if len(problems) > 300 else ''})" if problems else "")
                + (f"; the run raised: {failure}" if failure is not None else "")
                + "."
            )
        if len({tuple(c["values"]) for c in readable}) < 2:
            raise CheckFailure(f"{who} saved {len(readable)} identical checkpoints; save the weights of each epoch.")
    with parts.part(1, "reports the training and validation accuracy after every epoch"):
        steps = training_steps(training_probe)
        evaluated = evaluation_counts(training_probe, n_codes)
        # A run cut short by a crash is graded on the epochs it completed (at least one).
        crashed = _step_run(training_probe).get("failure") is not None
        need = max(1, min(PROBE_EPOCHS, len(steps) // STEPS_PER_EPOCH)) if crashed else PROBE_EPOCHS
        if evaluated["valid"] < need or evaluated["train"] < need:
            training_steps(training_probe, needs_all=True)  # a crash cut the run short: say so
            raise CheckFailure(
                f"{who} evaluated the model {evaluated['valid']} times on validation pairs and "
                f"{evaluated['train']} times on training pairs outside its {len(steps)} training steps; "
                f"expected the accuracy on both after every epoch ({PROBE_EPOCHS} epochs){note}. Hint: call "
                f"get_accuracy(model, train_data) and get_accuracy(model, valid_data) at the end of each epoch."
            )
        curves = returned_curves(_step_run(training_probe)["returned"])
        if curves:
            evidence["curves"] = curves


@pytest.mark.points(2, question="Q4b")
@pytest.mark.timeout(900)  # a backstop for hangs: 400 iterations are ~55 s of CPU, far more wall time under load
def test_memorise_five_students(memorised, evidence):
    """CNNChannel trained by your train_model memorises a small training set (five students) to 90%+ accuracy.

    One bug, one deduction: a pair builder that failed Q1c/Q1d is replaced by the grader's during the run;
    a train_model that failed Q4a's learning parts (labels, inputs, updates) is replaced by the grader's
    loop, a CNNChannel that failed Q3b by the grader's model. Where both failed, the check cannot grade
    either alone and runs both of yours. A run stalled at chance is run again with the next seed."""
    evidence[MEMORISE_MODEL] = memorised
    pos, neg = memorised["train"]
    notes = memorise_notes(memorised)
    evidence.update(notes)
    training.check_at_least(
        (pos + neg) / 2,
        MEMORISE_THRESHOLD,
        f"train_model({memorised.get('model', MEMORISE_MODEL)}, {MEMORISE_STUDENTS} students)"
        + (f", called as {memorised['call']}" if memorised.get("call") else "")
        + "".join(f" Note: {note}." for note in notes.values()),
        f"{MEMORISE_MODEL}'s training accuracy on {MEMORISE_STUDENTS} students (positives {pos:.2f}, negatives "
        f"{neg:.2f})",
        CALIBRATION_CNN_CHANNEL,
    )


# -- Q5: test accuracy ---------------------------------------------------------------------------
@pytest.mark.points(3, question="Q5a")
def test_get_accuracy(sub, parts, shoe_arrays):
    """get_accuracy reports the accuracy on same pairs and on different pairs separately, in eval mode."""
    # Probed with models that always answer 1 (or 0): their accuracies are known exactly, (1, 0) and
    # (0, 1), whatever pairs the submission builds.
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


# -- what the training checks run, once per submission ----------------------------------------------
@pytest.fixture(scope="module")
def training_probe(submission) -> dict:
    """The student's train_model run on a recording model and coded photos (Q4a): what it saw."""
    return run_training_probe(submission)


@pytest.fixture(scope="module")
def memorised(submission, grade_cache, shoe_arrays, training_probe) -> dict:
    """CNNChannel trained by the student's train_model on five students (Q4b), and its accuracies as
    the grader measures them; with the grader's loop or model where the student's failed its own check
    (Q4a's learning parts, judged on ``training_probe``; Q3b)."""
    memorised = memorise(submission, grade_cache, shoe_arrays, training_probe)
    for key, note in memorise_notes(memorised).items():
        submission.notes[f"Q4b {key}"] = note  # also where the check passes: the report says what was lent
    return memorised
