# attestd GPU worker image: classifies images for a node (`attestd worker`), nothing else.
#   podman build --format docker -f deploy/worker.Dockerfile -t attestd-worker .
#   podman run --rm --device nvidia.com/gpu=all -e ATTESTD_WORKER_TOKEN=… \
#       -v ./clip-weights:/models:ro attestd-worker --node https://attestd.example.org
#
# PyPI's torch wheels for Linux bundle CUDA (the nvidia-* packages), so BASE only needs
# Python >= 3.11; the host needs NVIDIA's driver and container toolkit (CDI or --gpus all).
# A CUDA base works too: --build-arg BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04 with
# python3-venv installed. TORCH_INDEX_URL picks another build, e.g.
# https://download.pytorch.org/whl/cu128 or …/cpu for a CPU-only worker.
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eu; \
    headers=$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")'); \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends g++ $headers; \
    rm -rf /var/lib/apt/lists/*
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
ARG TORCH_INDEX_URL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/attestd
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        /opt/attestd/bin/pip install -q --index-url "$TORCH_INDEX_URL" torch torchvision; \
    fi
COPY . /src
RUN /opt/attestd/bin/pip install -q "/src[classifier]"

FROM ${BASE}
# Weights are read from /models (open_clip's cache, copied from a machine that can
# download; see the README's "GPU worker at home") and never fetched at run time.
ENV PATH=/opt/attestd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATTESTD_CLASSIFIER__CACHE_DIR=/models \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/models/hf
RUN groupadd --system --gid 10001 attestd \
    && useradd --system --uid 10001 --gid attestd --home-dir /nonexistent --no-create-home \
               --shell /usr/sbin/nologin attestd \
    && mkdir -p /models /etc/attestd
COPY --from=build /opt/attestd /opt/attestd
USER attestd:attestd
VOLUME ["/models"]
ENTRYPOINT ["attestd", "worker"]
CMD ["--help"]
