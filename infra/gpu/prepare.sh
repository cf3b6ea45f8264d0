#!/usr/bin/env bash
# Stage what the GPU runs need in ./.gpu (git-ignored via .git/info/exclude; never committed):
# the AG News / 20 Newsgroups files from ../shared/data, all-MiniLM-L6-v2 with its weights
# stored as fp16 (45 MB, so the tree that travels stays under 64 MiB; upcast on load) and
# pydantic wheels for Python 3.12 (the GPU image lacks pydantic).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx "/.gpu/" .git/info/exclude || echo "/.gpu/" >> .git/info/exclude
mkdir -p .gpu/data .gpu/minilm .gpu/whl
cp -r ../shared/data/ag_news ../shared/data/20newsgroups .gpu/data/
.venv/bin/python - <<'PY'
import shutil
from pathlib import Path
from safetensors.torch import load_file, save_file
from retraining.bases.resolve import minilm_folder
src, dst = minilm_folder(), Path(".gpu/minilm")
for f in ["config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
    shutil.copy(src / f, dst / f)
sd = load_file(str(src / "model.safetensors"))
save_file({k: v.half().contiguous() for k, v in sd.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
PY
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types typing-inspection
du -sh .gpu
