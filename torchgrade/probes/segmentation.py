"""Probes of a segmentation network: the grader's training loop, and how much the skip connections of
an encoder-decoder (a UNet) matter. Worker side.

Both need the submitted model itself (autograd, forward hooks), so they run where it lives
(``Submission.apply``): with process isolation, inside the worker. They take and return plain data
(tensors, numbers, names) and import only torch and :mod:`torchgrade.probes.training`. The
training loop returns the predicted label maps of the validation images, not a score: the grader
compares them with labels that never leave the grader process (its own IoU).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torchgrade.probes.training import first_tensor, logits_problem, one_thread


# -- training ----------------------------------------------------------------------------------------
def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cross-entropy weights ``sqrt(N / N_c)``, scaled to mean 1 over the classes present.

    Thin strokes are ~3% of the pixels: with unweighted cross-entropy a short run spends its
    steps on the background. Measured on the graders' scenes with the handout's UNet (batches of
    8, lr 3e-3): unweighted, 150 steps gave mean IoU 0.34-0.49 with skips and 0.09-0.14 without
    (the latter predicting background almost everywhere; 4 seeds); weighted, 100 steps give
    0.72-0.97 and 0.26-0.48 (20 seeds), a faster and steadier comparison.
    """
    counts = torch.bincount(labels.reshape(-1), minlength=num_classes).double()
    weights = torch.where(counts > 0, (counts.sum() / counts.clamp(min=1)).sqrt(), torch.zeros_like(counts))
    return (weights / weights[counts > 0].mean()).float()


@one_thread()
def train_segmenter(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    val_images: torch.Tensor,
    *,
    num_classes: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
) -> dict[str, Any]:
    """Train ``model`` for a fixed number of Adam steps on shuffled mini-batches, then predict.

    Loss: cross-entropy on the model's output taken as logits, weighted per class
    (:func:`class_weights`). Predictions: the argmax over the classes of the output for each
    validation image, in eval mode. Runs on one thread, as the graph loops do: the handout's UNet
    takes ~15 s per 100 steps on one core, and 90-170 s with two threads on two cores that other
    jobs keep busy (measured; ~8 s with two idle cores).

    Args:
        model: ``model(x (B, 1, H, W)) -> (B, num_classes, H, W)`` logits; trained in place.
        images, val_images: ``(N, 1, H, W)`` float.
        labels: ``(N, H, W)`` class indices of the training images (any integer dtype).
        num_classes: classes of the labels, the channels of the logits.
        steps, batch_size, lr: the budget; batches are consecutive slices of one random order of
            the training set per epoch, the last incomplete slice dropped.
        seed: seeds the shuffling and torch's global generator (dropout, if any).

    Returns:
        ``{"losses": per step, "predictions": (N_val, H, W) class indices (uint8 for up to 256
        classes)}``; ``{"error": message}`` when the output has the wrong type or shape or the
        loss stops being finite.
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    labels = torch.as_tensor(labels).long()
    images, val_images = torch.as_tensor(images).float(), torch.as_tensor(val_images).float()
    weights = class_weights(labels, num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batches: list[torch.Tensor] = []
    losses = []
    for step in range(1, steps + 1):
        if not batches:
            batches = list(torch.randperm(len(images), generator=shuffle).split(batch_size))
            if len(batches[-1]) < batch_size and len(batches) > 1:
                batches.pop()
        chunk = batches.pop(0)
        model.train()
        optimizer.zero_grad()
        out = first_tensor(model(images[chunk]))
        problem = logits_problem(out, (len(chunk), num_classes, *images.shape[2:]))
        if problem:
            return {"error": problem}
        loss = F.cross_entropy(out, labels[chunk], weight=weights)
        if not torch.isfinite(loss):
            return {"error": f"the training loss became {loss.item()} at step {step}"}
        loss.backward()
        optimizer.step()
        losses.append(round(loss.item(), 5))
    predictions = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(val_images), 32):
            out = first_tensor(model(val_images[start : start + 32]))
            problem = logits_problem(out, (len(val_images[start : start + 32]), num_classes, *val_images.shape[2:]))
            if problem:
                return {"error": f"in eval mode, {problem}"}
            predictions.append(out.argmax(dim=1))
    dtype = torch.uint8 if num_classes <= 256 else torch.int64
    return {"losses": losses, "predictions": torch.cat(predictions).to(dtype)}


# -- skip connections ----------------------------------------------------------------------------------
def find_down_blocks(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the submodules that act as ``Down`` blocks during ``model(x)``.

    A ``Down`` block is recognised by what it does, not by its class name: it takes a ``(B, C, H,
    W)`` tensor and returns a pair ``(down, skip)`` of 4-D tensors, ``skip`` at the input's
    resolution ``(H, W)`` and ``down`` at half ``(H // 2, W // 2)``. Blocks nested inside another
    such block are left out.
    """
    found: set[str] = set()

    def record(name: str):
        def hook(module, args, output):
            if _is_down_call(args, output):
                found.add(name)

        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return sorted(n for n in found if not any(n.startswith(other + ".") for other in found))


def _is_down_call(args: tuple, output: Any) -> bool:
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() != 4:
        return False
    if not isinstance(output, (tuple, list)) or len(output) != 2:
        return False
    down, skip = output
    if not (isinstance(down, torch.Tensor) and isinstance(skip, torch.Tensor) and down.dim() == skip.dim() == 4):
        return False
    height, width = args[0].shape[2:]
    return tuple(skip.shape[2:]) == (height, width) and tuple(down.shape[2:]) == (height // 2, width // 2)


def skip_probe(
    model: nn.Module, x: torch.Tensor, other: torch.Tensor, *, seed: int, factor_std: float = 0.5
) -> dict[str, Any]:
    """How much the output of a UNet moves when what its ``Down`` blocks return is perturbed.

    Four forward passes without autograd: the output for ``x``; again with every skip that a
    ``Down`` block returns multiplied elementwise by random factors ``1 + factor_std * N(0, 1)``
    (forward hooks replace the returned pair, the pooled tensor unchanged); again with the pooled
    tensors perturbed the same way and the skips unchanged; and the output for another input
    ``other``. Multiplying rather than adding keeps a skip that a block itself zeroes at zero, so
    any way of disabling the skips reads as disabled.

    The passes run in training mode, on a copy of the model (its running statistics and mode stay
    as they were; a model that cannot be copied is probed in place and restored), with torch's
    generator reset before each pass (any dropout draws the same masks): batch norm on batch
    statistics keeps every layer's activations at unit scale, whereas in eval mode an untrained
    network's output is mostly its biases and the input moves it by ~0.5% only.

    Args:
        model: the UNet; not modified.
        x, other: ``(B, C, H, W)`` inputs of the same shape, ``B >= 2``.
        seed: seeds the random factors and the passes.

    Returns:
        ``{"down_blocks": names, "output_scale": max |output - its mean|, "skip_change",
        "down_change", "input_change"}``: the largest absolute change of the output in each case.
        With no ``Down`` block found only ``down_blocks`` (empty) and ``output_scale``.
    """
    model, restore = _training_copy(model)
    try:
        return _probe(model, x, other, seed=seed, factor_std=factor_std)
    finally:
        restore()


def _training_copy(model: nn.Module) -> tuple[nn.Module, Callable[[], None]]:
    """The model in training mode and how to undo that: a deep copy (nothing to undo), or, for a
    model that cannot be copied (it holds a lock, say), the model itself, whose parameters, running
    statistics and mode the returned function restores."""
    try:
        return copy.deepcopy(model).train(), lambda: None
    except Exception:  # noqa: BLE001 - any failure to copy: probe in place instead
        state = {name: value.clone() for name, value in model.state_dict().items()}
        was_training = model.training

        def restore() -> None:
            model.load_state_dict(state)
            model.train(was_training)

        return model.train(), restore


def _probe(model: nn.Module, x: torch.Tensor, other: torch.Tensor, *, seed: int, factor_std: float) -> dict[str, Any]:
    blocks = find_down_blocks(model, x)

    def output(inputs: torch.Tensor, perturbed: int | None = None) -> Any:
        torch.manual_seed(seed)
        with torch.no_grad():
            if perturbed is None:
                return first_tensor(model(inputs))
            return _perturbed_output(model, inputs, blocks, perturbed, seed, factor_std)

    base = output(x)
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"the model returned a {type(base).__name__}; expected a tensor")
    result: dict[str, Any] = {"down_blocks": blocks, "output_scale": float((base - base.mean()).abs().max())}
    if blocks:
        result["skip_change"] = _largest_change(output(x, perturbed=1), base)
        result["down_change"] = _largest_change(output(x, perturbed=0), base)
        result["input_change"] = _largest_change(output(other), base)
    return result


def _perturbed_output(
    model: nn.Module, x: torch.Tensor, blocks: list[str], which: int, seed: int, factor_std: float
) -> Any:
    generator = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())

    def hook(module, args, output):
        if not _is_down_call(args, output):
            return output
        pair = list(output)
        factors = 1 + factor_std * torch.randn(pair[which].shape, generator=generator)
        pair[which] = pair[which] * factors.to(pair[which].dtype)
        if isinstance(output, list):
            return pair
        return type(output)(*pair) if hasattr(output, "_fields") else tuple(pair)  # a namedtuple, or a tuple

    handles = [modules[name].register_forward_hook(hook) for name in blocks]
    try:
        return first_tensor(model(x))
    finally:
        for handle in handles:
            handle.remove()


def _largest_change(out: Any, base: torch.Tensor) -> float:
    if not isinstance(out, torch.Tensor) or out.shape != base.shape:
        return float("inf")
    return float((out.float() - base.float()).abs().max())
