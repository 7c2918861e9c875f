package main

import "testing"

// dockerContract(engine string): placeholder, replaced by the backend's harness.
func dockerContract(engine string) contractBackend {
	return contractBackend{name: engine, start: func(t *testing.T, _ map[string]string) *contractEnv {
		t.Skip("harness not written yet")
		return nil
	}}
}
