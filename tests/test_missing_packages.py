"""A package the grading environment lacks costs only the checks that use it (issue 17, item 5).

``import pandas`` in a handout's own import cell, or ``import torchvision`` beside a UNet, used to
make the whole module fail to import and zero every check of it. The loader now retries such an
import with a stand-in (:class:`torchgrade.worker.loader.StandIn`): what does not use the package
is graded, and what uses it fails with a message naming the package.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
from pathlib import Path

import pytest

from torchgrade import errors
from torchgrade.engine.proxy import Submission
from torchgrade.isolation import sandbox
from torchgrade.worker import loader
from torchgrade.worker.loader import LoadedSubmission, MissingPackageError

MISSING = "torchgrade_missing_pkg"  # never installed anywhere
OTHER = "torchgrade_other_missing_pkg"

MODULE = f"""
import {MISSING}
import {MISSING}.transforms as T
from {MISSING} import models
from {MISSING}.models import resnet18 as rn
import {OTHER}.deep.sub
import torch
from torch import nn

transform = T.Compose([T.ToTensor(), T.Normalize((0.5,), (0.5,))])
BACKBONE = rn(pretrained=True)


@{MISSING}.decorators.cached
def decorated(x):
    return x


class Data({MISSING}.datasets.VisionDataset):
    def __init__(self):
        super().__init__("root")


class CNN(nn.Module):
    def __init__(self, n=4):
        super().__init__()
        self.fc = nn.Linear(2, n)

    def forward(self, x):
        return self.fc(x)


def double(x):
    return 2 * x


def is_frame(x):
    return isinstance(x, {MISSING}.DataFrame)


def uses_package(x):
    return {MISSING}.DataFrame(x)


def uses_transform(x):
    return transform(x)


def truth():
    return bool(models)


def other():
    return {OTHER}.deep.sub.f()


def guarded_import():
    try:
        import {MISSING}_not_at_top
    except ImportError:
        return "fallback"
    return "imported"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "shoes.py").write_text(textwrap.dedent(MODULE))
    return tmp_path


@contextlib.contextmanager
def loaded(folder: Path):
    submission = LoadedSubmission(folder)
    try:
        yield submission
    finally:
        submission.unload()


def test_what_does_not_use_the_missing_package_is_graded(folder: Path) -> None:
    with loaded(folder) as submission:
        shoes = submission.module("shoes")
        assert shoes.double(3) == 6
        assert shoes.CNN(n=3).fc.out_features == 3
        assert shoes.guarded_import() == "fallback"  # the student's own except branch still runs
        assert shoes.is_frame([1]) is False  # nothing is an instance of a class of a missing package
        assert submission.stood_in == [MISSING, OTHER]
        assert submission.notes() == [loader.NOTE_STOOD_IN.format(package=p) for p in (MISSING, OTHER)]


@pytest.mark.parametrize(
    ("function", "what", "how"),
    [
        ("uses_package", f"{MISSING}.DataFrame", "was called"),
        ("uses_transform", f"{MISSING}.transforms.Compose(...)", "was called"),
        ("truth", f"{MISSING}.models", "was tested for truth"),
        ("Data", f"{MISSING}.datasets.VisionDataset", "is the base class of the object being made"),
        ("decorated", f"{MISSING}.decorators.cached(...)", "was called"),
    ],
)
def test_what_uses_it_fails_naming_the_package(folder: Path, function: str, what: str, how: str) -> None:
    with loaded(folder) as submission:
        shoes = submission.module("shoes")
        with pytest.raises(MissingPackageError) as caught:
            getattr(shoes, function)(1) if function not in ("truth", "Data") else getattr(shoes, function)()
        assert str(caught.value) == loader.MSG_NO_PACKAGE.format(package=MISSING, what=f"`{what}`", how=how)
        assert caught.value.name == MISSING


def test_stand_ins_never_reach_code_outside_the_submission(folder: Path) -> None:
    with loaded(folder) as submission:
        submission.module("shoes")
        assert MISSING not in sys.modules and f"{MISSING}.transforms" not in sys.modules
        with pytest.raises(ModuleNotFoundError):  # the grader's (or torch's) own import is not served
            __import__(MISSING)
    assert not any(isinstance(f, loader._StandInFinder) for f in sys.meta_path)


@pytest.mark.parametrize(
    ("source", "error"),
    [
        pytest.param(
            "import torchgrade_missing_pkg\nimport torch.no_such_submodule",
            "torch.no_such_submodule",
            id="installed-package",
        ),
        pytest.param("from . import helpers", "helpers", id="own-module"),
        pytest.param("import torchgrade_missing_pkg\nraise ImportError('mine')", "mine", id="student-import-error"),
    ],
)
def test_no_stand_in_for_installed_packages_or_the_submissions_own_modules(
    tmp_path: Path, source: str, error: str
) -> None:
    (tmp_path / "shoes.py").write_text(source + "\n")
    with loaded(tmp_path) as submission:
        with pytest.raises(loader.ModuleImportError, match=error):
            submission.module("shoes")


def test_never_torch_or_numpy() -> None:
    assert {"torch", "numpy"} <= loader.NEVER_STAND_IN


def test_a_stand_in_used_at_import_time_fails_the_module_with_the_packages_name(tmp_path: Path) -> None:
    (tmp_path / "shoes.py").write_text(f"import {MISSING}\nif {MISSING}.__version__ > '2':\n    pass\n")
    with loaded(tmp_path) as submission:
        with pytest.raises(loader.ModuleImportError, match=f"no '{MISSING}' package"):
            submission.module("shoes")


def test_a_sibling_module_importing_a_missing_package(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text(f"import {MISSING} as pkg\n\ndef one():\n    return 1\n")
    (tmp_path / "shoes.py").write_text("import helpers\n\ndef two():\n    return helpers.one() + 1\n")
    with loaded(tmp_path) as submission:
        assert submission.module("shoes").two() == 2
        assert submission.stood_in == [MISSING]


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_through_the_proxy_a_check_using_the_package_fails_and_the_others_pass(folder: Path, isolation: str) -> None:
    interface = {"double": "shoes", "uses_package": "shoes"}
    # In-process, another test module's submission may be loaded under the same private package.
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.partition(".")[0] == loader.PACKAGE}
    finders = [f for f in sys.meta_path if isinstance(f, (loader._SiblingFinder, loader._SnapshotFinder))]
    sub = Submission(folder, isolation, interface, hidden=sandbox.hidden_paths(folder, None, None))
    try:
        assert sub.double(21) == 42
        expected = f"MissingPackageError: the grading environment has no '{MISSING}' package"
        with pytest.raises(errors.StudentError, match=expected):
            sub.uses_package(1)
        notes = sub.close().notes
        assert loader.NOTE_STOOD_IN.format(package=MISSING) in notes
        assert loader.NOTE_STOOD_IN.format(package=OTHER) in notes
    finally:
        sub.close()
        sys.meta_path[:0] = [f for f in finders if f not in sys.meta_path]
        sys.modules.update(saved)


def test_a_missing_portion_of_an_installed_namespace_package(tmp_path: Path, monkeypatch) -> None:
    """``from google.colab import drive`` where protobuf's ``google`` namespace package is installed."""
    (tmp_path / "site" / "tgnamespace" / "present").mkdir(parents=True)
    (tmp_path / "site" / "tgnamespace" / "present" / "__init__.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "shoes.py").write_text(
        "from tgnamespace.present import VALUE\nfrom tgnamespace.colab import drive\ndrive.mount('/content/drive')\n"
        "def value():\n    return VALUE\n"
    )
    with loaded(tmp_path / "sub") as submission:
        assert submission.module("shoes").value() == 1
        assert submission.stood_in == ["tgnamespace.colab"]
    sys.modules.pop("tgnamespace.present", None)
    sys.modules.pop("tgnamespace", None)


def test_an_installed_module_that_needs_a_missing_package(tmp_path: Path) -> None:
    """``from torch.utils.tensorboard import SummaryWriter``: torch's module is installed, but its own
    import needs ``tensorboard``, which is not."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ModuleNotFoundError as exc:
        missing = exc.name
    else:
        pytest.skip("tensorboard is installed here")
    (tmp_path / "shoes.py").write_text(
        "import torch\nfrom torch.utils.tensorboard import SummaryWriter\n\n"
        "def log(value):\n    SummaryWriter('runs').add_scalar('loss', value)\n\n"
        "def double(x):\n    return 2 * x\n"
    )
    with loaded(tmp_path) as submission:
        shoes = submission.module("shoes")
        assert shoes.double(2) == 4
        assert submission.stood_in == [missing]
        with pytest.raises(
            MissingPackageError, match=f"no '{missing}' package: `torch.utils.tensorboard.SummaryWriter`"
        ):
            shoes.log(1.0)
    with pytest.raises(ModuleNotFoundError):  # the grader's own import still fails as it should
        import torch.utils.tensorboard  # noqa: F401
    assert not hasattr(sys.modules["torch.utils"], "tensorboard")  # nor is the stand-in left on torch.utils


def test_a_missing_package_needed_by_a_library_function_is_the_students_error(tmp_path: Path, monkeypatch) -> None:
    """Only imports stand in: a library *function* the submission calls at import time, which needs a
    missing package, fails the module as it would anywhere without that package."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "tg_library.py").write_text(f"def load():\n    import {MISSING}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "shoes.py").write_text("import tg_library\ntg_library.load()\n")
    try:
        with loaded(tmp_path / "sub") as submission:
            with pytest.raises(loader.ModuleImportError, match=f"No module named '{MISSING}'"):
                submission.module("shoes")
            assert submission.stood_in == []
    finally:
        sys.modules.pop("tg_library", None)


def test_mounting_google_drive_does_nothing(tmp_path: Path) -> None:
    """``from google.colab import drive`` at the top, ``drive.mount(...)`` inside ``train_model``:
    the loop's other parts are graded (issue 17, class 7)."""
    if loader._importable("google.colab"):
        pytest.skip("google.colab is installed here")
    (tmp_path / "shoes.py").write_text(
        "from google.colab import drive, files\ndrive.mount('/content/drive')\n\n"
        "def train_model(steps):\n    drive.mount('/content/drive', force_remount=True)\n"
        "    files.download('curves.png')\n    return steps * 2\n"
    )
    with loaded(tmp_path) as submission:
        assert submission.module("shoes").train_model(3) == 6
        assert submission.stood_in in (["google"], ["google.colab"])
