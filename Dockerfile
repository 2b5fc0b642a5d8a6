# syntax=docker/dockerfile:1
# Dockerfile — the Nudgel fleet image: every role and operator tool
# (nudgel-messages, nudgel-webhooks, nudgel-dispatch, nudgel-receipts,
# nudgel-dlr, nudgel-admin, nudgel-enqueue) in one image; the Helm chart
# (helm/nudgel-fleet) picks the role by the container's command.
#
#   docker build -t nudgel:0.1.0 .
#
# Stage 1 builds a Release tree with the -dev packages scripts/bootstrap
# lists and installs it (cmake --install) into /opt/nudgel. Stage 2 is
# Debian 12 slim with only the runtime libraries, the installed tree copied
# to /usr/local, a numeric non-root user, no compiler and no shell needed at
# run time. The processes write nothing to disk (JSON logs go to stderr;
# Kafka and Postgres clients keep no files), so the root filesystem can be
# mounted read-only; /tmp is the only writable place the chart gives them
# (an emptyDir).
#
# HEALTHCHECK NONE: the image has no HTTP client; Kubernetes probes the
# roles' own /healthz and /readyz on metrics.port (see the chart).
# The build cannot run on the project's CI machine (no image registry is
# reachable there); CI lints this file with hadolint (tests/deploy).

FROM debian:12.12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config ca-certificates \
      librdkafka-dev libcurl4-openssl-dev libjansson-dev libpq-dev libssl-dev \
      libcmocka-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# --version reports the project version: .git stays out of the context
# (.dockerignore), so there is no `git describe` suffix; tag the image.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DNUDGEL_WERROR=ON \
      -DNUDGEL_BUILD_TESTS=OFF \
 && cmake --build /build \
 && cmake --install /build --prefix /opt/nudgel --strip

FROM debian:12.12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libcurl4 libjansson4 libpq5 libssl3 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 nudgel \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nudgel
COPY --from=build /opt/nudgel/ /usr/local/
ENV HOME=/tmp
WORKDIR /tmp
USER 10001:10001
EXPOSE 9464 9465 9466 9467 9468 9480
HEALTHCHECK NONE
CMD ["nudgel-messages", "--help"]
