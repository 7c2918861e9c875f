package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"
	corev1 "k8s.io/api/core/v1"
)

// storeDirs are a job's input and output directories, relative to
// STOREBASE. pfcon of 2023 and later names them; pfcon of 2022 does not, and
// then they are key-<jid>/incoming and key-<jid>/outgoing, as pman 4 mounted
// STOREBASE/key-<jid> at /share.
//
// The original pman mounted whatever the request said. We refuse a directory
// that would leave STOREBASE: the job could otherwise read or overwrite
// anything on the node.
func storeDirs(jid, inputDir, outputDir string) (in, out string, err error) {
	if inputDir == "" && outputDir == "" {
		return path.Join("key-"+jid, "incoming"), path.Join("key-"+jid, "outgoing"), nil
	}
	if in, err = safeRel("input_dir", inputDir); err != nil {
		return "", "", err
	}
	if out, err = safeRel("output_dir", outputDir); err != nil {
		return "", "", err
	}
	return in, out, nil
}

// pmanDir is pman's own directory under STOREBASE (the SLURM backend's job
// records): no job directory may lie in it.
const pmanDir = ".pman"

// safeRel checks one directory from a request and returns it clean. Leading
// and trailing slashes are stripped, as pman did. These are the rules of
// every backend; a character that only some scheduler's mount syntax cannot
// carry (':' in a Docker bind, ',' in a Podman mount option) is refused next
// to that backend (dirsProblem in podman.go, renderSlurmScript, checkBindDir).
func safeRel(field, dir string) (string, error) {
	d := strings.Trim(dir, "/")
	switch {
	case d == "":
		return "", fieldError(field, emptyDirProblem(dir))
	case strings.ContainsAny(d, "\x00\\"):
		return "", fieldError(field, fmt.Sprintf("%q must not contain NUL or '\\'", dir))
	}
	for _, seg := range strings.Split(d, "/") {
		if seg == ".." || seg == "." {
			return "", fieldError(field, fmt.Sprintf("%q must stay inside STOREBASE: no '.' or '..' segments", dir))
		}
	}
	if first, _, _ := strings.Cut(d, "/"); first == pmanDir {
		return "", fieldError(field, fmt.Sprintf("%q is pman's own directory of STOREBASE (job records), not a job's", dir))
	}
	return path.Clean(d), nil
}

// emptyDirProblem returns why an empty directory is refused: it would mount all
// of STOREBASE.
func emptyDirProblem(dir string) string {
	if dir == "" {
		return missing + " (input_dir and output_dir go together)"
	}
	return fmt.Sprintf("%q is STOREBASE itself, not a directory inside it", dir)
}

// hostPath returns where a job directory lies on the node, for backends that bind
// STOREBASE's directories (host, nfs and docker_local_volume all reduce to a
// path that is the same on every node).
func hostPath(storeBase, rel string) string {
	return path.Join(storeBase, rel)
}

// missingInput returns the field error of a job whose input directory rel
// does not exist under base, STOREBASE as the backend binds it; nil when it
// exists, or when pman does not see a directory at base (pman in a container
// without the store), where there is nothing to check. Every pfcon fills the
// input directory before it submits the job, so a missing one is a mistake
// worth answering at once, not an empty directory to run the plugin on (as
// Podman and a Kubernetes hostPath would make one) nor an error from deep in
// the scheduler. resolveJobDirs calls it with the resolved directory.
func missingInput(base, rel string) error {
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		return nil
	}
	p := hostPath(base, rel)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fieldError("input_dir", fmt.Sprintf("the input directory %s does not exist", p))
	}
	return nil
}

// kubeStorage is the volume that holds STOREBASE in a Kubernetes pod, and
// the job's two mounts of it. Every storage type is one volume for the whole
// store (a hostPath of STOREBASE on the node, the NFS export STOREBASE on
// NFS_SERVER, or the PVC VOLUME_NAME), and each directory is a subPath of
// it, as pman 6 did: a hostPath or NFS volume per directory would work too,
// but a PVC cannot be narrowed any other way. in and out come from
// storeDirs, so they are clean and never leave the store; the kubelet
// refuses a subPath that escapes through a symlink.
func kubeStorage(cfg *config, in, out string) (corev1.Volume, []corev1.VolumeMount) {
	vol := corev1.Volume{Name: kubeStoreVolume}
	switch cfg.StorageType {
	case "nfs":
		vol.NFS = &corev1.NFSVolumeSource{Server: cfg.NFSServer, Path: cfg.StoreBase}
	case "kubernetes_pvc":
		vol.PersistentVolumeClaim = &corev1.PersistentVolumeClaimVolumeSource{ClaimName: cfg.VolumeName}
	default: // host; loadConfig accepts no other for Kubernetes
		vol.HostPath = &corev1.HostPathVolumeSource{Path: cfg.StoreBase}
	}
	return vol, []corev1.VolumeMount{
		{Name: kubeStoreVolume, MountPath: incomingDir, SubPath: in, ReadOnly: true},
		{Name: kubeStoreVolume, MountPath: outgoingDir, SubPath: out},
	}
}

// readStoreFile returns the tail (at most maxRead bytes) of file p, only if
// p lies under base, also once its symlinks are resolved: a scheduler's
// answer, or a plugin that made its output a symlink, must not make pman
// read any other file of this host. The resolved path is opened with
// O_NOFOLLOW, so a last component swapped for a symlink in between fails; a
// directory above it swapped in between is not caught (that needs openat2's
// RESOLVE_BENEATH).
func readStoreFile(base, p string, maxRead int64) ([]byte, error) {
	base = filepath.Clean(base)
	clean := filepath.Clean(p)
	if !filepath.IsAbs(clean) || !within(base, clean) {
		return nil, fmt.Errorf("%s is not under %s", p, base)
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(clean)
	if err != nil {
		return nil, err
	}
	if !within(realBase, real) {
		return nil, fmt.Errorf("%s leads out of %s through a symlink", p, base)
	}
	// O_NONBLOCK: a FIFO planted there must not hang the GET.
	f, err := os.OpenFile(real, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", p)
	}
	if st.Size() > maxRead {
		if _, err := f.Seek(st.Size()-maxRead, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, maxRead))
}

// within returns whether path p is dir or lies below it; both are clean.
func within(dir, p string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
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

// get returns STOREBASE as the engine's hosts see it.
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

// findVolumePath returns the host path of the Docker volume VOLUME_NAME, or
// else of the store that the running containers labelled PFCON_SELECTOR
// mount at /var/local/storeBase (a volume or a bind, as pman 6 took either).
// pman 6 took the first container the engine listed; we take the store
// only when every such container mounts the same one (pfcon's replicas
// do), and otherwise refuse, naming them: a job's output written into
// another ChRIS's store would be lost without a word.
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
	var found, source string
	for _, c := range list {
		for _, m := range c.Mounts {
			if m.Destination != pfconStoreBase || (m.Type != mount.TypeVolume && m.Type != mount.TypeBind) {
				continue
			}
			name := c.ID[:min(12, len(c.ID))]
			if len(c.Names) > 0 {
				name = strings.TrimPrefix(c.Names[0], "/")
			}
			if source != "" && m.Source != source {
				return "", errorf(eUnavailable, "STORAGE_TYPE=docker_local_volume: the containers labelled %s mount different stores at %s (%s: %s; %s: %s): set VOLUME_NAME, or a PFCON_SELECTOR only one pfcon matches",
					cfg.PfconSelector, pfconStoreBase, found, source, name, m.Source)
			}
			found, source = name, m.Source
		}
	}
	if source == "" {
		return "", errorf(eUnavailable, "STORAGE_TYPE=docker_local_volume: no running container labelled %s mounts a volume at %s, and VOLUME_NAME is not set", cfg.PfconSelector, pfconStoreBase)
	}
	return source, nil
}

// resolveJobDirs returns a copy of j whose input and output directories are
// the paths they lead to on the store at base (STOREBASE on the engine's
// hosts), every symlink in them followed, or the field error of one that
// does not stay in the store. It is the directory policy of every backend
// that binds host paths, called in create before the first scheduler call,
// and what they mount is its answer: a link swapped after the check cannot
// redirect the mount.
//
// A job writes its output directory, and in ChRIS one plugin's output is
// the next one's input: a job can leave a symlink there (out/root -> /,
// out/up -> ../../..), and the text of a path says nothing of where it
// leads. So each directory is resolved component by component from
// STOREBASE (resolved itself: STOREBASE may be a link), and must end below
// it, not at it, and not in pman's own .pman. A directory that does not
// exist yet (an output the engine or the script creates) is resolved as
// far as it exists, the rest appended: no link can lie below a missing
// directory. The input directory must exist (missingInput's rule).
//
// Where pman does not see a directory at base (pman in a container without
// the store), there is nothing to check: j is answered as it is, and what
// protects the job is the scheduler's own (README, "Symlinks in job
// directories").
func resolveJobDirs(base string, j *jobSpec) (*jobSpec, error) {
	if fi, err := os.Stat(base); err != nil || !fi.IsDir() {
		return j, nil
	}
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return nil, errorf(eInternal, "STOREBASE %s: %v", base, err)
	}
	out := *j
	for _, d := range []struct {
		field string
		rel   *string
	}{{"input_dir", &out.InputDir}, {"output_dir", &out.OutputDir}} {
		r, err := resolveInStore(realBase, d.field, *d.rel)
		if err != nil {
			return nil, err
		}
		*d.rel = r
	}
	if err := missingInput(base, out.InputDir); err != nil {
		return nil, err
	}
	return &out, nil
}

// maxLinks bounds the symlinks one path may go through, as Linux does
// (ELOOP after 40).
const maxLinks = 40

// errLinkLoop is resolvePath's answer for a path through more than maxLinks
// links: a loop, which no engine could mount either.
var errLinkLoop = fmt.Errorf("more than %d symlinks (a loop)", maxLinks)

// resolveInStore returns where the job directory rel (clean, from safeRel)
// leads under realBase, STOREBASE with its own links resolved, as a path
// relative to it; or the field error of one that leads out of it, to it, or
// into .pman.
func resolveInStore(realBase, field, rel string) (string, error) {
	p, link, err := resolvePath(realBase, rel)
	if errors.Is(err, errLinkLoop) {
		return "", fieldError(field, fmt.Sprintf("%q goes through %v", rel, err))
	}
	if err != nil {
		return "", errorf(eInternal, "%s %q: pman cannot check where it leads: %v", field, rel, err)
	}
	via := ""
	if link != "" {
		via = " through the symlink " + link
	}
	switch {
	case !within(realBase, p):
		return "", fieldError(field, fmt.Sprintf("%q leads out of STOREBASE%s", rel, via))
	case p == realBase:
		return "", fieldError(field, fmt.Sprintf("%q leads to STOREBASE itself%s, not to a directory inside it", rel, via))
	case within(filepath.Join(realBase, pmanDir), p):
		return "", fieldError(field, fmt.Sprintf("%q leads into pman's own directory %s of STOREBASE%s", rel, pmanDir, via))
	}
	return strings.TrimPrefix(p, realBase+"/"), nil
}

// resolvePath returns the clean absolute path that rel leads to from the
// directory root, following every symlink on the way as the kernel would;
// components that do not exist are taken as they are (a missing directory
// holds no links). link is the first symlink followed, "name -> target"
// with name relative to root when it lies there, for messages; "" when
// none was.
func resolvePath(root, rel string) (p, link string, err error) {
	p = root
	todo := strings.Split(rel, "/")
	missing := false
	for n := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			p = filepath.Dir(p)
			continue
		}
		next := filepath.Join(p, c)
		if missing {
			p = next
			continue
		}
		fi, err := os.Lstat(next)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			// Nothing below here exists: the rest is text. (A ".." in it
			// is taken textually, as MkdirAll and the engines clean it.)
			missing = true
			p = next
			continue
		}
		if err != nil {
			return "", "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			p = next
			continue
		}
		if n++; n > maxLinks {
			return "", "", errLinkLoop
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", "", err
		}
		if link == "" {
			name := next
			if within(root, next) {
				name = strings.TrimPrefix(next, root+"/")
			}
			link = name + " -> " + target
		}
		if filepath.IsAbs(target) {
			p = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return p, link, nil
}
