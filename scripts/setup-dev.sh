#!/usr/bin/env bash
# Install contrastive for development: PyTorch, the package with its dev extra, the example plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --upgrade pip
# torch 2.14.1 / torchvision 0.29.1 lie on the project machines' disk; any recent release works elsewhere.
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" || python -m pip install --quiet torch torchvision
python -m pip install --quiet -e ".[dev]" -e plugins/contrastive-hardneg
