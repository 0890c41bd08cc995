package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// seedEnv is the environment of the seed's DaemonSet.
func seedEnv() map[string]string {
	return map[string]string{
		"vip_arp": "true", "port": "6443", "vip_interface": "eno3", "vip_subnet": "32", "dns_mode": "first",
		"cp_enable": "true", "cp_namespace": "kube-system", "svc_enable": "true", "vip_leaderelection": "true",
		"vip_leasename": "plndr-cp-lock", "vip_leaseduration": "5", "vip_renewdeadline": "3", "vip_retryperiod": "1",
		"address": "198.51.100.200", "prometheus_server": ":2112",
	}
}

func deps(env map[string]string) Deps {
	return Deps{
		Env: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Resolve: func(name string) ([]netip.Addr, error) {
			switch name {
			case "vip.example.com":
				return []netip.Addr{netip.MustParseAddr("2001:db8::200"), netip.MustParseAddr("198.51.100.201")}, nil
			}
			return nil, errors.New("no such host")
		},
		Interfaces: func() ([]Iface, error) {
			return []Iface{
				{Name: "lo", Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
				{Name: "eno1", Prefixes: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
				{Name: "eno3", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/64")}},
			}, nil
		},
		Hostname: func() (string, error) { return "node-1", nil },
	}
}

func TestSeedEnvironment(t *testing.T) {
	c, err := Load(nil, deps(seedEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.VIP != netip.MustParseAddr("198.51.100.200") || c.Interface != "eno3" || c.Bits != 32 || c.Port != 6443 ||
		c.LeaseDuration != 5*time.Second || c.RenewDeadline != 3*time.Second || c.RetryPeriod != time.Second ||
		c.LeaseName != "plndr-cp-lock" || c.Namespace != "kube-system" || c.NodeName != "node-1" ||
		c.ARPRate != 3*time.Second || c.MetricsAddress != ":2112" || !c.ARP || !c.ControlPlane {
		t.Fatalf("%+v", c)
	}
	if !c.Services || c.SvcInterface != "eno3" || c.SvcLeaseName != "plndr-svcs-lock" || c.SvcNamespace != "" ||
		c.LBClassOnly || c.LBClassName != "kube-vip.io/kube-vip-class" {
		t.Fatalf("services settings %+v", c)
	}
	if len(c.Warnings) != 0 {
		t.Fatalf("warnings %v: want none", c.Warnings)
	}
}

func TestFlagsWinOverEnvironment(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--address=198.51.100.210", "--vip-leaseduration=10", "--vip-arprate=500"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, deps(seedEnv()))
	if err != nil {
		t.Fatal(err)
	}
	if c.VIP != netip.MustParseAddr("198.51.100.210") || c.LeaseDuration != 10*time.Second || c.ARPRate != 500*time.Millisecond {
		t.Fatalf("%+v", c)
	}
}

func TestChoices(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		check func(*Config) bool
	}{
		{"interface chosen by subnet", map[string]string{"vip_interface": ""}, func(c *Config) bool { return c.Interface == "eno3" }},
		{"IPv6 VIP gets /128", map[string]string{"address": "2001:db8::200", "vip_subnet": ""}, func(c *Config) bool { return c.Bits == 128 && c.VIP.Is6() }},
		{"name, first", map[string]string{"address": "vip.example.com"}, func(c *Config) bool { return c.IsName && c.VIP == netip.MustParseAddr("2001:db8::200") }},
		{"name, ipv4", map[string]string{"address": "vip.example.com", "dns_mode": "ipv4"}, func(c *Config) bool { return c.VIP == netip.MustParseAddr("198.51.100.201") }},
		{"leaderelection false only warns", map[string]string{"vip_leaderelection": "false"}, func(c *Config) bool { return len(c.Warnings) == 1 }},
		{"old kube-vip names", map[string]string{"address": "", "vip_address": "198.51.100.7", "vip_subnet": "", "vip_cidr": "32"}, func(c *Config) bool { return c.VIP == netip.MustParseAddr("198.51.100.7") && c.Bits == 32 }},
		{"BGP only warns", map[string]string{"bgp_enable": "true"}, func(c *Config) bool { return len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "BGP") }},
		{"services interface of its own", map[string]string{"vip_servicesinterface": "eno3"}, func(c *Config) bool { return c.SvcInterface == "eno3" }},
		{"services only", map[string]string{"cp_enable": "false", "address": ""}, func(c *Config) bool { return c.Services && !c.ControlPlane && c.SvcInterface == "eno3" }},
		{"node name from env", map[string]string{"vip_nodename": "n7"}, func(c *Config) bool { return c.NodeName == "n7" }},
	} {
		env := seedEnv()
		for k, v := range tc.env {
			env[k] = v
		}
		c, err := Load(nil, deps(env))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.check(c) {
			t.Errorf("%s: %+v", tc.name, c)
		}
	}
}

func TestErrorsNameTheValueAndTheFix(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no address", map[string]string{"address": ""}, []string{"address is empty", "set address"}},
		{"prefix in address", map[string]string{"address": "198.51.100.200/32"}, []string{`env address="198.51.100.200/32"`, "use vip_subnet"}},
		{"bad IPv4", map[string]string{"address": "198.51.100.300"}, []string{`env address="198.51.100.300" is neither an IP address nor a DNS name`}},
		{"unresolvable", map[string]string{"address": "nope.example.com"}, []string{`env address="nope.example.com"`, "cannot resolve", "no such host"}},
		{"wrong interface", map[string]string{"vip_interface": "eth0"}, []string{`env vip_interface="eth0"`, "no such interface on node node-1", "interfaces here: eno1, eno3, lo", "set vip_interface=eno3"}},
		{"no interface for VIP", map[string]string{"vip_interface": "", "address": "198.18.0.5"}, []string{"no interface here has a subnet that contains 198.18.0.5"}},
		{"lease too short", map[string]string{"vip_leaseduration": "3"}, []string{"vip_leaseduration=3 must exceed vip_renewdeadline=3 by at least 2 seconds", "use vip_leaseduration=5"}},
		{"renew too short", map[string]string{"vip_renewdeadline": "2"}, []string{"vip_renewdeadline=2 must be more than twice vip_retryperiod=1", "use vip_renewdeadline=3"}},
		{"not a number", map[string]string{"vip_retryperiod": "fast"}, []string{`env vip_retryperiod="fast" must be a number of seconds (1, 0.5) or a duration (500ms)`}},
		{"retry too short", map[string]string{"vip_retryperiod": "0.1"}, []string{`env vip_retryperiod="0.1" must be at least 0.2 seconds`}},
		{"renew below the kernel's second", map[string]string{"vip_leaseduration": "3", "vip_renewdeadline": "1", "vip_retryperiod": "0.2"}, []string{"vip_renewdeadline=1 is below 2 seconds", "use vip_renewdeadline=2", "fast profile"}},
		{"sub-second retry, renew too short", map[string]string{"vip_leaseduration": "4", "vip_renewdeadline": "2", "vip_retryperiod": "1.5"}, []string{"vip_renewdeadline=2 must be more than twice vip_retryperiod=1.5", "use vip_renewdeadline=4"}},
		{"arp off", map[string]string{"vip_arp": "false"}, []string{"set vip_arp=true"}},
		{"nothing enabled", map[string]string{"cp_enable": "false", "svc_enable": "false"}, []string{"set cp_enable=true"}},
		{"bad bool", map[string]string{"cp_enable": "on"}, []string{`env cp_enable="on" is not a boolean`}},
		{"bad subnet", map[string]string{"vip_subnet": "33"}, []string{`env vip_subnet="33" is not a prefix length for 198.51.100.200`}},
		{"bad port", map[string]string{"port": "0"}, []string{`env port="0" is not a TCP port`}},
		{"bad dns mode", map[string]string{"dns_mode": "dual"}, []string{`dns_mode="dual" is not supported`}},
		{"wrong services interface", map[string]string{"vip_servicesinterface": "eth1"}, []string{`env vip_servicesinterface="eth1": no such interface on node node-1`, "interfaces here: eno1, eno3, lo"}},
		{"services only without interface", map[string]string{"cp_enable": "false", "vip_interface": ""}, []string{"svc_enable=true but neither vip_servicesinterface nor vip_interface is set"}},
		{"bad class only", map[string]string{"lb_class_only": "yes"}, []string{`env lb_class_only="yes" is not a boolean`}},
		{"bad arp rate", map[string]string{"vip_arpRate": "10"}, []string{`env vip_arpRate="10" must be a number of milliseconds of at least 100`}},
	} {
		env := seedEnv()
		for k, v := range tc.env {
			env[k] = v
		}
		_, err := Load(nil, deps(env))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tc.name, err, w)
			}
		}
	}
}

func TestPoolsOnly(t *testing.T) {
	env := seedEnv()
	c, err := Load(nil, deps(env))
	if err != nil || c.SvcPoolsOnly {
		t.Fatalf("default: %v, poolsOnly %t; want off (kube-vip's behaviour)", err, c.SvcPoolsOnly)
	}
	env["svc_pools_only"] = "true"
	if c, err = Load(nil, deps(env)); err != nil || !c.SvcPoolsOnly || !strings.Contains(c.String(), "poolsOnly=true") {
		t.Fatalf("svc_pools_only=true: %v, %+v", err, c)
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--svc-pools-only"}); err != nil {
		t.Fatal(err)
	}
	env["svc_pools_only"] = "false"
	if c, err = Load(fs, deps(env)); err != nil || !c.SvcPoolsOnly {
		t.Fatalf("--svc-pools-only alone over env false: %v, %+v", err, c)
	}
}

// TestKubeVipFlagsForTheManager: vipd manager takes kube-vip's flags with
// kube-vip's meaning, and refuses its modes vipd does not have.
func TestKubeVipFlagsForTheManager(t *testing.T) {
	fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
	AddFlags(fs)
	args := []string{"--interface", "eno3", "--vip", "198.51.100.201", "--vipSubnet", "/32", "--controlplane", "--services", "--servicesElection",
		"--arp", "--leaderElection", "--leaseDuration", "7", "--leaseRenewDuration", "4", "--leaseRetry", "1", "--nodeName", "node-9", "--prometheusHTTPServer", ":2113", "--inCluster"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	c, err := Load(fs, deps(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != "eno3" || c.VIP != netip.MustParseAddr("198.51.100.201") || c.Bits != 32 || !c.ControlPlane || !c.Services || !c.SvcSpread || !c.ARP ||
		c.LeaseDuration != 7*time.Second || c.RenewDeadline != 4*time.Second || c.RetryPeriod != time.Second || c.NodeName != "node-9" || c.MetricsAddress != ":2113" {
		t.Fatalf("%+v", c)
	}
	fs = pflag.NewFlagSet("manager", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse([]string{"--bgp", "--peerAddress", "198.51.100.1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(fs, deps(seedEnv())); err == nil || !strings.Contains(err.Error(), "--bgp: BGP is not supported") || !strings.Contains(err.Error(), "--peerAddress") {
		t.Fatalf("kube-vip's BGP flags: %v", err)
	}
}

// TestFastProfile: sub-second retry periods, as decimal seconds or a Go
// duration, with the fast profile's floor (renew deadline 2 s, lease
// duration 4 s).
func TestFastProfile(t *testing.T) {
	for _, rp := range []string{"0.5", "500ms"} {
		env := seedEnv()
		env["vip_leaseduration"], env["vip_renewdeadline"], env["vip_retryperiod"] = "4", "2", rp
		c, err := Load(nil, deps(env))
		if err != nil {
			t.Fatalf("vip_retryperiod=%s: %v", rp, err)
		}
		if c.LeaseDuration != 4*time.Second || c.RenewDeadline != 2*time.Second || c.RetryPeriod != 500*time.Millisecond {
			t.Fatalf("vip_retryperiod=%s: %s/%s/%s", rp, c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
		}
	}
	env := seedEnv()
	env["vip_leaseduration"], env["vip_renewdeadline"], env["vip_retryperiod"] = "3", "2", "0.5"
	if _, err := Load(nil, deps(env)); err == nil || !strings.Contains(err.Error(), "use vip_leaseduration=4") {
		t.Fatalf("lease duration 3 with renew deadline 2: %v; want refused", err)
	}
}
