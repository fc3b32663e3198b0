# syntax=docker/dockerfile:1
# cesd container image: a static binary on distroless, non-root, no shell.
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#                --build-arg COMMIT=$(git rev-parse HEAD) -t cesd .
# Fleet mode (Kubernetes Secret sink and leader election, client-go) is
# built in only with --build-arg TAGS=fleet; see docs/deploy-kubernetes.md.
# Runs with a read-only root filesystem; give it a writable volume for
# wallet_dir (see docs/deploy-kubernetes.md). deploy/docker/check.sh checks
# what it can of this file where no Docker engine exists.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
ARG COMMIT=unknown
ARG TAGS=""
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# build-command-begin (deploy/docker/check.sh runs these lines as written)
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -tags "$TAGS" -trimpath -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" -o /out/cesd ./cmd/cesd
# build-command-end

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), and no shell or package manager. deploy/docker/container_test.go
# builds this stage offline and runs it under podman; TestDockerfileFinalStage
# fails on any instruction here that the test image does not mirror.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/cesd /usr/local/bin/cesd
USER 65532:65532
# 8480: callback listener (listen). 9480: /metrics, /healthz, /readyz
# (metrics_listen; set it to 0.0.0.0:9480 for scrapes and httpGet probes
# from outside the container).
EXPOSE 8480 9480
# cesd healthcheck GETs /readyz on metrics_listen; it runs inside the
# container, so the loopback default works.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["cesd", "healthcheck"]
ENTRYPOINT ["cesd"]
CMD ["run"]
