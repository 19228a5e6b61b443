#!/usr/bin/env bash
# Install what is missing, then start the dashboard (http://localhost:8501) on its default model set:
# the seed's In-the-Wild checkpoints when they are on disk, else the detectors shipped in assets/models/.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/streamlit run Home.py "$@"
