// Command vipd gives a Kubernetes cluster floating virtual IPs: one for the
// control plane, elected through a Lease, fenced by the kernel, announced
// with gratuitous ARP.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/config"
	"github.com/vipd/vipd/internal/controlplane"
	"github.com/vipd/vipd/internal/cordon"
	"github.com/vipd/vipd/internal/doctor"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/health"
	"github.com/vipd/vipd/internal/kubeapi"
	"github.com/vipd/vipd/internal/metrics"
	"github.com/vipd/vipd/internal/services"
	"github.com/vipd/vipd/internal/vip"
)

// Set with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// exitError carries the process exit code of a failure.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func main() {
	r := root(os.Stdout, os.Stderr)
	r.SetArgs(programArgs(os.Args[1:]))
	err := r.Execute()
	if err == nil {
		return
	}
	code := 1
	var ee exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(os.Stderr, "vipd: %v\n", err)
	os.Exit(code)
}

// programArgs drops a first argument that names the program itself: the
// image's entrypoint is /vipd, and users alias kube-vip as
// "ctr run ... <image> vip /kube-vip", so both "<image> manifest ..." and
// "<image> /vipd manifest ..." (or /kube-vip) must work.
func programArgs(args []string) []string {
	if len(args) > 0 {
		switch filepath.Base(args[0]) {
		case "vipd", "kube-vip":
			return args[1:]
		}
	}
	return args
}

func root(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:           "vipd",
		Short:         "Floating virtual IPs for bare-metal Kubernetes: control plane and LoadBalancer Services",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.SetOut(stdout)
	c.SetErr(stderr)
	c.AddCommand(versionCmd(), managerCmd(), manifestCmd(), statusCmd(), doctorCmd())
	return c
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version and commit",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprintf(c.OutOrStdout(), "vipd %s (commit %s)\n", version, commit)
			return nil
		},
	}
}

func managerCmd() *cobra.Command {
	var logFormat, logLevel string
	c := &cobra.Command{
		Use:   "manager",
		Short: "Run the daemon (what the DaemonSet runs)",
		Long: `Run the daemon. Every setting is read from the flag of the same name, else
from the kube-vip environment variable, else its default; every setting is described in docs/configuration.md of
vipd's source.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := newLogger(c.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return exitError{2, err}
			}
			routeKlog(log)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return runManager(ctx, c, log)
		},
	}
	config.AddFlags(c.Flags())
	c.Flags().StringVar(&logFormat, "log-format", "text", "Log format: text or json")
	c.Flags().StringVar(&logLevel, "log-level", "info", "Log level: debug, info, warn or error")
	return c
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level=%q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format=%q: use text or json", format)
}

// routeKlog sends client-go's own log (klog) through vipd's logger, in
// its format and at its level, with client-go's informational lines at
// debug level: what they report (a watch closed and opened again) vipd
// says itself, once, when it matters (package kubeapi).
func routeKlog(log *slog.Logger) {
	klog.SetSlogLogger(slog.New(quieter{log.Handler()}).With("component", "client-go"))
}

// quieter is a handler that logs info records at debug level.
type quieter struct{ h slog.Handler }

func (q quieter) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelInfo {
		l = slog.LevelDebug
	}
	return q.h.Enabled(ctx, l)
}

func (q quieter) Handle(ctx context.Context, r slog.Record) error {
	if r.Level == slog.LevelInfo {
		r.Level = slog.LevelDebug
	}
	return q.h.Handle(ctx, r)
}

func (q quieter) WithAttrs(a []slog.Attr) slog.Handler { return quieter{q.h.WithAttrs(a)} }
func (q quieter) WithGroup(g string) slog.Handler      { return quieter{q.h.WithGroup(g)} }

func resolve(name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

// loadConfig reads the manager's configuration from flags and environment,
// checking it against this host (interfaces, DNS).
func loadConfig(c *cobra.Command) (*config.Config, error) {
	kernel := vip.Netlink{}
	cfg, err := config.Load(c.Flags(), config.Deps{
		Env:      config.OSEnv,
		Resolve:  resolve,
		Hostname: os.Hostname,
		Interfaces: func() ([]config.Iface, error) {
			ifs, err := kernel.Interfaces()
			out := make([]config.Iface, len(ifs))
			for i, f := range ifs {
				out[i] = config.Iface{Name: f.Name, Prefixes: f.Prefixes}
			}
			return out, err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("invalid configuration:\n  - %s", strings.ReplaceAll(err.Error(), "\n", "\n  - "))
	}
	return cfg, nil
}

// apiClient returns the manager's rest config and client, and the addresses
// where its certificate checks look for an API server.
func apiClient(cfg *config.Config) (*rest.Config, kubernetes.Interface, []string, error) {
	apiPort := 0
	if cfg.LocalAPI {
		apiPort = cfg.Port
	}
	rc, apiHost, err := restConfig(cfg.Kubeconfig, apiPort)
	if err != nil {
		return nil, nil, nil, err
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, nil, nil, err
	}
	return rc, client, []string{
		apiHost,
		net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)),
		net.JoinHostPort(cfg.VIP.String(), strconv.Itoa(cfg.Port)),
	}, nil
}

func runManager(ctx context.Context, c *cobra.Command, log *slog.Logger) error {
	cfg, err := loadConfig(c)
	if err != nil {
		reportConfigError(c, log, err)
		return exitError{2, err}
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	log.Info("starting", "version", version, "config", cfg.String())

	rc, client, certAddrs, err := apiClient(cfg)
	if err != nil {
		return exitError{2, err}
	}
	// What every cache waits for (the API server, RBAC), said once and
	// then every minute, and in /readyz.
	api := kubeapi.NewTracker(rc.Host, log, nil)
	rep := &doctor.Reporter{Client: client, Namespace: cfg.Namespace, Lease: cfg.LeaseName, Node: cfg.NodeName, Log: log.With("component", "doctor")}
	if !cfg.ControlPlane {
		certAddrs = nil // no VIP to look for in certificates
	}
	go checkLoop(ctx, client, rep, log.With("component", "doctor"), certAddrs, cfg.VIP)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var healthz, readyz []metrics.Check
	var runs []func(context.Context) error

	// The Services controller never gives a Service the control-plane VIP,
	// also after a DNS name moved it; it plans again when it moves.
	reserved, onRetarget := func() netip.Addr { return cfg.VIP }, func() {}
	// kubectl drain cordons the node and evicts every Pod but vipd's (a
	// DaemonSet's): the VIPs leave a cordoned node for one that can take them.
	cordoned := cordon.New(client, api, cfg.NodeName, log)
	go cordoned.Run(ctx)
	// Another host answering for an address this node holds (package
	// conflict), counted per address.
	conflicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipd_address_conflicts_total",
		Help: "Times another host was seen answering for an address this node holds (or was about to claim), by address.",
	}, []string{"address"})
	reg.MustRegister(conflicts)
	onConflict := func(a netip.Addr) { conflicts.WithLabelValues(a.String()).Inc() }
	// One token for every Lease this process writes (vipd.io/instance and
	// vipd.io/seal): the claim check tells this process's Leases from
	// those of another process under the same node name by it.
	instance := election.NewInstance()
	log.Info("process token for this run's Lease writes", "instance", instance)
	if cfg.ControlPlane {
		cp, err := controlPlane(ctx, cfg, rc, client, reg, log, cordoned.View(), onConflict, func() { onRetarget() }, instance)
		if errors.Is(err, controlplane.ErrForeignAddress) {
			reportConfigError(c, log, err)
			return exitError{2, err}
		}
		if err != nil {
			return err
		}
		healthz, readyz = append(healthz, cp.Check), append(readyz, cp.Ready)
		runs = append(runs, cp.Run)
		reserved = cp.Addr
	}
	if cfg.Services {
		svc, err := servicesController(cfg, rc, reg, log, api, reserved, cordoned.View(), onConflict, instance)
		if err != nil {
			return err
		}
		onRetarget = svc.Replan
		healthz, readyz = append(healthz, svc.Check), append(readyz, svc.Ready)
		runs = append(runs, svc.Run)
	}

	if cfg.MetricsAddress != "" {
		srv := &metrics.Server{Addr: cfg.MetricsAddress, Gatherer: reg, Log: log.With("component", "metrics"), Healthz: healthz, Readyz: readyz}
		// The server ends with the main context, not the group's: it must keep
		// answering while the VIPs step down.
		if err := srv.Listen(); err != nil {
			return exitError{2, err}
		}
		go srv.Serve(ctx)
	}
	// Each part steps down on its own when ctx ends; a part that fails ends
	// the others too (the process exits and the DaemonSet restarts it).
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(runs))
	for _, run := range runs {
		go func() {
			err := run(gctx)
			cancel()
			errs <- err
		}()
	}
	var all []error
	for range runs {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	log.Info("stopped")
	return errors.Join(all...)
}

// controlPlane prepares the control-plane VIP.
func controlPlane(ctx context.Context, cfg *config.Config, rc *rest.Config, client kubernetes.Interface, reg prometheus.Registerer, log *slog.Logger, standby election.Standby, onConflict func(netip.Addr), onRetarget func(), instance string) (*controlplane.VIP, error) {
	m := metrics.NewVIP(reg, cfg.Namespace+"/"+cfg.LeaseName, cfg.Prefix().String())
	opts := controlplane.Options{
		Client: client, Sender: &announce.Link{Interface: cfg.Interface},
		Interface: cfg.Interface, Prefix: cfg.Prefix(),
		Namespace: cfg.Namespace, LeaseName: cfg.LeaseName, NodeName: cfg.NodeName,
		Timing:         cfg.Timing(),
		AnnouncePeriod: cfg.ARPRate, Metrics: m, Logger: log, Instance: instance,
	}
	if cfg.IsName {
		opts.Resolve = func() (netip.Addr, error) { return config.ResolveOne(resolve, cfg.Address, cfg.DNSMode) }
		opts.ResolveEvery = 30 * time.Second
	}
	gate, err := health.New(health.Options{
		Mode: health.Mode(cfg.HealthMode), URL: cfg.HealthURL, CAFile: cfg.HealthCA,
		Every: time.Second, Failures: cfg.HealthFailures,
		Logger: log.With("component", "health"), OnChange: m.SetGateOpen,
	})
	if err != nil {
		return nil, exitError{2, err}
	}
	m.SetGateOpen(gate.Open())
	go gate.Run(ctx)
	opts.Gate = gate
	opts.Standby = standby
	opts.Probe, opts.Listen = prober(cfg.Interface), listener(cfg.Interface)
	opts.MAC = macOf(cfg.Interface)
	opts.OnConflict = onConflict
	opts.Events = &events.Poster{Client: client, Node: cfg.NodeName, Log: log.With("component", "events")}
	opts.OnRetarget = onRetarget
	opts.FreshClient = func() (kubernetes.Interface, error) {
		// A Dial of its own gives the client its own transport: client-go
		// shares one between identical configs.
		fresh := rest.CopyConfig(rc)
		fresh.Dial = (&net.Dialer{Timeout: 2 * time.Second}).DialContext
		return kubernetes.NewForConfig(fresh)
	}
	kernel, err := vip.NewNetlink()
	if err != nil {
		return nil, exitError{2, err}
	}
	opts.Kernel = kernel
	return controlplane.New(opts)
}

// servicesController prepares the LoadBalancer Services controller. It has
// a client of its own with a higher rate limit: at start it may write
// annotations and status of every Service.
func servicesController(cfg *config.Config, rc *rest.Config, reg prometheus.Registerer, log *slog.Logger, api *kubeapi.Tracker, reserved func() netip.Addr, standby election.Standby, onConflict func(netip.Addr), instance string) (*services.Controller, error) {
	src := rest.CopyConfig(rc)
	src.QPS, src.Burst = 200, 400
	client, err := kubernetes.NewForConfig(src)
	if err != nil {
		return nil, err
	}
	// Events through a client (and rate limit) of their own.
	erc := rest.CopyConfig(src)
	erc.QPS, erc.Burst = 100, 200
	evClient, err := kubernetes.NewForConfig(erc)
	if err != nil {
		return nil, err
	}
	m := metrics.NewVIP(reg, cfg.Namespace+"/"+cfg.SvcLeaseName, "services")
	kernel, err := vip.NewNetlink()
	if err != nil {
		return nil, exitError{2, err}
	}
	iface := cfg.SvcInterface
	ctl, err := services.New(services.Options{
		Client: client, EventClient: evClient,
		Namespace: cfg.SvcNamespace, LeaseNamespace: cfg.Namespace, LeaseName: cfg.SvcLeaseName, NodeName: cfg.NodeName,
		Timing: cfg.Timing(),
		Filter: services.ClassFilter{Name: cfg.LBClassName, Only: cfg.LBClassOnly}, PoolsOnly: cfg.SvcPoolsOnly, Mode: services.Mode{Spread: cfg.SvcSpread, Standby: standby},
		Reserved: reserved, Leader: m, Logger: log, Instance: instance, API: api,
		Datapath: services.Datapath{
			Kernel: kernel, Sender: &announce.Link{Interface: iface}, Interface: iface,
			AnnouncePeriod: cfg.ARPRate, Announce: m.Announced,
			HasIPv6: func() bool { return hasIPv6(kernel, iface) },
			Link: func() (services.Link, error) {
				p, gw, err := kernel.Neighbourhood(iface)
				return services.Link{Prefixes: p, Gateways: gw}, err
			},
			Probe: prober(iface), Listen: listener(iface),
			WatchEvery: time.Second, OnConflict: onConflict, MAC: macOf(iface),
		},
	})
	if err != nil {
		return nil, err
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vipd_service_vips_present", Help: "Service VIPs on this node's interface.",
	}, func() float64 { return float64(ctl.Holding()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vipd_datapath_wait_seconds", Help: "The longest a Service VIP waited for the kernel in the datapath's last round (a renewal refreshes every VIP's lifetime).",
	}, func() float64 { w, _ := ctl.DatapathLag(); return w.Seconds() }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vipd_datapath_late_rounds_total", Help: "Datapath rounds in which a Service VIP waited longer than the retry period: the kernel falls behind the renewals.",
	}, func() float64 { _, n := ctl.DatapathLag(); return float64(n) }))
	if cfg.SvcSpread {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vipd_spread_nodes", Help: "Spread mode: nodes this node sees live and eligible for Service VIPs (itself included).",
		}, func() float64 { n, _ := ctl.Spread(); return float64(n) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vipd_spread_ready", Help: "Spread mode: 1 once this node has settled and is given its share of the Service VIPs.",
		}, func() float64 {
			if _, ready := ctl.Spread(); ready {
				return 1
			}
			return 0
		}))
		reg.MustRegister(heartbeats{ctl})
	}
	return ctl, nil
}

var (
	heartbeatAge = prometheus.NewDesc("vipd_spread_heartbeat_age_seconds",
		"Spread mode: seconds since this node saw the latest renewal of each node's heartbeat (a node is live while this stays under the lease duration).", []string{"node"}, nil)
	heartbeatVIPs = prometheus.NewDesc("vipd_spread_heartbeat_vips",
		"Spread mode: Service VIPs each node's heartbeat says it holds, as this node saw it.", []string{"node"}, nil)
)

// heartbeats exports, per node, what this node observed of its heartbeat.
type heartbeats struct{ c *services.Controller }

func (h heartbeats) Describe(ch chan<- *prometheus.Desc) {
	ch <- heartbeatAge
	ch <- heartbeatVIPs
}

func (h heartbeats) Collect(ch chan<- prometheus.Metric) {
	for _, b := range h.c.Beats() {
		ch <- prometheus.MustNewConstMetric(heartbeatAge, prometheus.GaugeValue, b.Age.Seconds(), b.Node)
		ch <- prometheus.MustNewConstMetric(heartbeatVIPs, prometheus.GaugeValue, float64(b.VIPs), b.Node)
	}
}

// hasIPv6 reports whether iface has a global IPv6 address of the node's own
// (a VIP, a full-length prefix, does not count).
func hasIPv6(k vip.Netlink, iface string) bool {
	ifs, err := k.Interfaces()
	if err != nil {
		return true // do not withhold VIPs on a failed lookup
	}
	for _, i := range ifs {
		if i.Name != iface {
			continue
		}
		for _, p := range i.Prefixes {
			if p.Addr().Is6() && p.Addr().IsGlobalUnicast() && p.Bits() < 128 {
				return true
			}
		}
	}
	return false
}

// restConfig uses the kubeconfig at path when set, else the in-cluster
// ServiceAccount, as a Pod would. With localPort it talks to this node's API
// server at 127.0.0.1:localPort with the same credentials (the certificate is
// checked for the name "kubernetes", which every API server certificate
// carries). It also returns the API server's host:port.
func restConfig(path string, localPort int) (*rest.Config, string, error) {
	var rc *rest.Config
	var err error
	if path != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, "", fmt.Errorf("k8s_config_file/KUBECONFIG=%q: %w", path, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("no kubeconfig given and not running in a Pod (%w): set k8s_config_file or KUBECONFIG", err)
		}
	}
	if localPort > 0 {
		rc.Host = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(localPort))
		rc.TLSClientConfig.ServerName = "kubernetes"
	}
	rc.UserAgent = "vipd/" + version
	rc.QPS, rc.Burst = 20, 40
	// Protobuf, as Kubernetes' own components talk to the API server:
	// every node decodes every Service, EndpointSlice and Lease change it
	// watches, and JSON costs several times the CPU to encode and decode
	// (vipd reads and writes only built-in types).
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	host := rc.Host
	if u, err := url.Parse(rc.Host); err == nil && u.Host != "" {
		host = u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
	}
	return rc, host, nil
}

// checkLoop runs the set-up checks at start and every minute: ServiceLB
// left enabled, and an API server certificate without the VIP, at every
// address where an API server answers (the one vipd uses, the local one, the
// VIP once it is up).
func checkLoop(ctx context.Context, c kubernetes.Interface, rep *doctor.Reporter, log *slog.Logger, certAddrs []string, vip netip.Addr) {
	for {
		for _, f := range runChecks(ctx, c, log, certAddrs, vip) {
			rep.Report(ctx, f)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Minute):
		}
	}
}

// runChecks runs every set-up check once.
func runChecks(ctx context.Context, c kubernetes.Interface, log *slog.Logger, certAddrs []string, vip netip.Addr) []doctor.Finding {
	dialer := &net.Dialer{}
	fs, err := doctor.ServiceLB(ctx, c)
	if err != nil {
		log.Debug("ServiceLB check", "err", err)
	}
	for _, a := range certAddrs {
		f, err := doctor.Certificate(ctx, dialer.DialContext, a, vip)
		if err != nil {
			log.Debug("certificate check", "addr", a, "err", err)
		}
		fs = append(fs, f...)
	}
	return fs
}

// reportConfigError posts a configuration error as an Event, best effort
// and within two seconds, so that a node with, say, a wrong interface name
// shows up in kubectl get events and not only in its own log.
func reportConfigError(c *cobra.Command, log *slog.Logger, err error) {
	v := map[string]string{}
	for _, kv := range config.Values(c.Flags(), config.OSEnv) {
		v[kv.Name] = kv.Value
	}
	kc := v["k8s_config_file"]
	if kc == "" {
		kc = os.Getenv("KUBECONFIG")
	}
	rc, _, cerr := restConfig(kc, 0)
	if cerr != nil {
		return
	}
	client, cerr := kubernetes.NewForConfig(rc)
	if cerr != nil {
		return
	}
	node := v["vip_nodename"]
	if node == "" {
		node, _ = os.Hostname()
	}
	ns := v["cp_namespace"]
	if ns == "" {
		ns = "kube-system"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rep := &doctor.Reporter{Client: client, Namespace: ns, Lease: v["vip_leasename"], Node: node, Log: slog.New(slog.DiscardHandler)}
	rep.Report(ctx, doctor.Finding{Reason: "InvalidConfiguration", Message: fmt.Sprintf("vipd on node %s: %v", node, err)})
}

// prober asks the wire on iface whether another host answers for addresses
// (announce.Probe).
func prober(iface string) func(context.Context, []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
	return func(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
		return announce.Probe(ctx, iface, addrs, announce.ProbeWindow)
	}
}

// listeners share one socket per interface between the conflict watches
// of the control-plane VIP and of the Services (announce.Listen).
var listeners announce.Listeners

// listener hears claims other hosts make on iface by themselves.
func listener(iface string) func(context.Context, func(netip.Addr, net.HardwareAddr)) error {
	return listeners.For(iface)
}

// macOf is iface's hardware address ("" if unknown).
func macOf(iface string) string {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return ""
	}
	return ifi.HardwareAddr.String()
}
