# syntax=docker/dockerfile:1
# One image with all six Marquee binaries (the five services and psp-sandbox, the
# sandbox payment provider, which only non-prod overlays run); each Kubernetes workload
# picks its binary with `command` (k8s/base, k8s/overlays/dev/sandbox-psp.yaml). Build
# from the repository root:
#   docker build -t marquee:dev .

# --- build: every binary of the workspace, release profile, exactly the locked deps
FROM rust:1.95-bookworm AS builder
WORKDIR /build
# protoc comes from the protoc-bin-vendored crate (proto/build.rs) and rustls needs no
# system TLS library, so the Rust image's toolchain and C compiler are all it takes.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/gateway target/release/booking-svc target/release/pay-svc \
          target/release/realtime-svc target/release/search-svc target/release/psp-sandbox /out/

# --- run: glibc and CA certificates only, no shell, no package manager
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="marquee" \
      org.opencontainers.image.description="Marquee: gateway, booking-svc, pay-svc, realtime-svc, search-svc and the psp-sandbox payment provider" \
      org.opencontainers.image.licenses="MIT"
COPY --from=builder /out/ /usr/local/bin/
# search-svc's compiled-in default path points into the build tree; SEARCH_SYNONYMS
# points at this copy (also set in k8s/base/search-svc/config.env).
COPY search-svc/synonyms.txt /usr/share/marquee/synonyms.txt
ENV SEARCH_SYNONYMS=/usr/share/marquee/synonyms.txt
# The uid the manifests run as (runAsUser: 10001); it owns nothing in the image.
USER 10001:10001
# gateway 8080; gRPC 50051-50054 (booking, pay, realtime, search); metrics 9100-9104;
# psp-sandbox's HTTP 50060.
EXPOSE 8080 50051 50052 50053 50054 50060 9100 9101 9102 9103 9104
ENTRYPOINT ["/usr/local/bin/gateway"]
