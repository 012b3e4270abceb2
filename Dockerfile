# syntax=docker/dockerfile:1
# One build stage, two small images: the server (the default target) and the
# Anypoint simulator (--target anypoint-sim). Base images are fully qualified
# so daemonless builders (podman, buildah) need no short-name resolution;
# GO_IMAGE and RUNTIME_IMAGE may name local stand-ins where no registry is
# reachable (scripts/local-base-images.sh, README "Container image").
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
# The caches make the second target (and rebuilds) reuse compiled packages.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/server ./cmd/anypoint-sim ./cmd/mcpguardctl \
    && mv /out/server /out/mcpguard

FROM ${RUNTIME_IMAGE} AS anypoint-sim
COPY --from=build /out/anypoint-sim /anypoint-sim
# 65532 is distroless's nonroot; numeric so any base runs it unprivileged.
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/anypoint-sim"]
CMD ["-addr", ":8081"]

FROM ${RUNTIME_IMAGE} AS server
COPY --from=build /out/mcpguard /mcpguard
COPY --from=build /out/mcpguardctl /mcpguardctl
USER 65532:65532
ENV MCPGUARD_HTTP_ADDR=:8080
EXPOSE 8080
# The image has no shell or curl: the binary probes its own /readyz. Podman
# and buildah keep HEALTHCHECK only in the docker image format (make image
# sets BUILDAH_FORMAT=docker).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["/mcpguard", "healthcheck"]
ENTRYPOINT ["/mcpguard"]
CMD ["serve"]
