package main

// The batch/v1 Job that runs one request.

import (
	"fmt"
	"maps"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// buildKubeJob returns the Job for one request. The Job and its pods carry
// jobLabels.
func buildKubeJob(cfg *config, s *jobSpec, uid, gid *int64) *batchv1.Job {
	workers := int32(s.Workers)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: s.JID, Labels: jobLabels(cfg, s.JID)},
		Spec: batchv1.JobSpec{
			Parallelism: new(workers),
			Completions: new(workers),
			// A plugin that fails is reported, not retried: its outputs
			// would be half-written.
			BackoffLimit:            new(int32(0)),
			TTLSecondsAfterFinished: new(int32(kubeTTLAfterFinished)),
			ActiveDeadlineSeconds:   new(int64(kubeActiveDeadline)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: jobLabels(cfg, s.JID)},
				Spec:       kubePodSpec(cfg, s, uid, gid),
			},
		},
	}
}

// kubePodSpec returns the spec of the job's pods: one container that runs
// the command as uid:gid (nil: the image's), with the store mounted.
func kubePodSpec(cfg *config, s *jobSpec, uid, gid *int64) corev1.PodSpec {
	volumes, mounts := kubeVolumes(cfg, s)
	var pullSecrets []corev1.LocalObjectReference
	for _, name := range cfg.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: name})
	}
	env := make([]corev1.EnvVar, 0, len(s.Env))
	for _, e := range s.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	return corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		// A plugin is someone else's code: it gets no API token of the
		// namespace and no environment of its Services.
		AutomountServiceAccountToken: new(false),
		EnableServiceLinks:           new(false),
		// The Pod Security "restricted" policy wants a seccomp profile, and
		// the runtime's default is what a plain Docker or Podman container
		// gets anyway.
		SecurityContext: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		NodeSelector:     maps.Clone(cfg.NodeSelector),
		ImagePullSecrets: pullSecrets,
		Volumes:          volumes,
		Containers: []corev1.Container{{
			Name:         kubeContainer,
			Image:        s.Image,
			Command:      s.Cmd,
			Env:          env,
			Resources:    corev1.ResourceRequirements{Limits: kubeLimits(cfg, s)},
			VolumeMounts: mounts,
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: new(false),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				RunAsUser:                uid,
				RunAsGroup:               gid,
				// "restricted" wants it too; it holds only when the user is
				// known not to be root (an image's own user may be, so it
				// is not set then).
				RunAsNonRoot: nonRoot(uid),
			},
		}},
	}
}

// kubeLimits returns the container's limits, or nil for none. A limit of 0
// is what pfcon sends when it has none; Kubernetes would take "0"
// literally, so it is left out.
func kubeLimits(cfg *config, s *jobSpec) corev1.ResourceList {
	limits := corev1.ResourceList{}
	if !cfg.IgnoreLimits {
		if s.CPULimit > 0 {
			limits[corev1.ResourceCPU] = resource.MustParse(fmt.Sprintf("%dm", s.CPULimit))
		}
		if s.MemoryLimit > 0 {
			limits[corev1.ResourceMemory] = resource.MustParse(fmt.Sprintf("%dMi", s.MemoryLimit))
		}
	}
	// Only the resource: the device plugin sets what the container needs.
	// pfcon removed the NVIDIA_* variables pman used to add.
	if s.GPULimit > 0 {
		limits["nvidia.com/gpu"] = *resource.NewQuantity(int64(s.GPULimit), resource.DecimalSI)
	}
	if len(limits) == 0 {
		return nil
	}
	return limits
}

// kubeVolumes returns the pod's volumes and the container's mounts of them:
// the store, and a bigger /dev/shm when SHM_SIZE asks for one.
func kubeVolumes(cfg *config, s *jobSpec) ([]corev1.Volume, []corev1.VolumeMount) {
	storeVol, mounts := kubeStorage(cfg, s.InputDir, s.OutputDir)
	volumes := []corev1.Volume{storeVol}
	if cfg.ShmSizeMiB > 0 {
		// Kubernetes gives every container a 64 MiB /dev/shm and has no
		// shm-size option; a memory-backed emptyDir is the way to a bigger one.
		size := resource.MustParse(fmt.Sprintf("%dMi", cfg.ShmSizeMiB))
		volumes = append(volumes, corev1.Volume{Name: kubeShmVolume, VolumeSource: corev1.VolumeSource{
			EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &size},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: kubeShmVolume, MountPath: "/dev/shm"})
	}
	return volumes, mounts
}

// nonRoot is true for a user id that is set and not 0, else nil (unset).
func nonRoot(uid *int64) *bool {
	if uid != nil && *uid != 0 {
		return new(true)
	}
	return nil
}
