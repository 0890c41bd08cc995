package main

import (
	"bytes"
	"strings"
	"testing"
)

// vipdRun runs the vipd command line in-process and returns its output.
func vipdRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := root(&out, &errb)
	c.SetArgs(args)
	err := c.Execute()
	return out.String() + errb.String(), err
}

// TestManifestPoolsOnly: the pools policy is a flag of vipd manifest and
// reaches the DaemonSet's environment; off by default. A switch alone means true.
func TestManifestPoolsOnly(t *testing.T) {
	out, err := vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--svc-enable", "--svc-pools-only")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, "name: svc_pools_only\n          value: \"true\"") {
		t.Errorf("the DaemonSet lacks svc_pools_only=true:\n%s", out)
	}
	out, err = vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--svc-enable")
	if err != nil || !strings.Contains(out, "name: svc_pools_only\n          value: \"false\"") {
		t.Errorf("without the flag: %v, want svc_pools_only=false (kube-vip's behaviour):\n%s", err, out)
	}
	if _, err := vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--svc-pools-only=maybe"); err == nil {
		t.Error("--svc-pools-only=maybe accepted")
	}
}
