// Package config turns kube-vip style environment variables and vipd flags
// into validated, typed options. Only the wiring in cmd/vipd sees the whole
// Config; every component receives its own small options struct.
//
// Every setting has an environment variable with kube-vip's name and meaning
// (so an existing kube-vip DaemonSet works after replacing its image) and a
// flag of the same name with '_' written as '-'. A flag given on the command
// line wins over the environment, which wins over the default.
package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/vipd/vipd/internal/election"
)

// Setting describes one configuration knob.
type Setting struct {
	// Env is the environment variable, spelled as kube-vip spells it.
	Env string
	// Default is used when neither the flag nor the variable is set.
	Default string
	// Help is what vipd manager --help says of it, and the meaning
	// docs/configuration.md gives it (TestEverySettingIsDocumented).
	Help string
}

// Flag is the command-line flag name of the setting.
func (s Setting) Flag() string { return strings.ReplaceAll(strings.ToLower(s.Env), "_", "-") }

// Settings lists every knob vipd reads, in the order docs/configuration.md documents them.
var Settings = []Setting{
	{"address", "", "The control-plane VIP: an IP address, or a DNS name resolved as dns_mode says, re-resolved every 30 s, and the VIP moved when it changes."},
	{"port", "6443", "Port of the API server behind the VIP (the health gate's and k8s_api=local's port)."},
	{"vip_interface", "", "Interface that carries the VIP. Empty: the interface whose subnet contains the VIP."},
	{"vip_subnet", "", "Prefix length of the VIP on the interface. Empty: 32 for IPv4, 128 for IPv6."},
	{"dns_mode", "first", "How a DNS name in address is resolved: first (the first address returned), ipv4 or ipv6."},
	{"vip_arp", "false", "Announce the VIP with gratuitous ARP (IPv4) / unsolicited neighbor advertisements (IPv6), the only announcement mode: must be true."},
	{"vip_arpRate", "3000", "Milliseconds between periodic gratuitous ARPs after the takeover burst (3 in the first second)."},
	{"cp_enable", "false", "Manage the control-plane VIP."},
	{"cp_namespace", "kube-system", "Namespace of the control-plane Lease."},
	{"svc_enable", "false", "Manage LoadBalancer Service VIPs: addresses from the kube-vip.io/loadbalancerIPs annotation, spec.loadBalancerIP or the pools in ConfigMap kube-system/kubevip (docs/services.md)."},
	{"svc_namespace", "", "Serve only the LoadBalancer Services of this namespace. Empty: all namespaces."},
	{"svc_pools_only", "false", "Accept for a Service only an address inside an address pool its namespace may use (cidr-<namespace>/range-<namespace>, or cidr-global/range-global), and refuse any other with Event AddressOutsidePools. Turn it on when people you do not fully trust can create LoadBalancer Services. Off (kube-vip's behaviour): a Service may also ask for any free address outside the pools; nodes', the API server's, the gateway's and another namespace's pool's addresses are refused either way."},
	{"svc_spread", "false", "Spread mode: Service VIPs spread over every node running vipd with svc_enable (each node renews a heartbeat Lease vipd-node-<node> in cp_namespace; docs/spread.md); false: the holder of svc_leasename owns every externalTrafficPolicy: Cluster VIP."},
	{"svc_election", "false", "kube-vip's name for per-Service election: true selects spread mode, as svc_spread=true does."},
	{"svc_leasename", "plndr-svcs-lock", "Name of the Services Lease (in cp_namespace): its holder owns every externalTrafficPolicy: Cluster VIP and allocates pool addresses."},
	{"vip_servicesinterface", "", "Interface that carries Service VIPs. Empty: vip_interface."},
	{"lb_class_only", "false", "Serve only Services whose spec.loadBalancerClass is lb_class_name; otherwise Services without a class are served too."},
	{"lb_class_name", "kube-vip.io/kube-vip-class", "The spec.loadBalancerClass vipd serves (kube-vip's, so existing Services keep working)."},
	{"vip_leaderelection", "true", "Elect one owner through a Lease. vipd always elects; false is accepted with a warning (it would put the VIP on every node)."},
	{"vip_leasename", "plndr-cp-lock", "Name of the control-plane Lease."},
	{"vip_leaseduration", "5", "Seconds; a follower takes over when the Lease it observed has not changed for this long."},
	{"vip_renewdeadline", "3", "Seconds; a holder without a successful renewal for this long removes the VIP (the local fence). Also the VIP's kernel lifetime."},
	{"vip_retryperiod", "1", "Seconds between renewals, and between tries of a follower: whole (1, kube-vip's form), decimal (0.5) or a duration (500ms); at least 0.2 s."},
	{"vip_nodename", "", "Identity in the Lease: the node name (set it from spec.nodeName in a Pod, or rely on hostNetwork's host name). Empty: the host name."},
	{"prometheus_server", ":2112", "Address of /metrics, /healthz and /readyz. Empty disables the server."},
	{"k8s_config_file", "", "Path of a kubeconfig. Empty: $KUBECONFIG, else the in-cluster ServiceAccount."},
	{"k8s_api", "", "Which API server vipd talks to: empty (the kubeconfig's server or the in-cluster Service) or local (this node's, at https://127.0.0.1:<port> with the same credentials, the certificate checked for the name kubernetes)."},
	{"cp_healthcheck", "auto", "Gate the control-plane VIP on the local API server's /readyz: auto (once it has answered ready), true (from the start: a node competes only after its API server is ready) or false."},
	{"cp_healthcheck_url", "", "Readiness URL of the local API server. Empty: https://127.0.0.1:<port>/readyz."},
	{"cp_healthcheck_failures", "3", "Failed checks in a row (one per second) that close the gate: the holder steps down and the node stays out until a check passes."},
	{"cp_healthcheck_ca", "", "CA file to verify the local API server; empty skips verification (only readiness is read, no credentials are sent)."},
}

// Aliases are older kube-vip names still found in manifests: alias -> setting.
var Aliases = map[string]string{
	"vip_address": "address",
	"vip_cidr":    "vip_subnet",
}

// unsupported are kube-vip modes vipd does not have; enabling one is a
// warning, since the manifest otherwise works.
var unsupported = map[string]string{
	"bgp_enable":       "BGP is not supported: vipd announces with ARP/NDP only",
	"vip_wireguard":    "WireGuard mode is not supported",
	"vip_routingtable": "routing-table mode is not supported",
	"lb_enable":        "IPVS load balancing of the control plane is not supported: the VIP goes to one API server",
}

// Config is the validated configuration of one vipd process.
type Config struct {
	// Address is the VIP as the user wrote it (IP or DNS name).
	Address string
	// VIP is Address resolved at start-up.
	VIP netip.Addr
	// IsName is true when Address is a DNS name to be followed.
	IsName bool
	Port   int
	// Interface is the link that carries the VIP (chosen when not given).
	Interface string
	// Bits is the prefix length used for the VIP on the interface.
	Bits         int
	DNSMode      string
	ARP          bool
	ARPRate      time.Duration
	ControlPlane bool
	Namespace    string
	Services     bool
	LeaseName    string
	// Services settings.
	SvcNamespace   string
	SvcLeaseName   string
	SvcInterface   string
	SvcPoolsOnly   bool
	SvcSpread      bool
	LBClassOnly    bool
	LBClassName    string
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration
	NodeName       string
	MetricsAddress string
	Kubeconfig     string
	// LocalAPI makes vipd talk to the API server on 127.0.0.1:Port.
	LocalAPI bool
	// Health gate settings (see package health).
	HealthMode     string
	HealthURL      string
	HealthFailures int
	HealthCA       string
	// Warnings are settings accepted but not honoured as written; the caller logs them.
	Warnings []string
}

// Iface is what validation needs to know of a network interface.
type Iface struct {
	Name     string
	Prefixes []netip.Prefix
}

// Env is a lookup of environment variables (os.LookupEnv in production).
type Env func(string) (string, bool)

// Resolver resolves a DNS name to addresses.
type Resolver func(name string) ([]netip.Addr, error)

// Deps are the host facts validation consults, injected so it is testable
// without a network.
type Deps struct {
	Env        Env
	Resolve    Resolver
	Interfaces func() ([]Iface, error)
	Hostname   func() (string, error)
}

// AddFlags registers one flag per setting on fs.
func AddFlags(fs *pflag.FlagSet) {
	for _, s := range Settings {
		fs.String(s.Flag(), "", fmt.Sprintf("%s (env %s, default %q)", s.Help, s.Env, s.Default))
		if s.Default == "true" || s.Default == "false" {
			// A switch alone turns it on: --svc-enable is --svc-enable=true.
			fs.Lookup(s.Flag()).NoOptDefVal = "true"
		}
	}
	AddKubeVipFlags(fs)
}

// raw returns the string value of a setting: flag, else environment, else default.
type raw struct {
	fs  *pflag.FlagSet
	env Env
}

func (r raw) get(name string) (val, origin string) {
	for _, s := range Settings {
		if s.Env != name {
			continue
		}
		if r.fs != nil {
			if f := r.fs.Lookup(s.Flag()); f != nil && f.Changed {
				return strings.TrimSpace(f.Value.String()), "--" + s.Flag()
			}
		}
		v, ok := r.env(s.Env)
		if ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v), "env " + s.Env
		}
		for alias, of := range Aliases {
			if a, aok := r.env(alias); of == s.Env && aok && strings.TrimSpace(a) != "" {
				return strings.TrimSpace(a), "env " + alias
			}
		}
		if ok {
			return "", "env " + s.Env
		}
		return s.Default, "default of " + s.Env
	}
	panic("config: unknown setting " + name)
}

// KV is one setting's value as given (flag, environment or default).
type KV struct{ Name, Value string }

// Values returns the value of every setting, in Settings order, as Load
// would read it. Manifests are written from these.
func Values(fs *pflag.FlagSet, env Env) []KV {
	r := raw{fs: fs, env: env}
	out := make([]KV, 0, len(Settings))
	for _, s := range Settings {
		v, _ := r.get(s.Env)
		out = append(out, KV{s.Env, v})
	}
	return out
}

// Load reads flags and environment and validates the result. Every error names
// the offending setting, its value and what to do.
func Load(fs *pflag.FlagSet, d Deps) (*Config, error) {
	if fs != nil {
		if err := ApplyKubeVipFlags(fs); err != nil {
			return nil, err
		}
	}
	l := &loader{r: raw{fs: fs, env: d.Env}}
	c := &Config{}
	c.loadModes(l, d)
	c.loadTimings(l)
	c.loadNode(l, d)
	c.loadHealth(l)
	if c.DNSMode, _ = l.r.get("dns_mode"); c.DNSMode != "first" && c.DNSMode != "ipv4" && c.DNSMode != "ipv6" {
		l.fail(fmt.Errorf("dns_mode=%q is not supported: use first, ipv4 or ipv6", c.DNSMode))
	}
	c.checkTimings(l)
	if !c.ARP {
		l.fail(errors.New("vip_arp is not true and no other announcement mode is enabled, so nothing would tell the network where the VIP is: set vip_arp=true"))
	}
	if !c.ControlPlane && !c.Services {
		l.fail(errors.New("neither cp_enable nor svc_enable is true, so vipd has nothing to do: set cp_enable=true for the control-plane VIP"))
	}
	if c.ControlPlane {
		l.errs = append(l.errs, c.loadAddress(l.r, d)...)
	}
	if c.Services {
		l.errs = append(l.errs, c.loadServicesInterface(l.r, d)...)
	}
	if c.HealthURL == "" {
		c.HealthURL = fmt.Sprintf("https://127.0.0.1:%d/readyz", c.Port)
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	return c, nil
}

// loader reads settings and collects what is wrong with them.
type loader struct {
	r    raw
	errs []error
}

func (l *loader) fail(err error) { l.errs = append(l.errs, err) }

func (l *loader) boolean(name string) bool {
	v, origin := l.r.get(name)
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.fail(fmt.Errorf("%s=%q is not a boolean: use true or false", origin, v))
	}
	return b
}

func (l *loader) seconds(name string) time.Duration {
	v, origin := l.r.get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		l.fail(fmt.Errorf("%s=%q must be a whole number of seconds greater than 0", origin, v))
		return 0
	}
	return time.Duration(n) * time.Second
}

// between reads a whole number from lo to hi; wrong says what to use.
func (l *loader) between(name string, lo, hi int, wrong string) int {
	v, origin := l.r.get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		l.fail(fmt.Errorf("%s=%q %s", origin, v, wrong))
	}
	return n
}

// loadModes reads what vipd does: the announcement, the control-plane VIP,
// the Services and their mode.
func (c *Config) loadModes(l *loader, d Deps) {
	c.ARP = l.boolean("vip_arp")
	c.ControlPlane = l.boolean("cp_enable")
	c.Services = l.boolean("svc_enable")
	c.LBClassOnly = l.boolean("lb_class_only")
	c.LBClassName, _ = l.r.get("lb_class_name")
	c.SvcPoolsOnly = l.boolean("svc_pools_only")
	c.SvcSpread = l.boolean("svc_spread") || l.boolean("svc_election")
	c.SvcNamespace, _ = l.r.get("svc_namespace")
	c.SvcLeaseName, _ = l.r.get("svc_leasename")
	if c.Services && c.SvcLeaseName == "" {
		l.fail(errors.New("svc_leasename is empty: set it to the Services Lease name, plndr-svcs-lock by default"))
	}
	if !l.boolean("vip_leaderelection") {
		c.Warnings = append(c.Warnings, "vip_leaderelection=false ignored: without an election every node would put the VIP on its interface; vipd always elects one owner through the Lease")
	}
	for _, name := range []string{"bgp_enable", "vip_wireguard", "vip_routingtable", "lb_enable"} {
		if v, ok := d.Env(name); ok {
			if b, _ := strconv.ParseBool(v); b {
				c.Warnings = append(c.Warnings, fmt.Sprintf("%s=%s ignored: %s", name, v, unsupported[name]))
			}
		}
	}
}

// loadTimings reads the Lease timings and the announcement rate.
// Timing is the electors' durations (vip_leaseduration, vip_renewdeadline,
// vip_retryperiod).
func (c *Config) Timing() election.Timing {
	return election.Timing{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
}

func (c *Config) loadTimings(l *loader) {
	c.LeaseDuration = l.seconds("vip_leaseduration")
	c.RenewDeadline = l.seconds("vip_renewdeadline")
	v, origin := l.r.get("vip_retryperiod")
	d, err := parsePeriod(v)
	if err != nil {
		l.fail(fmt.Errorf("%s=%q %v", origin, v, err))
	}
	c.RetryPeriod = d
	c.ARPRate = time.Duration(l.between("vip_arpRate", 100, math.MaxInt, "must be a number of milliseconds of at least 100 (default 3000)")) * time.Millisecond
	c.Port = l.between("port", 1, 65535, "is not a TCP port: use 1-65535 (the API server's port, 6443 on K3s, RKE2 and kubeadm)")
}

// loadNode reads where vipd runs: the Lease's namespace and name, the
// node's name, the kubeconfig, the API server it talks to.
func (c *Config) loadNode(l *loader, d Deps) {
	if c.Namespace, _ = l.r.get("cp_namespace"); c.Namespace == "" {
		c.Namespace = "kube-system"
	}
	if c.LeaseName, _ = l.r.get("vip_leasename"); c.LeaseName == "" {
		l.fail(errors.New("vip_leasename is empty: set it to the Lease name, plndr-cp-lock by default"))
	}
	c.MetricsAddress, _ = l.r.get("prometheus_server")
	if c.Kubeconfig, _ = l.r.get("k8s_config_file"); c.Kubeconfig == "" {
		c.Kubeconfig, _ = d.Env("KUBECONFIG")
	}
	c.NodeName, _ = l.r.get("vip_nodename")
	if c.NodeName == "" && d.Hostname != nil {
		h, err := d.Hostname()
		if err != nil {
			l.fail(fmt.Errorf("vip_nodename is empty and the host name cannot be read (%w): set vip_nodename, from spec.nodeName in a Pod", err))
		}
		c.NodeName = h
	}
	switch v, origin := l.r.get("k8s_api"); v {
	case "":
	case "local":
		c.LocalAPI = true
	default:
		l.fail(fmt.Errorf("%s=%q: use local (this node's API server) or leave it empty", origin, v))
	}
}

// loadHealth reads the local API server's health gate.
func (c *Config) loadHealth(l *loader) {
	v, origin := l.r.get("cp_healthcheck")
	if strings.ToLower(v) == "auto" {
		c.HealthMode = "auto"
	} else {
		b, err := strconv.ParseBool(v)
		if err != nil {
			l.fail(fmt.Errorf("%s=%q: use auto, true or false", origin, v))
		}
		c.HealthMode = strconv.FormatBool(b)
	}
	c.HealthFailures = l.between("cp_healthcheck_failures", 1, math.MaxInt, "must be a whole number of at least 1 (default 3)")
	c.HealthURL, _ = l.r.get("cp_healthcheck_url")
	c.HealthCA, _ = l.r.get("cp_healthcheck_ca")
}

// checkTimings holds the timings to the rules that make the kernel
// lifetime a fence (S2).
func (c *Config) checkTimings(l *loader) {
	if c.LeaseDuration <= 0 || c.RenewDeadline <= 0 || c.RetryPeriod <= 0 {
		return
	}
	if m := election.FenceMargin; c.LeaseDuration < c.RenewDeadline+m {
		l.fail(fmt.Errorf("vip_leaseduration=%d must exceed vip_renewdeadline=%d by at least %d seconds: the kernel removes an expired VIP up to a second late, and another node may take the Lease after vip_leaseduration; use vip_leaseduration=%d or a smaller vip_renewdeadline",
			secs(c.LeaseDuration), secs(c.RenewDeadline), secs(m), secs(c.RenewDeadline+m)))
	}
	if c.RenewDeadline <= 2*c.RetryPeriod {
		l.fail(fmt.Errorf("vip_renewdeadline=%d must be more than twice vip_retryperiod=%s so that a holder gets several renewal tries before its VIP is fenced; use vip_renewdeadline=%d or a smaller vip_retryperiod",
			secs(c.RenewDeadline), fsecs(c.RetryPeriod), secs(2*c.RetryPeriod)+1))
	}
	if c.RenewDeadline < MinRenewDeadline {
		l.fail(fmt.Errorf("vip_renewdeadline=%d is below %d seconds: the kernel keeps a VIP's lifetime in whole seconds, counted from the renewal, so a shorter deadline leaves it none; use vip_renewdeadline=%d (the fast profile is vip_leaseduration=4, vip_renewdeadline=2, vip_retryperiod=0.5)",
			secs(c.RenewDeadline), secs(MinRenewDeadline), secs(MinRenewDeadline)))
	}
}

func (c *Config) loadAddress(r raw, d Deps) []error {
	var errs []error
	addr, origin := r.get("address")
	c.Address = addr
	if addr == "" {
		return []error{errors.New("address is empty: set address (or --address) to the control-plane VIP, a free IP address in the nodes' subnet")}
	}
	if ip, err := netip.ParseAddr(addr); err == nil {
		c.VIP = ip.Unmap()
	} else if strings.ContainsAny(addr, ":/") || !looksLikeName(addr) {
		return []error{fmt.Errorf("%s=%q is neither an IP address nor a DNS name: write the VIP like 198.51.100.200 or 2001:db8::200, without a prefix length (use vip_subnet for that)", origin, addr)}
	} else if d.Resolve == nil {
		// Generating manifests: the name is resolved on the node, later.
		c.IsName = true
		return nil
	} else {
		c.IsName = true
		ip, err := ResolveOne(d.Resolve, addr, c.DNSMode)
		if err != nil {
			return []error{fmt.Errorf("%s=%q: %w", origin, addr, err)}
		}
		c.VIP = ip
	}
	if !c.VIP.IsGlobalUnicast() && !c.VIP.IsPrivate() {
		errs = append(errs, fmt.Errorf("%s=%q is not a unicast address a host can own: use a free address in the nodes' subnet", origin, addr))
	}

	max := c.VIP.BitLen()
	if v, o := r.get("vip_subnet"); v == "" {
		c.Bits = max
	} else if n, err := strconv.Atoi(v); err != nil || n < 1 || n > max {
		errs = append(errs, fmt.Errorf("%s=%q is not a prefix length for %s: use %d (a single address, as kube-vip does) or 1-%d", o, v, c.VIP, max, max))
	} else {
		c.Bits = n
	}
	return append(errs, c.loadInterface(r, d)...)
}

// loadInterface chooses the control-plane VIP's interface: vip_interface,
// which must exist here, or the one whose subnet contains the VIP.
func (c *Config) loadInterface(r raw, d Deps) []error {
	var errs []error
	var origin string
	c.Interface, origin = r.get("vip_interface")
	if d.Interfaces == nil {
		return errs
	}
	ifaces, err := d.Interfaces()
	if err != nil {
		return append(errs, fmt.Errorf("listing network interfaces: %w", err))
	}
	home := interfaceFor(ifaces, c.VIP)
	if c.Interface == "" {
		if home == "" {
			return append(errs, fmt.Errorf("vip_interface is empty and no interface here has a subnet that contains %s (interfaces: %s): set vip_interface to the interface on the VIP's network", c.VIP, names(ifaces)))
		}
		c.Interface = home
		return errs
	}
	for _, i := range ifaces {
		if i.Name == c.Interface {
			return errs
		}
	}
	hint := ""
	if home != "" {
		hint = fmt.Sprintf("; %s has a subnet that contains %s, so set vip_interface=%s (or leave it empty to choose it automatically)", home, c.VIP, home)
	}
	host := c.NodeName
	if host == "" {
		host = "this node"
	}
	return append(errs, fmt.Errorf("%s=%q: no such interface on node %s; interfaces here: %s%s. Interface names differ between servers: check with `ip -br addr` on each node", origin, c.Interface, host, names(ifaces), hint))
}

// loadServicesInterface chooses the interface of Service VIPs:
// vip_servicesinterface, else vip_interface (as given, or as chosen for the
// control-plane VIP).
func (c *Config) loadServicesInterface(r raw, d Deps) []error {
	name, origin := r.get("vip_servicesinterface")
	if name == "" && c.ControlPlane {
		// vip_interface, checked (or chosen) with the control-plane VIP.
		c.SvcInterface = c.Interface
		return nil
	}
	if name == "" {
		name, origin = r.get("vip_interface")
	}
	c.SvcInterface = name
	if name == "" {
		return []error{errors.New("svc_enable=true but neither vip_servicesinterface nor vip_interface is set: set vip_interface to the interface on the network where Service VIPs live")}
	}
	if d.Interfaces == nil {
		return nil
	}
	ifaces, err := d.Interfaces()
	if err != nil {
		return []error{fmt.Errorf("listing network interfaces: %w", err)}
	}
	for _, i := range ifaces {
		if i.Name == name {
			return nil
		}
	}
	host := c.NodeName
	if host == "" {
		host = "this node"
	}
	return []error{fmt.Errorf("%s=%q: no such interface on node %s; interfaces here: %s. Interface names differ between servers: check with `ip -br addr` on each node", origin, name, host, names(ifaces))}
}

// ResolveOne resolves name and picks one address according to mode.
func ResolveOne(resolve Resolver, name, mode string) (netip.Addr, error) {
	if resolve == nil {
		return netip.Addr{}, errors.New("is a DNS name but no resolver is available")
	}
	ips, err := resolve(name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("cannot resolve the name (%w): check DNS on the node, or write the VIP as an IP address", err)
	}
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case mode == "ipv4" && !ip.Is4(), mode == "ipv6" && !ip.Is6():
			continue
		}
		return ip, nil
	}
	return netip.Addr{}, fmt.Errorf("resolves to %v, which has no address for dns_mode=%s", ips, mode)
}

func looksLikeName(s string) bool {
	for _, r := range s {
		if !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	last := labels[len(labels)-1]
	// An all-numeric top label is a mistyped IP address, not a name.
	return strings.Trim(s, ".-") != "" && strings.Trim(last, "0123456789") != ""
}

// interfaceFor returns the interface with the longest prefix containing ip.
func interfaceFor(ifaces []Iface, ip netip.Addr) string {
	best, bits := "", -1
	for _, i := range ifaces {
		for _, p := range i.Prefixes {
			if p.Contains(ip) && p.Bits() < ip.BitLen() && p.Bits() > bits {
				best, bits = i.Name, p.Bits()
			}
		}
	}
	return best
}

func names(ifaces []Iface) string {
	var n []string
	for _, i := range ifaces {
		n = append(n, i.Name)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

func secs(d time.Duration) int { return int(d / time.Second) }

// fsecs prints d in seconds, with decimals only when needed (0.5, 1).
func fsecs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) }

// MinRetryPeriod is the shortest vip_retryperiod: every node writes its
// Lease once per retry period.
const MinRetryPeriod = 200 * time.Millisecond

// MinRenewDeadline is the shortest vip_renewdeadline: a VIP's kernel
// lifetime is whole seconds, what is left of the deadline after the
// renewal and the netlink call, rounded down; below 2 s that would be
// nothing.
const MinRenewDeadline = 2 * time.Second

// parsePeriod reads vip_retryperiod: kube-vip's whole seconds ("1"),
// decimal seconds ("0.5") or a Go duration ("500ms").
func parsePeriod(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > 3600 {
			return 0, errors.New("must be a number of seconds (1, 0.5) or a duration (500ms)")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < MinRetryPeriod {
		return 0, fmt.Errorf("must be at least %s seconds: every node writes its Lease once per retry period", fsecs(MinRetryPeriod))
	}
	return d, nil
}

// OSEnv is the process environment.
func OSEnv(name string) (string, bool) { return os.LookupEnv(name) }

// Prefix is the VIP with its prefix length, as it goes on the interface.
func (c *Config) Prefix() netip.Prefix { return netip.PrefixFrom(c.VIP, c.Bits) }

// String renders the configuration for the start-up log line.
func (c *Config) String() string {
	s := fmt.Sprintf("address=%s vip=%s interface=%s bits=%d lease=%s/%s duration=%s renew=%s retry=%s arpRate=%s node=%s metrics=%q",
		c.Address, c.VIP, c.Interface, c.Bits, c.Namespace, c.LeaseName, c.LeaseDuration, c.RenewDeadline, c.RetryPeriod, c.ARPRate, c.NodeName, c.MetricsAddress)
	if c.Services {
		s += fmt.Sprintf(" services: interface=%s lease=%s/%s namespace=%q class=%s classOnly=%t poolsOnly=%t spread=%t",
			c.SvcInterface, c.Namespace, c.SvcLeaseName, c.SvcNamespace, c.LBClassName, c.LBClassOnly, c.SvcPoolsOnly, c.SvcSpread)
	}
	return s
}
