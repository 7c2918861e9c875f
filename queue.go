package main

// Capacity-aware admission (JOB_CAPACITY), what the Docker and Swarm
// backends share: the setting, what a job asks, whether it can ever fit,
// the fair order of the queue and the words of a queued job's message.
// The engine's side is in docker_queue.go and swarm_queue.go.
//
// The rule, as docs/API.md states it:
//   - a job asks its cpu_limit, memory_limit and gpu_limit (IGNORE_LIMITS
//     or not: the setting is about what jobs ask, not what the engine
//     enforces); a job that asks nothing of a resource is never held for it.
//   - a job that asks more than the total of a resource is a 400 on that
//     field: it could never start.
//   - users take turns (round-robin by auid): the next job is the oldest of
//     the user with the fewest jobs running, so a user's burst waits
//     behind every other user's next job (fairOrder).
//   - strict order: a job starts only when every job ahead of it started,
//     so a big job is never starved by small ones behind it.

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
)

// uncounted marks a resource JOB_CAPACITY does not limit.
const uncounted = -1

// resources are amounts of what jobs ask: CPU in millicores (cpu_limit's
// unit), memory in MiB (memory_limit's), GPUs.
type resources struct {
	CPU, Memory, GPU int64
}

// capacitySetting is JOB_CAPACITY, parsed: Auto asks the engine for every
// total not given; Given holds the explicit totals, uncounted where absent.
type capacitySetting struct {
	Auto  bool
	Given resources
}

// capacityEnvs are the backends that take JOB_CAPACITY: Kubernetes and
// SLURM queue by themselves.
var capacityEnvs = []string{"docker", "podman", "swarm"}

// loadCapacity reads JOB_CAPACITY into c.Capacity (nil: admission off, as
// pman 6); c.ContainerEnv is read, as only some backends take it.
func loadCapacity(e *envReader, c *config) {
	v := e.str("JOB_CAPACITY", "")
	if v == "" {
		return
	}
	s, err := parseCapacity(v)
	switch {
	case err != nil:
		e.bad("JOB_CAPACITY", "%v (accepts auto, or cpu=8,memory=16Gi,gpu=1, or auto with some of those)", err)
	case !slices.Contains(capacityEnvs, c.ContainerEnv):
		e.bad("JOB_CAPACITY", "not with CONTAINER_ENV=%s: its scheduler queues jobs itself (accepted with %s)", c.ContainerEnv, strings.Join(capacityEnvs, ", "))
	case c.ContainerEnv == "swarm" && (!s.Auto || s.Given != resources{uncounted, uncounted, uncounted}):
		e.bad("JOB_CAPACITY", "%q: with CONTAINER_ENV=swarm only auto (Swarm's scheduler queues by what its nodes have)", v)
	default:
		c.Capacity = s
	}
}

// parseCapacity returns the setting JOB_CAPACITY's value v says.
func parseCapacity(v string) (*capacitySetting, error) {
	s := &capacitySetting{Given: resources{uncounted, uncounted, uncounted}}
	seen := map[string]bool{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "auto" {
			s.Auto = true
			continue
		}
		k, val, ok := strings.Cut(item, "=")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		if !ok {
			return nil, fmt.Errorf("%q is not auto or key=value", item)
		}
		if seen[k] {
			return nil, fmt.Errorf("%s is given twice", k)
		}
		seen[k] = true
		var n int64
		var err error
		switch k {
		case "cpu":
			n, err = parseCPU(val)
			s.Given.CPU = n
		case "memory":
			n, err = parseMemory(val)
			s.Given.Memory = n
		case "gpu":
			n, err = strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				err = fmt.Errorf("gpu=%q is not a whole number >= 0", val)
			}
			s.Given.GPU = n
		default:
			return nil, fmt.Errorf("%q is not cpu, memory or gpu", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseCPU returns millicores from "8", "1.5" or "500m"; more than 0.
func parseCPU(v string) (int64, error) {
	var m float64
	var err error
	if n, ok := strings.CutSuffix(v, "m"); ok {
		m, err = strconv.ParseFloat(n, 64)
	} else {
		m, err = strconv.ParseFloat(v, 64)
		m *= 1000
	}
	if err != nil || m < 1 || m > math.MaxInt32 || math.IsNaN(m) {
		return 0, fmt.Errorf("cpu=%q is not a number of CPUs > 0 (8, 1.5 or 1500m)", v)
	}
	return int64(m), nil
}

// memoryUnits are the suffixes of a memory quantity, as Kubernetes reads them.
var memoryUnits = []struct {
	suffix string
	bytes  float64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
}

// parseMemory returns MiB (rounded down) from "16Gi", "512Mi", "2G" or a
// number of bytes; at least 1 MiB.
func parseMemory(v string) (int64, error) {
	num, mult := v, 1.0
	for _, u := range memoryUnits {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = n, u.bytes
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	mib := f * mult / (1 << 20)
	if err != nil || math.IsNaN(mib) || mib < 1 || mib > math.MaxInt64/2 {
		return 0, fmt.Errorf("memory=%q is not a size of at least 1Mi (16Gi, 512Mi, 2G or bytes)", v)
	}
	return int64(mib), nil
}

// jobAsks returns what j asks of the capacity.
func jobAsks(j *jobSpec) resources {
	return resources{CPU: int64(j.CPULimit), Memory: int64(j.MemoryLimit), GPU: int64(j.GPULimit)}
}

// add returns r plus o.
func (r resources) add(o resources) resources {
	return resources{r.CPU + o.CPU, r.Memory + o.Memory, r.GPU + o.GPU}
}

// shortfall returns how much of each counted resource ask lacks on top of
// used within total: all zero when it fits.
func shortfall(total, used, ask resources) resources {
	lack := func(t, u, a int64) int64 {
		if t == uncounted || a <= 0 {
			return 0
		}
		return max(0, u+a-t)
	}
	return resources{lack(total.CPU, used.CPU, ask.CPU), lack(total.Memory, used.Memory, ask.Memory), lack(total.GPU, used.GPU, ask.GPU)}
}

func (r resources) zero() bool { return r == resources{} }

// neverFits returns the 400 of a job that asks more than the total of a
// resource, naming each such field, or nil. where says what the total is
// ("JOB_CAPACITY=cpu=2", "the largest Swarm node").
func neverFits(total, ask resources, where string) error {
	fields := map[string]string{}
	if total.CPU != uncounted && ask.CPU > total.CPU {
		fields["cpu_limit"] = fmt.Sprintf("%d millicores (%s) asked, more than all jobs together may use (%s, %s): the job could never start", ask.CPU, cpus(ask.CPU), cpus(total.CPU), where)
	}
	if total.Memory != uncounted && ask.Memory > total.Memory {
		fields["memory_limit"] = fmt.Sprintf("%d MiB asked, more than all jobs together may use (%d MiB, %s): the job could never start", ask.Memory, total.Memory, where)
	}
	if total.GPU != uncounted && ask.GPU > total.GPU {
		fields["gpu_limit"] = fmt.Sprintf("%d GPUs asked, more than all jobs together may use (%d, %s): the job could never start", ask.GPU, total.GPU, where)
	}
	if len(fields) == 0 {
		return nil
	}
	return &apiError{kind: eInvalid, fields: fields}
}

// cpus returns millicores in CPUs: "2 CPUs", "1 CPU", "1.5 CPUs".
func cpus(m int64) string {
	if m == 1000 {
		return "1 CPU"
	}
	return cpuNum(m) + " CPUs"
}

// cpuNum returns millicores as a number of CPUs: "6", "1.5".
func cpuNum(m int64) string { return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) }

// lackText returns what lack says is missing, with what is in use of the
// total: "2 CPUs (6 of 8 in use)", resources joined with " and ".
func lackText(total, used, lack resources) string {
	var parts []string
	if lack.CPU > 0 {
		parts = append(parts, fmt.Sprintf("%s (%s of %s in use)", cpus(lack.CPU), cpuNum(used.CPU), cpuNum(total.CPU)))
	}
	if lack.Memory > 0 {
		parts = append(parts, fmt.Sprintf("%d MiB of memory (%d of %d MiB in use)", lack.Memory, used.Memory, total.Memory))
	}
	if lack.GPU > 0 {
		unit := "GPUs"
		if lack.GPU == 1 {
			unit = "GPU"
		}
		parts = append(parts, fmt.Sprintf("%d %s (%d of %d in use)", lack.GPU, unit, used.GPU, total.GPU))
	}
	return strings.Join(parts, " and ")
}

// queuedJob is one job of the queue, as its record in the engine says.
type queuedJob struct {
	spec    *jobSpec
	arrival int64  // when it was accepted, UnixNano
	created string // the record's creation time, the job's timestamp
}

// fairOrder returns the jobs in the order they may start, taking turns
// between users: the next is the oldest job of the user with the fewest
// jobs running (running counts them by auid), ties going to the user
// whose oldest job came first. Counted from what runs, not from a memory
// of whose turn it was, so every replica, and a restarted pman, computes
// the same order from the engine alone.
func fairOrder(jobs []queuedJob, running map[string]int) []queuedJob {
	byUser := map[string][]queuedJob{}
	for _, j := range jobs {
		byUser[j.spec.Auid] = append(byUser[j.spec.Auid], j)
	}
	older := func(a, b queuedJob) int {
		// Two jobs accepted in the same nanosecond (by two replicas)
		// still get one order everywhere.
		return cmp.Or(cmp.Compare(a.arrival, b.arrival), cmp.Compare(a.spec.JID, b.spec.JID))
	}
	for _, l := range byUser {
		slices.SortFunc(l, older)
	}
	count := maps.Clone(running)
	if count == nil {
		count = map[string]int{}
	}
	out := make([]queuedJob, 0, len(jobs))
	for len(out) < len(jobs) {
		var next string
		found := false
		for u, l := range byUser {
			if len(l) == 0 {
				continue
			}
			if !found || count[u] < count[next] || count[u] == count[next] && older(l[0], byUser[next][0]) < 0 {
				next, found = u, true
			}
		}
		out = append(out, byUser[next][0])
		byUser[next] = byUser[next][1:]
		count[next]++
	}
	return out
}

// queueMessage returns why a queued job waits: ahead jobs are before it in
// line; own is what it lacks itself; first what the first job in line lacks.
func queueMessage(ahead int, total, used, own, first resources) string {
	switch {
	case ahead == 0 && own.zero():
		return "queued: next in line, starting"
	case ahead == 0:
		return "queued: next in line; waiting for " + lackText(total, used, own)
	case !own.zero():
		return fmt.Sprintf("queued: %s ahead; waiting for %s", jobsText(ahead), lackText(total, used, own))
	case !first.zero():
		return fmt.Sprintf("queued: %s ahead, the first waiting for %s", jobsText(ahead), lackText(total, used, first))
	}
	return fmt.Sprintf("queued: %s ahead", jobsText(ahead))
}

func jobsText(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}
