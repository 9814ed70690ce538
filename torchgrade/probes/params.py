"""Parameter counts and shapes of a model, for questions that ask for a parameter count.

The expected count of a question is written by hand in the submission's answers; these functions
measure the model itself, so a grader can compare the two exactly. They import only torch and the
standard library: they may run inside the worker process next to student code.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parameter import is_lazy


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model``: ``sum(p.numel() for p in model.parameters())``.

    A parameter shared by several submodules (``self.b.weight = self.a.weight``, or one module
    registered twice, as in ``nn.Sequential(*[block] * n)``) is counted once, as PyTorch's
    optimiser sees it. Buffers (BatchNorm running statistics) are not parameters.

    Args:
        model: The module to measure; it is not modified.
        trainable_only: Count only parameters with ``requires_grad=True``.

    Returns:
        The number of scalar parameters.

    Raises:
        ValueError: If ``model`` is not an ``nn.Module`` or still holds uninitialised lazy
            parameters (run one forward pass first).
    """
    params = _unique_parameters(model, "count_parameters")
    return sum(p.numel() for _, p in params if p.requires_grad or not trainable_only)


def parameter_shapes(model: nn.Module) -> list[tuple[str, list[int]]]:
    """Name and shape of every parameter of ``model``, in registration order.

    A shared parameter appears once, under the first name it was registered with.

    Args:
        model: The module to describe; it is not modified.

    Returns:
        ``[(name, shape), ...]``, e.g. ``[("conv1.weight", [4, 3, 3, 3]), ("conv1.bias", [4])]``.

    Raises:
        ValueError: If ``model`` is not an ``nn.Module`` or still holds uninitialised lazy
            parameters.
    """
    return [(name, list(p.shape)) for name, p in _unique_parameters(model, "parameter_shapes")]


def parameter_values(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Name and a detached copy of every parameter of ``model``, in registration order.

    Graders read weights back this way to compute what a layer should output with them.

    Raises:
        ValueError: as :func:`parameter_shapes`.
    """
    return [(name, p.detach().clone()) for name, p in _unique_parameters(model, "parameter_values")]


def _unique_parameters(model: nn.Module, caller: str) -> list[tuple[str, torch.nn.Parameter]]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{caller}: expected a torch.nn.Module; got {type(model).__name__}")
    # named_parameters() already drops repeats of the same Parameter object.
    params = list(model.named_parameters())
    lazy = [name for name, p in params if is_lazy(p)]
    if lazy:
        raise ValueError(
            f"{caller}: {type(model).__name__} has uninitialised lazy parameters "
            f"({', '.join(lazy)}); run one forward pass before counting them"
        )
    return params
