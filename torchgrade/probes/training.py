"""Probes for training code: what runs next to a student's training loop or model.

The probes run where the submission runs (through ``Submission.apply``) because they hand objects
to student code or read what it wrote:

* :class:`RecordingModel` is a tiny trainable model that a grader passes to a student's training
  loop. It records every forward call (input shape, train/eval mode, a per-sample summary of the
  input) and, through a gradient hook on its output, the label each sample was trained towards.
  For cross-entropy on two logits, ``dL/dz1 - dL/dz0 = (p1 - p0) - (t1 - t0)``, which is negative
  exactly when the target is class 1, so labels are recovered without seeing the loss.
* :func:`read_checkpoints` loads the files a training loop saved (``weights_only``: no pickle code).
* :func:`first_conv_input` returns what a model's first convolution receives.

Thresholds of training checks are decided on the grader side (:mod:`torchgrade.checks.training`).
This module imports only torch, numpy and the standard library.
"""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class RecordingModel(nn.Module):
    """A two-logit model that records how a training loop uses it.

    The logits are an affine function of the input's mean, so any input shape is accepted
    (a loop that forgets to permute NHWC to NCHW still runs and gets a precise message).

    Attributes:
        calls: one dict per forward call: ``shape``, ``training``, ``grad`` (autograd enabled),
            ``halves`` (per sample: mean of the first and second half along the longest spatial
            axis, and that axis), and after backward ``label_sign`` (per sample ``dL/dz1 - dL/dz0``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([0.5, -0.5]))
        self.shift = nn.Parameter(torch.zeros(2))
        self.calls: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x)
        record: dict[str, Any] = {
            "shape": list(x.shape),
            "training": self.training,
            "grad": torch.is_grad_enabled(),
            "dtype": str(x.dtype).replace("torch.", ""),
        }
        if x.dim() == 4:
            axis = 2 if x.shape[2] >= x.shape[3] else 3
            half = x.shape[axis] // 2
            first, second = x.narrow(axis, 0, half), x.narrow(axis, half, x.shape[axis] - half)
            record["axis"] = axis
            record["halves"] = torch.stack(
                [first.float().mean(dim=(1, 2, 3)), second.float().mean(dim=(1, 2, 3))], dim=1
            ).tolist()
        self.calls.append(record)
        mean = x.float().reshape(x.shape[0], -1).mean(dim=1) if x.dim() > 1 else x.float()
        out = mean[:, None] * self.scale + self.shift
        if out.requires_grad:
            out.register_hook(
                lambda grad, record=record: record.__setitem__("label_sign", (grad[:, 1] - grad[:, 0]).tolist())
            )
        return out

    def parameter_values(self) -> list[float]:
        return self.scale.tolist() + self.shift.tolist()


class ContiguousInputs(nn.Module):
    """A submitted model whose inputs reach it in the standard (contiguous) memory layout.

    torch 2.13 keeps the channels_last strides of a permuted NHWC batch through convolutions, so a model
    that flattens with ``x.view(...)`` fails on batches its own training loop permutes, where the torch
    versions students used returned contiguous tensors. Wrapping changes no parameter and no value: the
    wrapper's parameters are the model's own, trained in place.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.contiguous()
        return self.model(x, *args, **kwargs)


class ConstantModel(nn.Module):
    """Predicts one class for every input, and records the train/eval mode of every call.

    With it, an accuracy function's result is known exactly whatever pairs it builds: an
    always-1 model is right on every positive and wrong on every negative.
    """

    def __init__(self, label: int) -> None:
        super().__init__()
        self.label = int(label)
        self.bias = nn.Parameter(torch.zeros(()))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        logits = torch.full((len(x), 2), -5.0)
        logits[:, self.label] = 5.0
        return logits + self.bias


def relu_mlp(sizes: list[int], seed: int) -> nn.Module:
    """The grader's plain multi-layer perceptron: ``Linear(sizes[0], sizes[1])``, ReLU, ..., ReLU,
    ``Linear(sizes[-2], sizes[-1])`` (logits: no activation after the last layer), initialised from
    ``seed`` without disturbing the submission's random stream.

    A check that grades a student's training loop on the student's own MLP lends this one instead when
    that MLP failed its own check, so that one bug costs one deduction (``torchgrade new``'s scaffold,
    graders/_classifier.py).
    """
    if len(sizes) < 2:
        raise ValueError(f"relu_mlp needs an input and an output size, got {sizes}")
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.ReLU()] if i else []
        layers.append(nn.Linear(int(n_in), int(n_out)))
    torch.random.set_rng_state(state)
    return nn.Sequential(*layers)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, then restore the count (also a decorator: ``@one_thread()``).

    The graders' training runs are small (molecule batches, a 644-node GAT): a second thread saves
    little, and where the other core is busy (a second grading job, a parallel batch) two spinning
    OpenMP threads made a 10 s molecule run take over 90 s here, and a GAT run 50 s -> 160 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def set_threads(threads: int) -> int:
    """Set torch's intra-op thread count where the submission runs; return the previous count.

    A training check's verdict must not depend on where it runs: the same seeded run takes a
    different numerical path with 1 thread than with 2 (a batch grades with 1 per job), enough to
    move a marginal run across its threshold. Training checks pin the count they were calibrated at.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return previous


def scratch_folder(prefix: str) -> str:
    """A new empty folder the submission may write to, next to it: under the worker's own TMPDIR
    (inside its scratch copy) in process isolation, where the rest of the file system is read-only."""
    return tempfile.mkdtemp(prefix=prefix)


#: The base name of the checkpoint path a training probe passes: a format pattern (``.format(epoch)``) and,
#: as a folder of that very name exists, a folder prefix too (``f"{path}/epoch_{e}.pk"``).
CHECKPOINT_NAME = "epoch-{}"


def checkpoint_target(prefix: str) -> str:
    """A checkpoint path for a student's training loop, in a new scratch folder (see :func:`scratch_folder`):
    ``<scratch>/epoch-{}``, which works as a pattern (``path.format(epoch)``, a file in the scratch folder),
    as a prefix (``path + str(epoch)``) and as a folder (``os.path.join(path, f"epoch_{e}.pk")``): a folder
    of that literal name is created. Read what was saved with :func:`read_checkpoints_under` on its parent."""
    folder = tempfile.mkdtemp(prefix=prefix)
    target = os.path.join(folder, CHECKPOINT_NAME)
    os.mkdir(target)
    return target


def read_checkpoints_under(folder: str) -> list[dict[str, Any]]:
    """:func:`read_checkpoints` of every file under ``folder``, at any depth (base names relative to it)."""
    paths = sorted(
        os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if not name.startswith(".")
    )
    return [dict(entry, file=os.path.relpath(path, folder)) for path, entry in zip(paths, _read(paths), strict=True)]


def read_checkpoints(pattern: str) -> list[dict[str, Any]]:
    """Load every file matching a glob ``pattern`` with ``torch.load(weights_only=True)``.

    Returns:
        Per file, sorted by name: ``file`` (base name), ``keys`` (state-dict keys, or None),
        ``values`` (the flattened first tensor, to tell checkpoints apart), ``error`` (or None).
    """
    return _read(sorted(glob.glob(pattern)))


def _read(paths: list[str]) -> list[dict[str, Any]]:
    found = []
    for path in paths:
        entry: dict[str, Any] = {"file": os.path.basename(path), "keys": None, "values": None, "error": None}
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]  # some loops save {"epoch": ..., "state_dict": ...}
            if isinstance(state, dict):
                entry["keys"] = sorted(str(k) for k in state)
                tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
                entry["values"] = tensors[0].flatten().tolist() if tensors else None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
            entry["error"] = f"{type(exc).__name__}: {exc}"
        found.append(entry)
    return found


#: The modules a notebook's ``from google.colab import drive; drive.mount(...)`` needs.
COLAB_MODULES = ("google.colab", "google.colab.drive")


def install_colab_stand_in() -> list[str]:
    """Make ``from google.colab import drive; drive.mount(...)`` inside a training loop a no-op, where
    ``google.colab`` cannot be imported (everywhere but Colab): the loop's other parts are then graded.

    Returns:
        The modules put in ``sys.modules`` (empty where google.colab imports): pass them to
        :func:`remove_colab_stand_in` afterwards.
    """
    import importlib
    import sys
    import types

    try:
        importlib.import_module("google.colab")
        return []
    except Exception:  # noqa: BLE001 - missing, or a stand-in that fails on import: replace it here
        pass
    drive = types.ModuleType("google.colab.drive")
    drive.mount = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    drive.flush_and_unmount = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    colab = types.ModuleType("google.colab")
    colab.drive = drive  # type: ignore[attr-defined]
    colab.__path__ = []  # type: ignore[attr-defined] - a package, so "google.colab.drive" imports
    installed = []
    try:
        importlib.import_module("google")  # a namespace package where protobuf & co. are installed
    except Exception:  # noqa: BLE001
        google = types.ModuleType("google")
        google.__path__ = []  # type: ignore[attr-defined]
        sys.modules["google"] = google
        installed.append("google")
    sys.modules["google.colab"], sys.modules["google.colab.drive"] = colab, drive
    installed += list(COLAB_MODULES)
    return installed


def remove_colab_stand_in(installed: list[str]) -> None:
    """Undo :func:`install_colab_stand_in`."""
    import sys

    for name in installed:
        sys.modules.pop(name, None)


def first_conv_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Run ``model(x)`` without autograd and return the input of its first ``conv2d`` call.

    Catches both ``nn.Conv2d`` modules and ``F.conv2d`` in ``forward``, since both dispatch to
    ``torch.conv2d``. Returns None when the model never convolves.
    """
    from torch.overrides import TorchFunctionMode

    seen: list[torch.Tensor] = []

    class _Spy(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func in (torch.conv2d, torch.nn.functional.conv2d) and not seen:
                seen.append(args[0].detach().clone())
            return func(*args, **kwargs)

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Spy():
            model(x)
    finally:
        model.train(was_training)
    return seen[0] if seen else None


def first_tensor(out: Any) -> Any:
    """A model that returns ``(logits, ...)`` (with attention weights, or an LSTM's state) is graded
    on its first tensor."""
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


def logits_problem(out: Any, shape: tuple[int, ...]) -> str:
    """What is wrong with a model's output where a training loop expects float logits of ``shape``;
    empty when nothing is. The loops return it as their error instead of crashing on it."""
    if not isinstance(out, torch.Tensor):
        return f"the model returned a {type(out).__name__}; expected a tensor of shape {list(shape)}"
    if tuple(out.shape) != shape or not out.is_floating_point():
        return f"the model returned a {out.dtype} tensor of shape {list(out.shape)}; expected {list(shape)} logits"
    return ""
