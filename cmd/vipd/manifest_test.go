package main

import (
	"bytes"
	"regexp"
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

// TestKubeVipCommandLines: kube-vip's documented command lines for K3s and
// kubeadm print the same manifest as the same request in vipd's names.
func TestKubeVipCommandLines(t *testing.T) {
	for _, tc := range []struct{ name, kubeVip, vipd string }{
		{"K3s DaemonSet",
			"manifest daemonset --interface eth0 --address 198.51.100.200 --inCluster --taint --controlplane --services --arp --leaderElection",
			"manifest daemonset --vip-interface eth0 --address 198.51.100.200 --cp-enable --svc-enable --vip-arp --vip-leaderelection"},
		{"kubeadm static Pod",
			"manifest pod --interface eth0 --address 198.51.100.200 --controlplane --services --arp --leaderElection",
			"manifest pod --vip-interface=eth0 --address=198.51.100.200 --cp-enable=true --svc-enable=true --vip-arp=true --vip-leaderelection=true"},
		{"the image as kube-vip's alias runs it",
			"/kube-vip manifest daemonset --interface eth0 --address 198.51.100.200 --controlplane --arp --leaderElection",
			"manifest daemonset --vip-interface eth0 --address 198.51.100.200 --cp-enable --vip-arp"},
	} {
		a, errA := vipdRun(t, programArgs(strings.Fields(tc.kubeVip))...)
		b, errB := vipdRun(t, programArgs(strings.Fields(tc.vipd))...)
		if errA != nil || errB != nil {
			t.Errorf("%s: %v / %v\n%s\n%s", tc.name, errA, errB, a, b)
			continue
		}
		if a != b {
			t.Errorf("%s: kube-vip's command line prints another manifest:\n%s\n--- vipd's:\n%s", tc.name, a, b)
		}
	}
}

// TestKubeVipFlags: each kube-vip flag has kube-vip's meaning.
func TestKubeVipFlags(t *testing.T) {
	base := []string{"manifest", "daemonset", "--address", "198.51.100.200"}
	for _, args := range [][]string{{"manifest", "daemonset", "--vip", "198.51.100.201"}, {"manifest", "daemonset", "--address", "198.51.100.201"}} {
		if out, err := vipdRun(t, args...); err != nil || !strings.Contains(out, "name: address\n          value: 198.51.100.201") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	for _, tc := range []struct{ kubeVip, vipd []string }{
		{[]string{"--interface", "eno3"}, []string{"--vip-interface", "eno3"}},
		{[]string{"--serviceInterface", "eno4"}, []string{"--vip-servicesinterface", "eno4"}},
		{[]string{"--vipSubnet", "/28"}, []string{"--vip-subnet", "28"}},
		{[]string{"--arp"}, []string{"--vip-arp=true"}},
		{[]string{"--controlplane=false", "--services", "--interface", "eth0"}, []string{"--cp-enable=false", "--svc-enable=true", "--vip-interface", "eth0"}},
		{[]string{"--services", "--servicesElection"}, []string{"--svc-enable", "--svc-election=true"}},
		{[]string{"--leaderElection"}, []string{"--vip-leaderelection=true"}},
		{[]string{"--leaseName", "my-lock"}, []string{"--vip-leasename", "my-lock"}},
		{[]string{"--leaseDuration", "15", "--leaseRenewDuration", "10", "--leaseRetry", "2"}, []string{"--vip-leaseduration", "15", "--vip-renewdeadline", "10", "--vip-retryperiod", "2"}},
		{[]string{"--prometheusHTTPServer", ":2113"}, []string{"--prometheus-server", ":2113"}},
		{[]string{"--inCluster", "--taint", "--enableEndpointSlices"}, nil},
		{[]string{"--nodeName", "n1"}, nil}, // a DaemonSet takes the node name from spec.nodeName
		{[]string{"--services", "--servicesLeaseName", "svc-lock", "--lbClassOnly", "--lbClassName", "example.com/lb"}, []string{"--svc-enable", "--svc-leasename", "svc-lock", "--lb-class-only", "--lb-class-name", "example.com/lb"}},
		{[]string{"--dnsMode", "ipv4", "--namespace", "vip-system"}, []string{"--dns-mode", "ipv4", "--cp-namespace", "vip-system"}},
	} {
		a, errA := vipdRun(t, append(append([]string{}, base...), tc.kubeVip...)...)
		b, errB := vipdRun(t, append(append([]string{}, base...), tc.vipd...)...)
		if errA != nil || errB != nil || a != b {
			t.Errorf("%v vs %v: %v / %v; outputs differ: %t\n%s", tc.kubeVip, tc.vipd, errA, errB, a != b, a)
		}
	}
	// A vipd flag and a kube-vip flag that disagree.
	if out, err := vipdRun(t, append(append([]string{}, base...), "--interface", "eth0", "--vip-interface", "eth1")...); err == nil || !strings.Contains(out+err.Error(), "--interface=eth0 and --vip-interface=eth1") {
		t.Errorf("contradicting flags accepted: %v\n%s", err, out)
	}
}

// TestKubeVipModesVipdHasNot: each gives an error that names the flag and
// what vipd does instead, and no manifest.
func TestKubeVipModesVipdHasNot(t *testing.T) {
	for _, args := range [][]string{
		{"--bgp", "--localAS", "65000", "--bgpRouterID", "198.51.100.11", "--bgppeers", "198.51.100.1:65000::false"},
		{"--table"}, {"--wireguard"}, {"--enableLoadBalancer"}, {"--ddns"},
	} {
		out, err := vipdRun(t, append([]string{"manifest", "daemonset", "--address", "198.51.100.200", "--arp"}, args...)...)
		if err == nil || strings.Contains(out, "kind: DaemonSet") {
			t.Errorf("%v: accepted:\n%s", args, out)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, args[0]+":") || !strings.Contains(msg, "not supported") {
			t.Errorf("%v: error %q does not name the flag and say it is not supported", args, msg)
		}
	}
}

// TestManifestRBACNeedsNoAddress: RBAC does not depend on any address.
func TestManifestRBACNeedsNoAddress(t *testing.T) {
	out, err := vipdRun(t, "manifest", "rbac")
	if err != nil || !strings.Contains(out, "kind: ClusterRole") || !strings.Contains(out, "leases") {
		t.Fatalf("vipd manifest rbac: %v\n%s", err, out)
	}
	if strings.Contains(out, "services/status") {
		t.Errorf("services permissions without svc_enable:\n%s", out)
	}
	out, err = vipdRun(t, "manifest", "rbac", "--services")
	if err != nil || !strings.Contains(out, "services/status") {
		t.Errorf("vipd manifest rbac --services: %v\n%s", err, out)
	}
}

// TestManifestAllNodes: spread mode's DaemonSet runs on every node.
func TestManifestAllNodes(t *testing.T) {
	out, err := vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--services", "--servicesElection", "--nodes", "all")
	if err != nil || strings.Contains(out, "node-role.kubernetes.io/control-plane") || !strings.Contains(out, "svc_election") {
		t.Errorf("--nodes all: %v\n%s", err, out)
	}
	if _, err := vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--nodes", "all", "--taint"); err == nil {
		t.Error("--nodes all with --taint accepted")
	}
	// The control-plane VIP on every node: only nodes whose own API server
	// is ready compete (workers never are).
	for _, gate := range []string{"", "--cp-healthcheck=auto", "--cp-healthcheck=true"} {
		args := []string{"manifest", "daemonset", "--address", "198.51.100.200", "--controlplane", "--services", "--servicesElection", "--nodes", "all"}
		if gate != "" {
			args = append(args, gate)
		}
		out, err := vipdRun(t, args...)
		if err != nil || strings.Count(out, "name: cp_healthcheck\n") != 1 || !regexp.MustCompile(`name: cp_healthcheck\s+value: "true"`).MatchString(out) {
			t.Errorf("--nodes all %s: want cp_healthcheck=true once: %v\n%s", gate, err, out)
		}
	}
	out, err = vipdRun(t, "manifest", "daemonset", "--address", "198.51.100.200", "--controlplane", "--nodes", "all", "--cp-healthcheck=false")
	if err == nil || !strings.Contains(out+err.Error(), "--cp-healthcheck=false") {
		t.Errorf("--nodes all --cp-healthcheck=false: %v\n%s", err, out)
	}
}
