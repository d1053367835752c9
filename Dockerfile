# s3syncer container image.
#
#   docker build -t s3syncer:dev .
#   docker run --rm s3syncer:dev --version    # -> "s3syncer X.Y.Z"
#
# Three stages: "build" makes the wheel and a virtualenv holding it and its
# dependencies, "mc" fetches and verifies the MinIO client, and the final stage
# copies in only those two results: no compiler, no pip run, no curl.
#
# Base image: pinned by tag AND by digest, so a rebuild gets the same bytes.
# The digest is python:3.12.7-slim-bookworm's multi-arch index as public,
# Renovate-maintained Dockerfiles pin it (it was not pulled where this file was
# written: a wrong digest fails the build, it cannot slip through). To move to
# a newer Python or Debian release, replace both, e.g. with the
# output of `docker buildx imagetools inspect python:3.12-slim-bookworm`, or
# override at build time: --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm
ARG PYTHON_IMAGE=python:3.12.7-slim-bookworm@sha256:032c52613401895aa3d418a4c563d2d05f993bc3ecc065c8f4e2280978acd249

# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY src ./src

# 1. The wheel: setuptools comes from PyPI in pip's isolated build env.
# 2. A virtualenv without pip (the final image needs none), filled with the
#    wheel and its dependencies by the outer pip. All deps ship wheels or are
#    pure Python, so no compiler is needed. pip byte-compiles as it installs,
#    which matters: the runtime root filesystem is read-only.
# 3. A smoke test of the installed console script.
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/s3syncer \
    && pip --python /opt/s3syncer/bin/python install /wheels/*.whl \
    && /opt/s3syncer/bin/s3syncer --version

# ---------------------------------------------------------------------------
# The sync client. Pinned to one release and verified against its SHA-256.
#
# Release and checksums: RELEASE.2024-11-21T17-21-54Z, the sums that MinIO's
# Homebrew formula (mc.rb) lists for
#   https://dl.min.io/client/mc/release/linux-{amd64,arm64}/archive/mc.RELEASE.2024-11-21T17-21-54Z
# (MinIO also publishes each one next to the binary as <url>.sha256sum).
# To pin another release, pass all three: MC_RELEASE, MC_SHA256_AMD64 and
# MC_SHA256_ARM64. An empty checksum fails the build; it never skips the check.
#
# Swapping mc for another client (then also change `cmd`/`args` in the config):
#   rclone: fetch https://downloads.rclone.org/vX.Y.Z/rclone-vX.Y.Z-linux-${TARGETARCH}.zip,
#           check it against that release's SHA256SUMS, unzip, and copy `rclone`
#           to /usr/local/bin/rclone below instead of mc (config: RCLONE_CONFIG).
#   aws:    the AWS CLI v2 is an installer, not one binary: fetch
#           awscli-exe-linux-$(uname -m)-X.Y.Z.zip, verify it, run
#           `./aws/install --install-dir /opt/aws-cli --bin-dir /usr/local/bin` in
#           this stage and COPY /opt/aws-cli and /usr/local/bin/aws across
#           (or `pip install awscli==X.Y.Z` into the venv in the build stage).
FROM ${PYTHON_IMAGE} AS mc

ARG TARGETARCH
ARG MC_RELEASE=RELEASE.2024-11-21T17-21-54Z
ARG MC_SHA256_AMD64=0312010a9d0aa7a52b4dfb14330f289ee4e295def80b3a3f530d4f38c1b71da0
ARG MC_SHA256_ARM64=a6b0b36ccd4674524674a032d10b1a474ffe4187e93d83f53560092c86c57ac4

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Python's urllib does the download: no curl/wget to install in this stage.
RUN arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "${arch}" in \
      amd64) sum="${MC_SHA256_AMD64}" ;; \
      arm64) sum="${MC_SHA256_ARM64}" ;; \
      *) echo "no mc checksum for architecture '${arch}'" >&2; exit 1 ;; \
    esac; \
    if [ -z "${MC_RELEASE}" ] || [ -z "${sum}" ]; then \
      echo "MC_RELEASE and the mc checksum for ${arch} must be set" >&2; exit 1; \
    fi; \
    url="https://dl.min.io/client/mc/release/linux-${arch}/archive/mc.${MC_RELEASE}"; \
    python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "${url}" /tmp/mc \
    && echo "${sum}  /tmp/mc" | sha256sum --check --strict - \
    && install -m 0755 /tmp/mc /usr/local/bin/mc \
    && rm /tmp/mc

# ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# tini as PID 1: reaps zombies and forwards SIGTERM/SIGINT/SIGHUP to s3syncer.
# The version is pinned up to Debian's rebuild suffix (+bN differs per arch).
# The fixed uid/gid 10001 matches runAsUser/fsGroup in manifest/k8s.yaml.
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'tini=0.19.0-1*' \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 s3syncer \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/s3syncer \
       --create-home --shell /usr/sbin/nologin s3syncer \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/s3syncer

COPY --from=build /opt/s3syncer /opt/s3syncer
COPY --from=mc /usr/local/bin/mc /usr/local/bin/mc

ENV PATH=/opt/s3syncer/bin:$PATH \
    HOME=/home/s3syncer \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER 10001:10001
WORKDIR /home/s3syncer
EXPOSE 9999

# The default command serves on all interfaces (the CLI's own default is
# localhost only) with the config at the path manifest/k8s.yaml mounts.
# "serve" sits in CMD, not ENTRYPOINT, so the other subcommands still work:
#   docker run --rm IMAGE --version
#   docker run --rm -v "$PWD/cfg.yaml:/cfg.yaml:ro" IMAGE check --config /cfg.yaml
#   docker run IMAGE serve --config /cfg.yaml --listen 0.0.0.0:8080 --log-format json
ENTRYPOINT ["/usr/bin/tini", "--", "s3syncer"]
CMD ["serve", "--config", "/etc/s3syncer/config.yaml", "--listen", "0.0.0.0:9999"]
