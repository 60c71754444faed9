# A local stand-in for the official `rust:1.95-bookworm` image, which CI cannot pull (no image
# registry is reachable). Built by scripts/docker-test.sh, tagged rust:1.95-bookworm, so that
# Dockerfile.postgres's builder stage is used unchanged.
#
# FROM: debian:bookworm, made locally with debootstrap (scripts/docker-test.sh). The context is
# a folder holding `toolchain/` (the host's rustup toolchain 1.95.0 without its documentation),
# `cargo-bin/` (the host's cargo-pgrx 0.18.0 when it has one, which scripts/setup.sh would
# otherwise compile for minutes) and `ca-certificates/` (the host's local CAs from
# /usr/local/share/ca-certificates: where HTTPS egress is intercepted, crates.io is reached
# through them). Like the official image: RUSTUP_HOME, CARGO_HOME and PATH, gcc and libc6-dev
# for linking, ca-certificates, git and curl.
FROM debian:bookworm
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=1.95.0
# Unpinned, like the official image's own packages (buildpack-deps).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl git gcc libc6-dev make \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates/ /usr/local/share/ca-certificates/
COPY toolchain/ /usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/
COPY cargo-bin/ /usr/local/cargo/bin/
RUN update-ca-certificates \
    && for b in /usr/local/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu/bin/*; do \
        ln -s "$b" "/usr/local/cargo/bin/${b##*/}"; \
    done \
    && cargo --version && rustc --version
