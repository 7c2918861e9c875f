package main

import (
	"strings"
	"testing"
)

// TestNameProblem runs every backend's naming rule, one signature, on the
// same jids: each row says which backends can hold the jid.
func TestNameProblem(t *testing.T) {
	backends := []struct {
		name  string
		sched scheduler
		says  string // what every refusal names
	}{
		{"docker", &dockerSched{}, "Docker container name"},
		{"swarm", &swarmSched{}, "Swarm service"},
		{"kubernetes", &kubeSched{}, "Kubernetes Job name"},
		{"cromwell", &cromwellSched{}, "Cromwell"},
		{"slurm", &slurmSched{}, ""},
	}
	tests := []struct {
		jid string
		ok  string // the backends that can hold it
	}{
		{"chris-jid-1", "docker swarm kubernetes cromwell slurm"},
		{"a", "swarm kubernetes cromwell slurm"}, // Docker wants two characters
		{"job_2", "docker swarm cromwell slurm"},
		{"a.b-c", "docker kubernetes cromwell slurm"},
		{"Chris_1", "docker swarm cromwell slurm"},
		{"-lead", "cromwell slurm"},
		{"trail-", "docker cromwell slurm"},
		{"has space", "cromwell slurm"},
		{"scan 10h30 (2)", "cromwell slurm"},
		{strings.Repeat("a", 63), "docker swarm kubernetes cromwell slurm"},
		{strings.Repeat("a", 64), "docker cromwell slurm"},
		{strings.Repeat("a", 253), "docker cromwell slurm"},
		{strings.Repeat("é", 200), "cromwell slurm"},
		{strings.Repeat("😀", 128), "slurm"}, // 256 UTF-16 units: over Cromwell's label limit
	}
	for _, tt := range tests {
		for _, b := range backends {
			t.Run(b.name+"/"+tt.jid[:min(len(tt.jid), 20)], func(t *testing.T) {
				got := b.sched.nameProblem(tt.jid)
				ok := strings.Contains(" "+tt.ok+" ", " "+b.name+" ")
				if (got == "") != ok {
					t.Errorf("%s nameProblem(%q) = %q; want ok=%v", b.name, tt.jid, got, ok)
				}
				if got != "" && !strings.Contains(got, b.says) {
					t.Errorf("%s nameProblem(%q) = %q; want it to name the rule (%s)", b.name, tt.jid, got, b.says)
				}
			})
		}
	}
}

func TestJobLabels(t *testing.T) {
	tests := []struct {
		name string
		cfg  *config
		want map[string]string
	}{
		{"no JOB_LABELS", &config{}, map[string]string{jidLabel: "j-1"}},
		{"JOB_LABELS", &config{JobLabels: map[string]string{"team": "fnndsc"}}, map[string]string{jidLabel: "j-1", "team": "fnndsc"}},
		{"JOB_LABELS cannot set the jid", &config{JobLabels: map[string]string{jidLabel: "other"}}, map[string]string{jidLabel: "j-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := jobLabels(tt.cfg, "j-1")
			if len(got) != len(tt.want) {
				t.Errorf("jobLabels = %v; want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("jobLabels = %v; want %v", got, tt.want)
				}
			}
			got["x"] = "y"
			if _, ok := tt.cfg.JobLabels["x"]; ok {
				t.Error("jobLabels shares its map with JOB_LABELS")
			}
		})
	}
}
