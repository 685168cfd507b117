# attestd node image: `podman build -t attestd .` (or docker build) from a clone.
#
# BASE is any Debian-based image with Python >= 3.11 and its venv module; the default is
# the official Python image. Where no registry is reachable, bootstrap one from Debian's
# packages (deploy/container/debian-base.sh) and pass --build-arg BASE=localhost/….
ARG BASE=python:3.11-slim-bookworm

# -- build: a compiler for pdqhash (and any other dependency without a wheel) ----------------
FROM ${BASE} AS build
ARG DEBIAN_FRONTEND=noninteractive
# The official image ships Python's headers; a plain Debian python3 needs python3-dev.
RUN set -eu; \
    headers=$(python3 -c 'import os, sysconfig; print("" if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else "python3-dev")'); \
    apt-get update -qq; \
    apt-get install -y -qq --no-install-recommends g++ $headers; \
    rm -rf /var/lib/apt/lists/*
# Offline builds: put wheels in wheels/ (pip wheel -w wheels '.[postgres]') and build with
# --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheels.
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
ARG PIP_INDEX_URL=
ARG EXTRAS=postgres
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/attestd
COPY . /src
RUN /opt/attestd/bin/pip install -q "/src[${EXTRAS}]"

# -- runtime: the venv and nothing to compile with ---------------------------------------------
FROM ${BASE}
# Keys, the SQLite database, kept blobs and the config live in /data (one volume).
ENV PATH=/opt/attestd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATTESTD_CONFIG=/data/config.toml \
    ATTESTD_NODE__DATA_DIR=/data \
    ATTESTD_DATABASE__URL=sqlite:////data/attestd.db \
    ATTESTD_SERVER__HOST=0.0.0.0 \
    ATTESTD_SERVER__PORT=8470
# A fixed uid so a bind-mounted /data can be chowned to it from the host (10001:10001).
RUN groupadd --system --gid 10001 attestd \
    && useradd --system --uid 10001 --gid attestd --home-dir /data --no-create-home \
               --shell /usr/sbin/nologin attestd \
    && mkdir -p /data && chown attestd:attestd /data && chmod 0700 /data
COPY --from=build /opt/attestd /opt/attestd
COPY deploy/container/entrypoint.sh /usr/local/bin/attestd-entrypoint
USER attestd:attestd
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8470
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('ATTESTD_SERVER__PORT', '8470'), timeout=4)"]
ENTRYPOINT ["/usr/local/bin/attestd-entrypoint"]
CMD ["serve"]
