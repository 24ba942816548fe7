# syntax=docker/dockerfile:1
# Build stage: compile a release binary. Dependencies are cached in their own layer.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked && rm -rf src
COPY src src
COPY migrations migrations
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Run stage: a slim image with CA roots (rustls verifies fal's certificates) and no toolchain.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 fluxgate
COPY --from=build /src/target/release/fluxgate /usr/local/bin/fluxgate
USER fluxgate
ENV PORT=8080 FLUXGATE_LOG_FORMAT=json
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["fluxgate"]
CMD ["serve"]
