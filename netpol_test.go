package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// manifestNetPol returns the NetworkPolicy and the Deployment of
// deploy/kubernetes.yaml.
func manifestNetPol(t *testing.T) (*networkingv1.NetworkPolicy, *appsv1.Deployment) {
	t.Helper()
	np, dep := &networkingv1.NetworkPolicy{}, &appsv1.Deployment{}
	manifestObject(t, "NetworkPolicy", np)
	manifestObject(t, "Deployment", dep)
	return np, dep
}

// manifestObject decodes into obj the first object of kind in
// deploy/kubernetes.yaml, and fails the test when there is none.
func manifestObject(t *testing.T, kind string, obj any) {
	t.Helper()
	raw, err := os.ReadFile("deploy/kubernetes.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			t.Fatalf("deploy/kubernetes.yaml lacks a %s", kind)
		}
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if utilyaml.Unmarshal(doc, &tm); tm.Kind != kind {
			continue
		}
		if err := utilyaml.Unmarshal(doc, obj); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		return
	}
}

// selects reports whether the label selector sel matches a pod labelled l.
func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(l))
}

// admits reports whether the policy lets a pod of its own namespace
// labelled l open a TCP connection to port 5010 of the pods it selects, as
// the Kubernetes documentation defines the rules. A peer that could admit
// anything beyond pods of the namespace fails the test.
func admits(t *testing.T, np *networkingv1.NetworkPolicy, l map[string]string) bool {
	t.Helper()
	for _, rule := range np.Spec.Ingress {
		port := len(rule.Ports) == 0
		for _, p := range rule.Ports {
			if (p.Protocol == nil || *p.Protocol == "TCP") && (p.Port == nil || p.Port.IntValue() == 5010) {
				port = true
			}
		}
		if len(rule.From) == 0 {
			t.Errorf("ingress rule %+v admits every source", rule)
		}
		for _, peer := range rule.From {
			if peer.NamespaceSelector != nil || peer.IPBlock != nil || peer.PodSelector == nil {
				t.Errorf("ingress peer %+v admits more than pods of pman's namespace", peer)
				continue
			}
			if port && selects(t, peer.PodSelector, l) {
				return true
			}
		}
	}
	return false
}

// TestKubeManifestNetworkPolicy: the NetworkPolicy of deploy/kubernetes.yaml
// applies to pman's pods, for ingress; it admits pfcon's pods as the FNNDSC
// chart labels them (charts/pfcon, selectorLabels), and no job's pod as pman
// builds it, not even one whose JOB_LABELS copy pfcon's label. The API
// server accepts it (server-side dry run). No network plugin runs here, so
// what is proven is the policy's rules, not their enforcement.
func TestKubeManifestNetworkPolicy(t *testing.T) {
	np, dep := manifestNetPol(t)
	if !selects(t, &np.Spec.PodSelector, dep.Spec.Template.Labels) {
		t.Errorf("podSelector %v does not select pman's pods %v", np.Spec.PodSelector, dep.Spec.Template.Labels)
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policyTypes %v; want [Ingress] (pman's own egress reaches the API server)", np.Spec.PolicyTypes)
	}
	pfcon := map[string]string{"app.kubernetes.io/name": "pfcon", "app.kubernetes.io/instance": "chris"}
	if !admits(t, np, pfcon) {
		t.Errorf("the policy does not admit pfcon's pods %v", pfcon)
	}
	for _, jl := range []string{"org.chrisproject.role=plugininstance", "app.kubernetes.io/name=pfcon,app.kubernetes.io/instance=chris"} {
		cfg, err := loadConfig(env("CONTAINER_ENV", "kubernetes", "STORAGE_TYPE", "kubernetes_pvc", "VOLUME_NAME", "s", "JOB_LABELS", jl))
		if err != nil {
			t.Fatal(err)
		}
		j := &jobSpec{JID: "j1", Image: "fnndsc/pl-x", Cmd: []string{"x"}, Workers: 1, InputDir: "a", OutputDir: "b"}
		pod := buildKubeJob(cfg, j, nil, nil).Spec.Template.Labels
		if admits(t, np, pod) {
			t.Errorf("JOB_LABELS=%s: the policy admits a job's pod %v", jl, pod)
		}
	}
	if admits(t, np, nil) || admits(t, np, map[string]string{"app.kubernetes.io/name": "pman"}) {
		t.Error("the policy admits a pod without pfcon's label")
	}

	_, admin := kubeAdmin(t)
	ns := kubeNamespace(t, admin)
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := admin.NetworkingV1().NetworkPolicies(ns).Create(context.Background(), np, dry); err != nil {
		t.Errorf("the API server refuses the NetworkPolicy: %v", err)
	}
}
