#!/usr/bin/env bash
# Gradescope autograder set-up: Gradescope runs this once, as root, when it builds the autograder's
# image. It installs Python 3.11+ in a virtual environment, torch (CPU) and the torchgrade wheel
# bundled in the zip (wheels/). Build the zip's content with
#     torchgrade release --profile gradescope --out build/autograder
# and zip the content of that folder (not the folder itself).
#
# Environment (the defaults are Gradescope's layout):
#   AUTOGRADER_ROOT          /autograder
#   TORCHGRADE_SOURCE        $AUTOGRADER_ROOT/source (the unzipped autograder)
#   TORCHGRADE_VENV          $AUTOGRADER_ROOT/venv (where torch and torchgrade are installed)
#   TORCHGRADE_PYTHON        the interpreter to check when installation is skipped (default: the venv's)
#   TORCHGRADE_SKIP_INSTALL  1: install nothing; only check that TORCHGRADE_PYTHON imports torch and
#                            torchgrade (the harness's tests simulate Gradescope with their own venv)
set -euo pipefail

TORCH_REQUIREMENT="torch>=2.13"  # the range of torchgrade's metadata; the CPU index's newest release in it
TORCH_INDEX="https://download.pytorch.org/whl/cpu"  # the default torch wheel is a multi-GB CUDA build

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="${TORCHGRADE_SOURCE:-$ROOT/source}"
VENV="${TORCHGRADE_VENV:-$ROOT/venv}"
PYTHON="${TORCHGRADE_PYTHON:-$VENV/bin/python}"
cd "$SOURCE"

if [ "${TORCHGRADE_SKIP_INSTALL:-0}" != 1 ]; then
    # torchgrade needs Python 3.11+; Gradescope's Ubuntu 22.04 image has 3.10, its 24.04 image 3.12.
    BASE=python3
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        apt-get update
        apt-get install -y python3.11 python3.11-venv
        BASE=python3.11
    elif ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt-get update
        apt-get install -y python3-venv
    fi
    "$BASE" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --upgrade pip
    "$VENV/bin/python" -m pip install "$TORCH_REQUIREMENT" --index-url "$TORCH_INDEX"
    "$VENV/bin/python" -m pip install -r requirements.txt  # torch's range and ./wheels/torchgrade-*.whl with its extras
fi

# Fail the image build now rather than every submission later.
"$PYTHON" -c 'import sys, torch, torchgrade; print(f"torchgrade {torchgrade.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")'
