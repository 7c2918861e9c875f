package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

func newDocker(ctx context.Context, cfg *config, log *slog.Logger) (scheduler, error) {
	return nil, errors.New("not supported yet")
}

// ---- shared by the Docker and Swarm backends --------------------------------

// newEngineClient reads DOCKER_HOST, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH
// and negotiates the API version on first use (Debian's engine speaks 1.41;
// the client library defaults to a newer one the engine would refuse).
// It does not contact the engine: pman starts, and recovers, while the
// engine is down.
func newEngineClient() (*client.Client, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH): %w", err)
	}
	return cli, nil
}

// engineError turns a Docker client error into an apiError; what says what
// pman was doing ("creating service chris-jid-1").
func engineError(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return err
	}
	msg := fmt.Sprintf("%s: %v", what, err)
	switch {
	case client.IsErrConnectionFailed(err):
		return errorf(eUnavailable, "%s: Docker engine unreachable: %v", what, err)
	case cerrdefs.IsNotFound(err):
		return errorf(eNotFound, "%s", msg)
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err):
		return errorf(eConflict, "%s", msg)
	case cerrdefs.IsUnauthorized(err):
		return refused(http.StatusUnauthorized, "%s", msg)
	case cerrdefs.IsPermissionDenied(err):
		return refused(http.StatusForbidden, "%s", msg)
	case cerrdefs.IsInvalidArgument(err):
		return refused(http.StatusBadRequest, "%s", msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(eUnavailable, "%s: Docker engine did not answer in time: %v", what, err)
	}
	return errorf(eUnavailable, "%s: Docker engine failed: %v", what, err)
}

// readLogs reads a log stream to its end. Without a TTY the engine
// multiplexes stdout and stderr in frames; with one it sends raw bytes.
// A TTY ends lines with \r\n: they become \n.
func readLogs(rc io.ReadCloser, tty bool) (string, error) {
	defer rc.Close()
	var buf bytes.Buffer
	var err error
	if tty {
		_, err = io.Copy(&buf, rc)
	} else {
		_, err = stdcopy.StdCopy(&buf, &buf, rc)
	}
	return strings.ReplaceAll(buf.String(), "\r\n", "\n"), err
}

// storeBase is where STOREBASE lies on the engine's hosts. For
// docker_local_volume it is found on the engine once, on first use, so pman
// can start before the engine (and before pfcon) is up.
type storeBase struct {
	cfg *config
	cli *client.Client

	mu   sync.Mutex
	path string
}

func (s *storeBase) get(ctx context.Context) (string, error) {
	if s.cfg.StorageType != "docker_local_volume" {
		return s.cfg.StoreBase, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.path != "" {
		return s.path, nil
	}
	p, err := findVolumePath(ctx, s.cli, s.cfg)
	if err != nil {
		return "", err
	}
	s.path = p
	return p, nil
}

// pfconStoreBase is where pfcon's container mounts the store.
const pfconStoreBase = "/var/local/storeBase"

// findVolumePath answers the host path of the Docker volume VOLUME_NAME, or
// else of the volume that the container labelled PFCON_SELECTOR mounts at
// /var/local/storeBase.
func findVolumePath(ctx context.Context, cli *client.Client, cfg *config) (string, error) {
	if cfg.VolumeName != "" {
		v, err := cli.VolumeInspect(ctx, cfg.VolumeName)
		if cerrdefs.IsNotFound(err) {
			return "", errorf(eUnavailable, "STORAGE_TYPE=docker_local_volume: no Docker volume VOLUME_NAME=%q", cfg.VolumeName)
		}
		if err != nil {
			return "", engineError(err, "inspecting volume "+cfg.VolumeName)
		}
		return v.Mountpoint, nil
	}
	list, err := cli.ContainerList(ctx, container.ListOptions{
		Filters: filters.NewArgs(filters.Arg("label", cfg.PfconSelector)),
	})
	if err != nil {
		return "", engineError(err, "finding the pfcon container ("+cfg.PfconSelector+")")
	}
	for _, c := range list {
		for _, m := range c.Mounts {
			if m.Destination == pfconStoreBase && m.Type == "volume" {
				return m.Source, nil
			}
		}
	}
	return "", errorf(eUnavailable, "STORAGE_TYPE=docker_local_volume: no running container labelled %s mounts a volume at %s, and VOLUME_NAME is not set", cfg.PfconSelector, pfconStoreBase)
}

// jobLabels are the labels every job carries: JOB_LABELS, and the jid so an
// operator can find pman's objects.
func jobLabels(cfg *config, jid string) map[string]string {
	l := map[string]string{"org.chrisproject.pman.jid": jid}
	for k, v := range cfg.JobLabels {
		l[k] = v
	}
	return l
}
