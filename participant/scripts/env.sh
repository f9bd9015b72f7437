# Source this from the repository root to build and run the participant:
#   . participant/scripts/env.sh
# It puts the project's venv first on PATH (torch-sys asks that python for
# libtorch: LIBTORCH_USE_PYTORCH=1) and the torch wheel's lib directory on
# LD_LIBRARY_PATH (the binary and the tests load libtorch at run time).
FEDSKY_VENV="${FEDSKY_VENV:-$(pwd)/.venv}"
export PATH="$FEDSKY_VENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export FEDSKY_TORCH_LIB="$("$FEDSKY_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$FEDSKY_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
