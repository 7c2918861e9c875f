package main

import (
	"fmt"
	"path"
	"strings"

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

// safeRel checks one directory from a request and returns it clean. Leading
// and trailing slashes are stripped, as pman did.
func safeRel(field, dir string) (string, error) {
	d := strings.Trim(dir, "/")
	switch {
	case d == "":
		return "", fieldError(field, emptyDirProblem(dir))
	case strings.ContainsAny(d, "\x00\\:,"):
		// ':' and ',' separate the parts of a Docker bind or a mount option.
		return "", fieldError(field, fmt.Sprintf("%q must not contain NUL, '\\', ':' or ','", dir))
	}
	for _, seg := range strings.Split(d, "/") {
		if seg == ".." || seg == "." {
			return "", fieldError(field, fmt.Sprintf("%q must stay inside STOREBASE: no '.' or '..' segments", dir))
		}
	}
	return path.Clean(d), nil
}

// emptyDirProblem says why an empty directory is refused: it would mount all
// of STOREBASE.
func emptyDirProblem(dir string) string {
	if dir == "" {
		return missing + " (input_dir and output_dir go together)"
	}
	return fmt.Sprintf("%q is STOREBASE itself, not a directory inside it", dir)
}

// hostPath is where a job directory lies on the node, for backends that bind
// STOREBASE's directories (host, nfs and docker_local_volume all reduce to a
// path that is the same on every node).
func hostPath(storeBase, rel string) string {
	return path.Join(storeBase, rel)
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
