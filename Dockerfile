# syntax=docker/dockerfile:1
#
# The CloudPulse portal as a container: the static `cloudpulse` binary, the
# static `cloudpulse-instance` it uploads to each deployment's bucket, and
# the browser bundle, on a distroless base with CA certificates and no shell.
#
#   docker build -t cloudpulse .
#
# builds everything inside the `builder` stage. To package binaries built on
# your machine instead (faster when the target folder is warm), put them in
# dist/ and pick the `local` stage:
#
#   cargo xtask build
#   cargo build --release --target x86_64-unknown-linux-musl -p cloudpulse-server -p cloudpulse-instance
#   mkdir -p dist && cp target/x86_64-unknown-linux-musl/release/cloudpulse \
#     target/x86_64-unknown-linux-musl/release/cloudpulse-instance dist/ && cp -r target/site dist/
#   docker build --build-arg ARTIFACTS=local -t cloudpulse .
#
# The image holds no credentials or token: pass them to `docker run` (see
# docs/aws.md, "In a container").
#
# The three base images are named once, below. A tag can be moved to other
# bytes; a digest cannot. To pin them, resolve each tag to its digest where
# the registry can be reached, check it against the publisher's (Docker's
# official images, the distroless project's signed releases), and write it
# after the tag, or pass it for one build:
#
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot \
#     --format '{{json .Manifest.Digest}}'
#   docker build --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest> ...
#
# (docs/aws.md, "In a container", says the same.) The test of this file
# refuses a digest that is not `sha256:` and 64 hexadecimal digits.

ARG RUST_VERSION=1.95
ARG ARTIFACTS=builder
ARG NODE_IMAGE=node:20-bookworm-slim
ARG RUST_IMAGE=rust:${RUST_VERSION}-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

# npm packages: binaryen's wasm-opt, as `cargo xtask build` uses it.
FROM ${NODE_IMAGE} AS npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl wasm32-unknown-unknown
COPY --from=npm /usr/local/bin/node /usr/local/bin/node
WORKDIR /src
# The wasm-bindgen CLI must equal the crate in Cargo.lock exactly.
COPY Cargo.lock ./
RUN version="$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)" \
    && test -n "$version" \
    && cargo install wasm-bindgen-cli --version "$version" --locked --root /usr/local
COPY --from=npm /src/node_modules ./node_modules
COPY Cargo.toml ./
COPY .cargo .cargo
COPY migrations migrations
COPY instance instance
COPY portal portal
COPY xtask xtask
# The browser bundle, by the steps of `cargo xtask build`.
RUN cargo build -p cloudpulse-frontend --lib --target wasm32-unknown-unknown --profile wasm-release \
    && wasm-bindgen --target web --no-typescript --out-dir /out/site/pkg --out-name cloudpulse \
         target/wasm32-unknown-unknown/wasm-release/cloudpulse_frontend.wasm \
    && node node_modules/binaryen/bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
         /out/site/pkg/cloudpulse_bg.wasm -o /tmp/cloudpulse_bg.wasm \
    && mv /tmp/cloudpulse_bg.wasm /out/site/pkg/cloudpulse_bg.wasm
# Static binaries: the portal, and the instance service it deploys.
RUN cargo build --release --target x86_64-unknown-linux-musl -p cloudpulse-server -p cloudpulse-instance \
    && cp target/x86_64-unknown-linux-musl/release/cloudpulse \
          target/x86_64-unknown-linux-musl/release/cloudpulse-instance /out/ \
    && install -d /out/data

# The same layout from dist/ (see the top of this file).
FROM scratch AS local
COPY dist/cloudpulse dist/cloudpulse-instance /out/
COPY dist/site /out/site
WORKDIR /out/data

FROM ${ARTIFACTS} AS artifacts

FROM ${RUNTIME_IMAGE}
COPY --from=artifacts /out/cloudpulse /out/cloudpulse-instance /app/
COPY --from=artifacts /out/site /app/site
# The database folder, owned by the user the portal runs as.
COPY --from=artifacts --chown=65532:65532 /out/data /data
ENV CLOUDPULSE_BIND=0.0.0.0:3000 \
    CLOUDPULSE_DATABASE=/data/cloudpulse.db \
    CLOUDPULSE_SITE_ROOT=/app/site \
    CLOUDPULSE_INSTANCE_BINARY=/app/cloudpulse-instance
VOLUME ["/data"]
USER 65532:65532
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/cloudpulse", "healthcheck"]
ENTRYPOINT ["/app/cloudpulse"]
CMD ["serve"]
