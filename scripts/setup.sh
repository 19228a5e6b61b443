#!/usr/bin/env bash
# Install what is missing: Debian packages (ffmpeg for m4a/aac; espeak-ng, flite, festival + voices for
# `python -m core synth` and its tests; chromium for the browser test),
# a virtual environment in .venv, and the pinned Python packages. Safe to rerun: it skips what is there.
#   scripts/setup.sh          runtime only (the app and the CLI)
#   scripts/setup.sh --dev    plus test, training and Ray extras
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0; [[ "${1:-}" == "--dev" ]] && DEV=1

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
if [[ $DEV == 1 ]]; then
  command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
  command -v flite >/dev/null 2>&1 || need_apt+=(flite)
  command -v text2wave >/dev/null 2>&1 || need_apt+=(festival)
  fv=/usr/share/festival/voices  # the synth voices: about 20 MB, under half a minute to install
  [[ -d $fv/us/cmu_us_slt_arctic_hts ]] || need_apt+=(festvox-us-slt-hts)
  [[ -d $fv/english/kal_diphone ]] || need_apt+=(festvox-kallpc16k)
  [[ -d $fv/english/ked_diphone ]] || need_apt+=(festvox-kdlpc16k)
  [[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
fi
if (( ${#need_apt[@]} )); then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "warning: please install ${need_apt[*]} with your package manager" >&2
  fi
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
reqs=(requirements.txt); [[ $DEV == 1 ]] && reqs+=(requirements-dev.txt requirements-ray.txt)
# (an `a && b` whose `a` fails ends a `set -e` script when it is the last command of a subshell)
stamp=.venv/.installed-$(cat "${reqs[@]}" | sha256sum | cut -c1-16)
if [[ ! -f $stamp ]]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  if [[ $DEV == 1 ]]; then
    .venv/bin/pip install -q -r requirements-dev.txt -r requirements-ray.txt
  else
    .venv/bin/pip install -q -r requirements.txt
  fi
  touch "$stamp"
fi
