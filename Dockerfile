# syntax=docker/dockerfile:1
# Multi-stage build: the same `cargo build --release --locked` that CI runs,
# then the binary alone in a slim runtime image.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked && cp target/release/orchestrator /orchestrator

FROM debian:bookworm-slim
# ca-certificates: TLS to GitHub and the LLM endpoint; git: repository
# operations; curl: the health check. data/ exists in the image, owned by the
# runtime user, so a fresh named volume mounted there is writable too.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --create-home orchestrator \
    && mkdir -p /app/data \
    && chown orchestrator:orchestrator /app/data
COPY --from=build /orchestrator /usr/local/bin/orchestrator
WORKDIR /app
USER orchestrator
ENV ORCH_LISTEN=0.0.0.0:3000 \
    ORCH_DATA_DIR=/app/data \
    DATABASE_URL=sqlite:///app/data/orchestrator.db \
    ORCH_LOG__FORMAT=json
VOLUME ["/app/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:3000/health || exit 1
ENTRYPOINT ["orchestrator"]
CMD ["serve"]
