# syntax=docker/dockerfile:1
# pman in Go: a static binary in an image with nothing else in it.
#   docker build --build-arg VERSION=$(git describe --tags --always) -t fnndsc/pman-go .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY *.go ./
ARG VERSION=0.0.0-dev
# -trimpath and a fixed build ID keep the binary the same from the same source.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -buildid= -X main.version=${VERSION}" -o /pman .

FROM scratch
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="pman" \
      org.opencontainers.image.description="ChRIS job manager (pman), a drop-in Go replacement: Docker Swarm, Docker/Podman, Kubernetes and Cromwell/SLURM backends" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/FNNDSC/pman"
# CA certificates for an https Cromwell or a TLS Docker host.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /pman /pman
EXPOSE 5010
ENTRYPOINT ["/pman"]
