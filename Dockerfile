# s3syncer container image.
#
#   podman build -t s3syncer:dev .           # or: docker build -t s3syncer:dev .
#   podman run --rm s3syncer:dev --version   # -> "s3syncer X.Y.Z"
#
# Three stages: "build" makes the wheel and a virtualenv holding it, the
# `replicate` extra (boto3) and every dependency; "mc" fetches the MinIO client
# only when SYNC_CLIENT=mc; the final stage installs tini (and rclone) from
# Debian and copies in only those results: no compiler, no pip, no curl.
#
# What the build fetches, and how each file is checked:
#   - the base image: pinned by tag and digest (PYTHON_IMAGE below);
#   - Python packages from PyPI: every version pinned and every file checked
#     against its SHA-256 (pip --require-hashes, requirements/*.txt);
#   - tini and rclone from Debian: pinned versions, checked by apt against the
#     signed archive;
#   - mc (only with SYNC_CLIENT=mc): from dl.min.io, checked against its SHA-256.
#
# Base image: pinned by tag AND by digest, so a rebuild gets the same bytes.
# The digest is python:3.12.7-slim-bookworm's multi-arch index. To move to a
# newer Python or Debian release, replace both, e.g. with the output of
# `docker buildx imagetools inspect python:3.12-slim-bookworm`. Any Debian
# bookworm image with python3 and python3-venv works as a base: CI builds one
# from Debian's archive (debootstrap) and passes it with
#   --build-arg PYTHON_IMAGE=localhost/s3syncer-base:bookworm
ARG PYTHON_IMAGE=python:3.12.7-slim-bookworm@sha256:032c52613401895aa3d418a4c563d2d05f993bc3ecc065c8f4e2280978acd249

# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest out of the context).
COPY requirements ./requirements
COPY pyproject.toml README.md ./
COPY src ./src

# 1. A throwaway virtualenv with pip and the hash-pinned setuptools, which
#    builds the wheel without build isolation (isolation would fetch an
#    unpinned setuptools).
# 2. The runtime virtualenv, without pip (the final image needs none): the
#    hash-locked dependencies of s3syncer[replicate], wheels only (no
#    compiler), then s3syncer's own wheel. pip byte-compiles as it installs,
#    which matters: the runtime root filesystem is read-only.
# 3. `pip check` fails when requirements/image.txt misses a dependency that
#    pyproject.toml gained; then a smoke test of the console script and boto3.
RUN python3 -m venv /tmp/build \
    && /tmp/build/bin/pip install --require-hashes --no-deps --only-binary=:all: \
       -r requirements/build.txt \
    && /tmp/build/bin/pip wheel --no-build-isolation --no-deps --wheel-dir /wheels . \
    && python3 -m venv --without-pip /opt/s3syncer \
    && /tmp/build/bin/pip --python /opt/s3syncer/bin/python install \
       --require-hashes --no-deps --only-binary=:all: -r requirements/image.txt \
    && /tmp/build/bin/pip --python /opt/s3syncer/bin/python install --no-deps /wheels/*.whl \
    && /tmp/build/bin/pip --python /opt/s3syncer/bin/python check \
    && /opt/s3syncer/bin/s3syncer --version \
    && /opt/s3syncer/bin/python -c 'import boto3'

# ---------------------------------------------------------------------------
# The MinIO client, only with --build-arg SYNC_CLIENT=mc (it needs dl.min.io,
# which is no package registry). Otherwise this stage only makes an empty
# /out. Pinned to one release and verified against its SHA-256.
#
# Release and checksums: RELEASE.2024-11-21T17-21-54Z, the sums that MinIO's
# Homebrew formula (mc.rb) lists for
#   https://dl.min.io/client/mc/release/linux-{amd64,arm64}/archive/mc.RELEASE.2024-11-21T17-21-54Z
# (MinIO also publishes each one next to the binary as <url>.sha256sum).
# To pin another release, pass all three: MC_RELEASE, MC_SHA256_AMD64 and
# MC_SHA256_ARM64. An empty checksum fails the build; it never skips the check.
FROM ${PYTHON_IMAGE} AS mc

ARG SYNC_CLIENT=rclone
ARG TARGETARCH
ARG MC_RELEASE=RELEASE.2024-11-21T17-21-54Z
ARG MC_SHA256_AMD64=0312010a9d0aa7a52b4dfb14330f289ee4e295def80b3a3f530d4f38c1b71da0
ARG MC_SHA256_ARM64=a6b0b36ccd4674524674a032d10b1a474ffe4187e93d83f53560092c86c57ac4

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Python's urllib does the download: no curl/wget to install in this stage.
RUN mkdir /out; \
    if [ "${SYNC_CLIENT}" != mc ]; then exit 0; fi; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "${arch}" in \
      amd64) sum="${MC_SHA256_AMD64}" ;; \
      arm64) sum="${MC_SHA256_ARM64}" ;; \
      *) echo "no mc checksum for architecture '${arch}'" >&2; exit 1 ;; \
    esac; \
    if [ -z "${MC_RELEASE}" ] || [ -z "${sum}" ]; then \
      echo "MC_RELEASE and the mc checksum for ${arch} must be set" >&2; exit 1; \
    fi; \
    url="https://dl.min.io/client/mc/release/linux-${arch}/archive/mc.${MC_RELEASE}"; \
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "${url}" /tmp/mc \
    && echo "${sum}  /tmp/mc" | sha256sum --check --strict - \
    && install -m 0755 /tmp/mc /out/mc \
    && rm /tmp/mc

# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# A sync client, for buckets that are not a Distribution registry's storage
# (a zot registry's, other data: docs/registries/zot.md). A registry's bucket
# needs none: `s3syncer replicate` alone keeps its mirror, events and full
# passes both, and a sync of that bucket beside it is unsafe (docs/replicate.md:
# "One command, both ways", "Why not rclone sync beside it").
#   rclone (default): Debian's package, /usr/bin/rclone, as on a Debian host;
#   mc:               the MinIO client, /usr/local/bin/mc (needs dl.min.io);
#   none:             no sync client (replicate only, as manifest/k8s.yaml runs).
ARG SYNC_CLIENT=rclone
# Debian versions, pinned up to the rebuild suffix (+bN differs per arch).
ARG TINI_VERSION=0.19.0-1*
ARG RCLONE_VERSION=1.60.1+dfsg-2*

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# tini as PID 1: reaps zombies and forwards SIGTERM/SIGINT/SIGHUP to s3syncer.
# The fixed uid/gid 10001 matches runAsUser/fsGroup in manifest/k8s.yaml.
RUN case "${SYNC_CLIENT}" in \
      rclone|mc|none) ;; \
      *) echo "SYNC_CLIENT must be rclone, mc or none, not '${SYNC_CLIENT}'" >&2; exit 1 ;; \
    esac; \
    apt-get update \
    && apt-get install -y --no-install-recommends "tini=${TINI_VERSION}" \
    && if [ "${SYNC_CLIENT}" = rclone ]; then \
         apt-get install -y --no-install-recommends "rclone=${RCLONE_VERSION}"; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 s3syncer \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/s3syncer \
       --create-home --shell /usr/sbin/nologin s3syncer \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/s3syncer

COPY --from=build /opt/s3syncer /opt/s3syncer
COPY --from=mc /out/ /usr/local/bin/

ENV PATH=/opt/s3syncer/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/home/s3syncer \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/s3syncer
EXPOSE 9999

# The default command serves on all interfaces (the CLI's own default is
# localhost only) with the config at the path manifest/k8s.yaml mounts.
# "serve" sits in CMD, not ENTRYPOINT, so the other subcommands still work:
#   podman run --rm IMAGE --version
#   podman run --rm -v "$PWD/cfg.yaml:/cfg.yaml:ro" IMAGE check --config /cfg.yaml
#   podman run IMAGE serve --config /cfg.yaml --listen 0.0.0.0:8080 --log-format json
ENTRYPOINT ["/usr/bin/tini", "--", "s3syncer"]
CMD ["serve", "--config", "/etc/s3syncer/config.yaml", "--listen", "0.0.0.0:9999"]
