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
      -ldflags "-s -w -buildid= -X main.version=${VERSION}" -o /rootfs/usr/local/bin/pman .
# Deployments start pman 6's image as `gunicorn ... pman.wsgi:application`
# (the Helm chart's command:); gunicorn is the same program, which reads
# gunicorn's command line. /pman is where the entrypoint of earlier images was.
RUN ln -s pman /rootfs/usr/local/bin/gunicorn && ln -s usr/local/bin/pman /rootfs/pman && \
    mkdir -p /rootfs/etc/ssl/certs && \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/

FROM scratch
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="pman" \
      org.opencontainers.image.description="ChRIS job manager (pman), a drop-in Go replacement: Docker Swarm, Docker/Podman, Kubernetes and Cromwell/SLURM backends" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/FNNDSC/pman"
# The binary, its gunicorn link, and CA certificates for an https Cromwell
# or a TLS Docker host. COPY keeps the symbolic links as links.
COPY --from=build /rootfs/ /
ENV PATH=/usr/local/bin
EXPOSE 5010
# Like pman 6's image: no entrypoint, and a default command that serves on
# 0.0.0.0:5010, so a compose or Kubernetes command: replaces the whole
# command line (`gunicorn -b 0.0.0.0:5010 pman.wsgi:application` works).
CMD ["pman"]
