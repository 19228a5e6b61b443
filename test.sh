#!/usr/bin/env bash
# Install what is missing (Debian packages, .venv, dev requirements), then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --dev
exec .venv/bin/python -m pytest -q "$@"
