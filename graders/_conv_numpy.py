"""Helpers of ``test_conv_numpy.py`` (UvA DL1 A2 question 1.1): tolerances, hints, the random
cases, and the comparisons of each NumPy layer with torch.

Forwards are compared with ``torch.nn.functional`` and backwards with torch autograd
(:func:`torchgrade.checks.gradients.autograd_gradients`), in float64. The second opinion on a
backward, central finite differences of the submitted forward
(:func:`torchgrade.probes.gradients.numerical_gradients`), runs next to that forward; so does the
audit of the NumPy-only rule (:func:`torchgrade.probes.numpy_only.audit`), which the grader then
judges (:func:`torchgrade.checks.numpy_only.torch_findings`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from torchgrade import assignments
from torchgrade.checks import numpy_only, shapes
from torchgrade.checks.gradients import autograd_gradients
from torchgrade.errors import CheckFailure, NotImplementedYet, StudentError
from torchgrade.probes import numpy_only as numpy_probes
from torchgrade.probes.gradients import numerical_gradients

#: The layer functions of ``conv_numpy.py`` (assignments.toml and the template say which).
NAMES = assignments.active().modules()["conv_numpy"]

# Float64 layers of a few hundred terms agree with torch to ~1e-14; a float32 computation misses
# by ~1e-7 and fails, as it should (the inputs are float64).
ATOL, RTOL = 1e-10, 1e-8
# Central differences with step 1e-6 of piecewise-linear layers: rounding ~1e-10 per element.
NUMERIC_ATOL, NUMERIC_RTOL = 1e-6, 1e-6

HINT_NUMPY = (
    "Hint: question 1.1 asks for the layers in NumPy only (np.pad, np.einsum, slicing, loops); "
    "torch may check your results outside these functions."
)
HINT_DTYPE = "Hint: keep the inputs' dtype (float64); do not cast to float32."
HINT_CONV_FORWARD = (
    "Hint: pad x with `padding` zeros on each side, then out[n, f, i, j] = bias[f] + "
    "sum over c, u, v of weight[f, c, u, v] * x_padded[n, c, i*stride + u, j*stride + v]."
)
HINT_CONV_BACKWARD = (
    "Hint: grad_weight and grad_x use the same windows of the padded input as the forward; "
    "accumulate the gradient of the padded input, then cut the padded border off, so that "
    "grad_x has the shape of x."
)
HINT_POOL_FORWARD = (
    "Hint: window (i, j) covers rows i*stride .. i*stride + k - 1 and the same columns; "
    "windows that do not fit are dropped (H_out = (H - k) // stride + 1)."
)
HINT_POOL_BACKWARD = (
    "Hint: only the element that holds a window's maximum receives that window's gradient; "
    "the other elements of the window get 0, and overlapping windows add up."
)
HINT_NUMERIC = (
    "Hint: your backward disagrees with finite differences of your own forward, so at least one of the two is wrong."
)


# -- calling and comparing --------------------------------------------------------------------------------------
def call_text(name: str, args: Sequence, kwargs: dict) -> str:
    shown = [f"array{list(np.shape(a))}" if isinstance(a, np.ndarray) else repr(a) for a in args]
    return f"{name}({', '.join(shown + [f'{k}={v!r}' for k, v in kwargs.items()])})"


def with_hint(failure: CheckFailure, hint: str) -> CheckFailure:
    """The failure with a hint on a line of its own; none for code that is missing or raised, nor
    for a failure that already carries a hint."""
    if not hint or isinstance(failure, (NotImplementedYet, StudentError)) or "\nHint:" in str(failure):
        return failure
    return CheckFailure(f"{failure}\n{hint}")


def check_array(value, expected: np.ndarray, who: str, *, atol: float = ATOL, rtol: float = RTOL) -> None:
    """A NumPy float64 array of the expected shape and values."""
    if isinstance(value, torch.Tensor):
        raise CheckFailure(f"{who} returned a torch.Tensor; expected a NumPy array.\n{HINT_NUMPY}")
    if not isinstance(value, np.ndarray):
        raise CheckFailure(
            f"{who} returned {shapes.describe_value(value)}; expected a NumPy array of shape "
            f"{shapes.shape_text(expected.shape)}."
        )
    shapes.check_shape(value, expected.shape, who)
    if value.dtype != np.float64:
        raise CheckFailure(
            f"{who} returned dtype {value.dtype}; expected float64, the dtype of its inputs.\n{HINT_DTYPE}"
        )
    shapes.check_close(value, expected, who, atol=atol, rtol=rtol)


def unpack(result, names: Sequence[str], who: str) -> list:
    """The gradients a backward returns, as a list in the order of ``names``."""
    if len(names) == 1:
        return [result]
    if not isinstance(result, (tuple, list)) or len(result) != len(names):
        raise CheckFailure(
            f"{who} returned {shapes.describe_value(result)}; expected a tuple of "
            f"{len(names)} arrays ({', '.join(names)})."
        )
    return list(result)


def check_backward(
    sub,
    name: str,
    args: Sequence,
    kwargs: dict,
    grad_out: np.ndarray,
    expected: Sequence[np.ndarray],
    labels: Sequence[str],
) -> None:
    who = call_text(name, [grad_out, *args], kwargs)
    got = unpack(sub.lookup(name)(grad_out, *args, **kwargs), labels, who)
    for value, want, label in zip(got, expected, labels, strict=True):
        check_array(value, want, f"{who} -> {label}")


def check_numeric(
    sub,
    forward: str,
    backward: str,
    args: Sequence,
    kwargs: dict,
    labels: Sequence[str],
    torch_forward: Callable[..., torch.Tensor],
    seed: int,
) -> None:
    """The submitted backward against central differences of the submitted forward (run next to it).

    Finite differences judge the backward alone only where the forward is right: where the submitted
    forward disagrees with torch on these inputs (a bug its own check already charges), they are
    taken of torch's forward instead.
    """
    expected_out = torch_forward(
        *(torch.from_numpy(np.asarray(a)) if isinstance(a, np.ndarray) else a for a in args), **kwargs
    ).numpy()
    grad_out = np.random.default_rng(seed).normal(size=expected_out.shape)
    out = sub.lookup(forward)(*args, **kwargs)
    own = (
        isinstance(out, np.ndarray)
        and out.shape == expected_out.shape
        and np.allclose(out, expected_out, atol=ATOL, rtol=RTOL)
    )
    wrt = list(range(len(labels)))
    if own:
        numeric = sub.apply(numerical_gradients, sub.lookup(forward), list(args), grad_out, wrt, kwargs)
        source = f"finite differences of your {forward}"
    else:

        def torch_numpy(*arrays, **options):
            tensors = [torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in arrays]
            return torch_forward(*tensors, **options).numpy()

        numeric = numerical_gradients(torch_numpy, list(args), grad_out, wrt, kwargs)
        source = f"finite differences of torch's forward (your {forward} disagrees with it here)"
    who = call_text(backward, [grad_out, *args], kwargs)
    got = unpack(sub.lookup(backward)(grad_out, *args, **kwargs), labels, who)
    for value, want, label in zip(got, numeric, labels, strict=True):
        try:
            check_array(value, want, f"{who} -> {label} (against {source})", atol=NUMERIC_ATOL, rtol=NUMERIC_RTOL)
        except CheckFailure as failure:
            raise with_hint(failure, HINT_NUMERIC if own else "") from None


# -- the NumPy-only rule ------------------------------------------------------------------------------
def audit_calls() -> dict[str, tuple[list, dict]]:
    """One small call of every function, traced for torch."""
    rng = np.random.default_rng(110)
    x, w, b = rng.normal(size=(1, 2, 5, 5)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    pool_x = rng.normal(size=(1, 2, 6, 6))
    lin_x, lin_w, lin_b = rng.normal(size=(2, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    conv = {"stride": 2, "padding": 1}
    return {
        "conv2d_forward": ([x, w, b], conv),
        "conv2d_backward": ([rng.normal(size=(1, 3, 3, 3)), x, w, b], conv),
        "max_pool2d_forward": ([pool_x, 2], {}),
        "max_pool2d_backward": ([rng.normal(size=(1, 2, 3, 3)), pool_x, 2], {}),
        "relu_forward": ([lin_x], {}),
        "relu_backward": ([rng.normal(size=(2, 4)), lin_x], {}),
        "linear_forward": ([lin_x, lin_w, lin_b], {}),
        "linear_backward": ([rng.normal(size=(2, 3)), lin_x, lin_w, lin_b], {}),
    }


def run_audit(submission) -> dict:
    """``{"static": {name: findings}, "runtime": {name: trace}, "missing": {name: message}}`` for the
    layer functions, read and traced once per submission."""
    functions, missing = {}, {}
    for name in NAMES:
        try:
            functions[name] = submission.lookup(name)
        except CheckFailure as failure:
            missing[name] = str(failure)
    submission.set_cpu_budget(120)
    try:
        found = submission.apply(numpy_probes.audit, functions, audit_calls()) if functions else {}
    except CheckFailure as failure:  # the worker died or hung while tracing: say so in every check
        found = {"failure": str(failure)}
    finally:
        submission.set_cpu_budget(None)
    return {
        "static": found.get("static", {}),
        "runtime": found.get("runtime", {}),
        "missing": missing,
        "failure": found.get("failure"),
    }


def require_numpy(audit: dict, names: Sequence[str]) -> None:
    """Fail a layer's check when its functions use torch."""
    findings = numpy_only.torch_findings(audit, names)
    if findings:
        verb = "uses" if len(names) == 1 else "use"
        raise CheckFailure(
            f"{' and '.join(names)} {verb} torch ({'; '.join(findings)}); question 1.1 gives no "
            f"points for a layer computed with torch.\n{HINT_NUMPY}"
        )


# -- convolution ---------------------------------------------------------------------------------------
def conv_cases(padded: bool, count: int, seed: int) -> list[dict]:
    """Random convolutions: batch 1-3, 1-3 channels in, 1-4 out, kernels 1-4 per side (not square),
    strides 1-3; padding 0 or 1-2."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        n, c, f = (int(v) for v in rng.integers(1, [4, 4, 5]))
        h, w = (int(v) for v in rng.integers(4, 10, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
        stride, padding = int(rng.integers(1, 4)), int(rng.integers(1, 3)) if padded else 0
        if kh > h + 2 * padding or kw > w + 2 * padding:
            continue
        cases.append(
            {
                "args": [rng.normal(size=(n, c, h, w)), rng.normal(size=(f, c, kh, kw)), rng.normal(size=f)],
                "kwargs": {"stride": stride, "padding": padding},
            }
        )
    cases[0]["kwargs"]["stride"] = 1  # the plain case is always there
    return cases


def check_conv_forward(sub, cases: list[dict]) -> None:
    """``conv2d_forward`` against ``F.conv2d`` on each case."""
    for case in cases:
        args, kwargs = case["args"], case["kwargs"]
        expected = F.conv2d(*(torch.from_numpy(a) for a in args), **kwargs).numpy()
        who = call_text("conv2d_forward", args, kwargs)
        try:
            check_array(sub.conv2d_forward(*args, **kwargs), expected, who)
        except CheckFailure as failure:
            raise with_hint(failure, HINT_CONV_FORWARD) from None


CONV_GRADS = ("grad_x", "grad_weight", "grad_bias")


def check_conv_backward(sub, cases: list[dict], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for case in cases:
        args, kwargs = case["args"], case["kwargs"]
        out_shape = F.conv2d(*(torch.from_numpy(a) for a in args), **kwargs).shape
        grad_out = rng.normal(size=tuple(out_shape))
        _, expected = autograd_gradients(F.conv2d, args, grad_out, **kwargs)
        try:
            check_backward(sub, "conv2d_backward", args, kwargs, grad_out, expected, CONV_GRADS)
        except CheckFailure as failure:
            raise with_hint(failure, HINT_CONV_BACKWARD) from None


# -- max-pooling ---------------------------------------------------------------------------------------------
# (shape, kernel_size, stride): windows side by side (stride None, as in PyTorch), overlapping
# (stride < kernel), and sizes the windows do not divide (the rest is dropped).
POOL_CASES = (
    ((2, 3, 8, 8), 2, None),
    ((1, 2, 7, 9), 3, 2),
    ((2, 1, 6, 5), 2, 1),
    ((1, 3, 10, 7), 3, 3),
    ((3, 2, 5, 5), 1, None),
)


def pool_kwargs(stride) -> dict:
    return {} if stride is None else {"stride": stride}


def check_pool_forward(sub, seed: int) -> None:
    """``max_pool2d_forward`` against ``F.max_pool2d`` on :data:`POOL_CASES`."""
    rng = np.random.default_rng(seed)
    for shape, kernel, stride in POOL_CASES:
        x = rng.normal(size=shape)
        expected = F.max_pool2d(torch.from_numpy(x), kernel, stride).numpy()
        who = call_text("max_pool2d_forward", [x, kernel], pool_kwargs(stride))
        try:
            check_array(sub.max_pool2d_forward(x, kernel, **pool_kwargs(stride)), expected, who)
        except CheckFailure as failure:
            raise with_hint(failure, HINT_POOL_FORWARD) from None


def check_pool_backward(sub, seed: int) -> None:
    """``max_pool2d_backward`` against autograd of ``F.max_pool2d`` on :data:`POOL_CASES`."""
    rng = np.random.default_rng(seed)
    for shape, kernel, stride in POOL_CASES:
        x = rng.normal(size=shape)
        out_shape = F.max_pool2d(torch.from_numpy(x), kernel, stride).shape
        grad_out = rng.normal(size=tuple(out_shape))
        _, expected = autograd_gradients(lambda t, k=kernel, s=stride: F.max_pool2d(t, k, s), [x], grad_out)
        try:
            check_backward(sub, "max_pool2d_backward", [x, kernel], pool_kwargs(stride), grad_out, expected, ["grad_x"])
        except CheckFailure as failure:
            raise with_hint(failure, HINT_POOL_BACKWARD) from None


def check_pool_numeric(sub, seed: int) -> None:
    """``max_pool2d_backward`` against finite differences of ``max_pool2d_forward`` (kernel 3, stride 2)."""
    x = np.random.default_rng(seed).normal(size=(1, 2, 7, 7))
    try:
        check_numeric(
            sub, "max_pool2d_forward", "max_pool2d_backward", [x, 3], {"stride": 2}, ["grad_x"], F.max_pool2d, seed=80
        )
    except CheckFailure as failure:
        raise with_hint(failure, HINT_POOL_BACKWARD) from None


# -- ReLU and linear ----------------------------------------------------------------------------------------------
def check_relu(sub, seed: int) -> None:
    """``relu_forward`` and ``relu_backward`` against torch, then against finite differences."""
    rng = np.random.default_rng(seed)
    for shape in ((2, 3, 4, 5), (6, 7), (9,)):
        x, grad_out = rng.normal(size=shape), rng.normal(size=shape)
        output, (expected,) = autograd_gradients(F.relu, [x], grad_out)
        check_array(sub.relu_forward(x), output, call_text("relu_forward", [x], {}))
        check_backward(sub, "relu_backward", [x], {}, grad_out, [expected], ["grad_x"])
    check_numeric(sub, "relu_forward", "relu_backward", [rng.normal(size=(3, 4))], {}, ["grad_x"], F.relu, seed=90)


def check_linear(sub, seed: int) -> None:
    """``linear_forward`` and ``linear_backward`` against torch, then against finite differences."""
    rng = np.random.default_rng(seed)
    for n, d_in, d_out in ((1, 3, 2), (5, 7, 4), (8, 1, 6)):
        args = [rng.normal(size=(n, d_in)), rng.normal(size=(d_out, d_in)), rng.normal(size=d_out)]
        grad_out = rng.normal(size=(n, d_out))
        output, expected = autograd_gradients(F.linear, args, grad_out)
        check_array(sub.linear_forward(*args), output, call_text("linear_forward", args, {}))
        check_backward(sub, "linear_backward", args, {}, grad_out, expected, CONV_GRADS)
    args = [rng.normal(size=(3, 4)), rng.normal(size=(2, 4)), rng.normal(size=2)]
    check_numeric(sub, "linear_forward", "linear_backward", args, {}, CONV_GRADS, F.linear, seed=100)
