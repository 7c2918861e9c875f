package main

import "testing"

// swarmContract(): placeholder, replaced by the backend's harness.
func swarmContract() contractBackend {
	return contractBackend{name: "swarm", start: func(t *testing.T, _ map[string]string) *contractEnv {
		t.Skip("harness not written yet")
		return nil
	}}
}
