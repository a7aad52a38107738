# canaryd: multi-stage build, small non-root runtime image.
#   docker build -t canaryd .
#   docker run -p 8080:8080 -p 9901:9901 -v $PWD/my.toml:/etc/canaryd/canaryd.toml canaryd

FROM rust:1-slim-bookworm AS build
# protoc builds the etcd client of fleet mode (docs/fleet.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/routing.rs \
    && cargo build --release --locked --features fleet \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --features fleet \
    && strip target/release/canaryd

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 canaryd \
    && useradd --system --uid 10001 --gid canaryd --home-dir /var/lib/canaryd --shell /usr/sbin/nologin canaryd \
    && mkdir -p /etc/canaryd /var/lib/canaryd \
    && chown canaryd:canaryd /var/lib/canaryd
COPY --from=build /src/target/release/canaryd /usr/local/bin/canaryd
COPY config/canaryd.toml /etc/canaryd/canaryd.toml
ENV CANARYD_CONFIG=/etc/canaryd/canaryd.toml
USER 10001:10001
WORKDIR /var/lib/canaryd
EXPOSE 8080 9901
# The admin listener must be reachable inside the container for this: set admin.listen to
# "0.0.0.0:9901" (or 127.0.0.1, which the check itself uses) in the mounted config.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9901 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/canaryd"]
CMD ["run"]
