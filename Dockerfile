# syntax=docker/dockerfile:1
# The flow gateway image. Two flavours from one file (compose.yaml picks one per profile):
#   gpu (default): a ROCm PyTorch base; torch comes from the base image, never from pip.
#   cpu:           a slim Python base; torch is the pinned CPU wheel from PyTorch's CPU index.
#
# torch and constraints.txt: constraints.txt pins torch==2.13.0 (the CPU build used on
# development machines), and PyPI's Linux wheel of that version is the CUDA build (GBs of
# nvidia-* wheels, useless on an AMD card). The ROCm base ships its own torch (2.6.0+rocm6.4.3
# in the tag below). So docker/pins.py re-pins the torch family to the exact versions already
# in the image and installs the project's dependencies plus the `models` extra with those pins
# in place of `torch==2.13.0`: pip sees torch satisfied and never replaces it; a dependency that
# needs another torch fails the build with a resolution error instead of pulling CUDA wheels.
# Every other package stays pinned by constraints.txt, exactly as on development machines.
# To move to a newer ROCm/torch, change BASE_IMAGE (a pinned tag; never `latest`).

ARG BASE_IMAGE=rocm/pytorch:rocm6.4.3_ubuntu24.04_py3.12_pytorch_release_2.6.0
FROM ${BASE_IMAGE}

# Empty on the ROCm base (torch is there already). The cpu profile sets it to PyTorch's CPU
# index so that the pinned torch of constraints.txt is the small CPU wheel, not the CUDA one.
ARG TORCH_INDEX_URL=""

# PIP_BREAK_SYSTEM_PACKAGES: the base image's interpreter is the one that owns the ROCm torch;
# flow installs beside it on purpose (a fresh venv would hide that torch).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

WORKDIR /app

# Dependencies first (they change less often than the code).
COPY pyproject.toml constraints.txt ./
COPY docker/pins.py docker/pins.py
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        python3 -m pip install --no-deps --index-url "$TORCH_INDEX_URL" \
            "torch==$(sed -n 's/^torch==//p' constraints.txt)"; \
    fi \
    && python3 docker/pins.py --out-constraints /tmp/constraints.txt \
        --out-requirements /tmp/requirements.txt \
    && python3 -m pip install -c /tmp/constraints.txt -r /tmp/requirements.txt

# The code, then flow itself (its dependencies are all in place and pinned by now). Editable,
# so the gateway finds its web page (web/) and saved workflows (workflows/) beside its code.
COPY . .
RUN python3 -m pip install -c /tmp/constraints.txt -e . \
    && python3 -c "import torch; print('torch', torch.__version__, 'hip', torch.version.hip)" \
    && chmod 0755 docker/entrypoint.sh \
    && mkdir -p /data/models /data/outputs /data/db

# Everything flow writes lives under /data (named volumes in compose.yaml).
# (/app/workflows is also where the editable install looks; set here so it is explicit.)
ENV FLOW_MODELS_DIR=/data/models \
    FLOW_OUTPUT_DIR=/data/outputs \
    FLOW_WORKFLOWS_DIR=/app/workflows

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["flow", "serve", "--host", "0.0.0.0", "--port", "8000"]
