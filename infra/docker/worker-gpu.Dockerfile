# GPU inference worker: ONNX Runtime's CUDA execution provider (pyproject extra "gpu", which
# brings onnxruntime-gpu) on NVIDIA's CUDA + cuDNN runtime image. onnxruntime-gpu needs
# CUDA 12 and cuDNN 9; the host needs an NVIDIA driver and the NVIDIA Container Toolkit.
# Ubuntu 24.04's Python is 3.12 (pyproject allows 3.11 and 3.12).
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}
ARG EXTRAS="gpu"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NEWSFLOW_HOME=/var/lib/newsflow \
    VIRTUAL_ENV=/opt/newsflow PATH=/opt/newsflow/bin:$PATH
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/newsflow
WORKDIR /app
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY retraining ./retraining
COPY monitoring ./monitoring
# onnxruntime (a core dependency) and onnxruntime-gpu both install the `onnxruntime` package
# folder, so they must not share an environment, and uninstalling the CPU one afterwards
# deletes files the GPU one needs too. Hence: install, remove both, put onnxruntime-gpu back
# alone at the version the resolver chose, and fail the build without the CUDA provider.
RUN set -eu; \
    pip install --no-cache-dir ".[${EXTRAS}]"; \
    ort="$(pip show onnxruntime-gpu | sed -n 's/^Version: //p')"; \
    if [ -z "$ort" ]; then echo "the '${EXTRAS}' extra brought no onnxruntime-gpu" >&2; exit 1; fi; \
    pip uninstall -y onnxruntime onnxruntime-gpu; \
    pip install --no-cache-dir --no-deps "onnxruntime-gpu==${ort}"; \
    python -c "import onnxruntime as o; p = o.get_available_providers(); assert 'CUDAExecutionProvider' in p, p"; \
    useradd --system --home-dir /var/lib/newsflow --create-home newsflow
USER newsflow
ENTRYPOINT ["newsflow"]
