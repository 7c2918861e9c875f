package main

// Admission on Swarm (JOB_CAPACITY=auto; the rule is in queue.go). Swarm's
// own scheduler queues: each service reserves what its job asks (its
// limits), so a task that no node has room for stays pending with
// "insufficient resources" until running jobs end, and pman reports it as
// notstarted with Swarm's words. pman keeps no queue of its own here, so
// Swarm's order (not the auid turns) decides which pending task goes first.

import (
	"context"
	"strings"

	"github.com/docker/docker/api/types/swarm"
)

// swarmReserve makes res reserve what j asks when JOB_CAPACITY is set:
// the CPUs and memory of its limits (asked even with IGNORE_LIMITS, as on
// Docker), beside the GPUs serviceSpec reserves already.
func swarmReserve(cfg *config, res *swarm.ResourceRequirements, j *jobSpec) {
	if cfg.Capacity == nil {
		return
	}
	if res.Reservations == nil {
		res.Reservations = &swarm.Resources{}
	}
	res.Reservations.NanoCPUs = int64(j.CPULimit) * 1e6
	res.Reservations.MemoryBytes = int64(j.MemoryLimit) << 20
}

// neverFits returns the 400 of a job that asks more of a resource than the
// largest node of the swarm has, with JOB_CAPACITY set; else nil. Without
// it Swarm would keep the task pending for ever, which get reports as
// queued.
func (s *swarmSched) neverFits(ctx context.Context, j *jobSpec) error {
	if s.cfg.Capacity == nil {
		return nil
	}
	nodes, err := s.cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return engineError(err, "listing the Swarm nodes (JOB_CAPACITY)")
	}
	var most resources
	for _, n := range nodes {
		r := n.Description.Resources
		most.CPU = max(most.CPU, r.NanoCPUs/1_000_000)
		most.Memory = max(most.Memory, r.MemoryBytes>>20)
		var gpus int64
		for _, g := range r.GenericResources {
			switch {
			case g.DiscreteResourceSpec != nil && g.DiscreteResourceSpec.Kind == gpuResource:
				gpus += g.DiscreteResourceSpec.Value
			case g.NamedResourceSpec != nil && g.NamedResourceSpec.Kind == gpuResource:
				gpus++
			}
		}
		most.GPU = max(most.GPU, gpus)
	}
	return neverFits(most, jobAsks(j), "the largest Swarm node's")
}

// swarmQueued returns the status and message of task t: those taskStatus
// gave, except, with JOB_CAPACITY set, for a task Swarm keeps pending for
// lack of free resources. That one waits for running jobs to end
// (neverFits refused any that no node could ever take): notstarted, with
// Swarm's reason.
func swarmQueued(cfg *config, t *swarm.Task, status, message string) (string, string) {
	st := t.Status
	if cfg.Capacity == nil || st.State != swarm.TaskStatePending || !strings.Contains(st.Err, "insufficient resources") {
		return status, message
	}
	why := st.Err
	if st.Message != "" {
		why = st.Message + ": " + st.Err
	}
	return statusNotStarted, "queued by Swarm until a node has the resources free: " + why
}
