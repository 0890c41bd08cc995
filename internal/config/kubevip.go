package config

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// KubeVipFlags are kube-vip's command-line flags with the setting each one
// sets, so that kube-vip's documented command lines work unchanged
// (kube-vip manifest daemonset --interface eth0 --address ... --arp).
// A value of a kube-vip switch alone is true, as in kube-vip.
var KubeVipFlags = map[string]string{
	"interface":            "vip_interface",
	"serviceInterface":     "vip_servicesinterface",
	"vip":                  "address",
	"vipSubnet":            "vip_subnet",
	"arp":                  "vip_arp",
	"controlplane":         "cp_enable",
	"services":             "svc_enable",
	"servicesElection":     "svc_election",
	"leaderElection":       "vip_leaderelection",
	"leaseName":            "vip_leasename",
	"leaseDuration":        "vip_leaseduration",
	"leaseRenewDuration":   "vip_renewdeadline",
	"leaseRetry":           "vip_retryperiod",
	"nodeName":             "vip_nodename",
	"prometheusHTTPServer": "prometheus_server",
	"servicesLeaseName":    "svc_leasename",
	"lbClassOnly":          "lb_class_only",
	"lbClassName":          "lb_class_name",
	"dnsMode":              "dns_mode",
	"namespace":            "cp_namespace",
	"k8sConfigPath":        "k8s_config_file",
}

// kubeVipSwitches are kube-vip's boolean flags among KubeVipFlags.
var kubeVipSwitches = map[string]bool{
	"arp": true, "controlplane": true, "services": true, "servicesElection": true,
	"leaderElection": true, "lbClassOnly": true,
}

// KubeVipAccepted are kube-vip flags that change nothing in vipd, with why.
var KubeVipAccepted = map[string]string{
	"inCluster":            "vipd's DaemonSet always uses its ServiceAccount",
	"enableEndpointSlices": "vipd always reads EndpointSlices",
	"taint":                "vipd's DaemonSet runs on control-plane nodes and tolerates their taints (--nodes=control-plane, the default)",
}

// KubeVipUnsupported are kube-vip modes vipd does not have: each flag is an
// error that says what vipd does instead, never a different manifest.
var KubeVipUnsupported = map[string]string{
	"bgp":                          "BGP is not supported: vipd announces with ARP/NDP only; drop --bgp and its peer flags and use --arp (the VIPs must be in the nodes' layer-2 segment)",
	"bgpRouterID":                  "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"localAS":                      "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"peerAddress":                  "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"peerAS":                       "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"peerPass":                     "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"bgppeers":                     "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"multihop":                     "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"sourceIF":                     "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"sourceIP":                     "BGP is not supported (vipd announces with ARP/NDP only): drop the BGP flags and use --arp",
	"table":                        "routing-table mode is not supported: vipd puts VIPs on the interface and announces them with ARP/NDP; drop --table and use --arp",
	"tableID":                      "routing-table mode is not supported: drop --table and its flags and use --arp",
	"wireguard":                    "WireGuard mode is not supported: drop --wireguard and use --arp",
	"enableLoadBalancer":           "IPVS load balancing of the control plane is not supported: the VIP goes to one API server at a time; drop --enableLoadBalancer",
	"lbPort":                       "IPVS load balancing of the control plane is not supported: drop --enableLoadBalancer and --lbPort",
	"lbForwardingMethod":           "IPVS load balancing of the control plane is not supported: drop --enableLoadBalancer and --lbForwardingMethod",
	"ddns":                         "DHCP/DDNS allocation of the VIP is not supported: give a fixed --address",
	"leaderElectionType":           "only Kubernetes Leases elect: drop --leaderElectionType",
	"enableNodeLabeling":           "node labelling is not supported: vipd status shows who holds which VIP",
	"mirrorDestInterface":          "traffic mirroring is not supported: drop --mirrorDestInterface",
	"onlyAllowTrafficServicePorts": "filtering Service traffic is not supported: drop --onlyAllowTrafficServicePorts",
}

// AddKubeVipFlags registers kube-vip's flags on fs, hidden from --help
// (docs/migrating-from-kube-vip.md lists them).
func AddKubeVipFlags(fs *pflag.FlagSet) {
	add := func(name, usage string, sw bool) {
		if fs.Lookup(name) != nil {
			return // vipd has a flag of that name with the same meaning (--address, --port)
		}
		fs.String(name, "", usage)
		f := fs.Lookup(name)
		if sw {
			f.NoOptDefVal = "true"
		}
		f.Hidden = true
	}
	for name, setting := range KubeVipFlags {
		add(name, "kube-vip's name for --"+strings.ReplaceAll(strings.ToLower(setting), "_", "-"), kubeVipSwitches[name])
	}
	for name, why := range KubeVipAccepted {
		add(name, "kube-vip's flag, accepted: "+why, true)
	}
	for name, why := range KubeVipUnsupported {
		add(name, why, name == "bgp" || name == "table" || name == "wireguard" || name == "enableLoadBalancer" || name == "ddns" || name == "multihop" || name == "enableNodeLabeling" || name == "onlyAllowTrafficServicePorts")
	}
}

// ApplyKubeVipFlags moves the values of kube-vip's flags given on fs to
// vipd's own flags, and refuses kube-vip modes vipd does not have. A
// kube-vip flag and vipd's flag for the same setting with different values
// is an error.
func ApplyKubeVipFlags(fs *pflag.FlagSet) error {
	var errs []string
	var names []string
	for name := range KubeVipUnsupported {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if f := fs.Lookup(name); f != nil && f.Changed {
			errs = append(errs, fmt.Sprintf("--%s: %s", name, KubeVipUnsupported[name]))
		}
	}
	names = names[:0]
	for name := range KubeVipFlags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f := fs.Lookup(name)
		if f == nil || !f.Changed || !f.Hidden {
			continue
		}
		setting := KubeVipFlags[name]
		own := strings.ReplaceAll(strings.ToLower(setting), "_", "-")
		v := strings.TrimSpace(f.Value.String())
		if setting == "vip_subnet" {
			v = strings.TrimPrefix(v, "/") // kube-vip writes /32
		}
		target := fs.Lookup(own)
		if target == nil {
			continue
		}
		if target.Changed && target.Value.String() != v {
			errs = append(errs, fmt.Sprintf("--%s=%s and --%s=%s set the same setting %s differently: give one of them", name, v, own, target.Value.String(), setting))
			continue
		}
		if err := fs.Set(own, v); err != nil {
			errs = append(errs, fmt.Sprintf("--%s=%s: %v", name, v, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
