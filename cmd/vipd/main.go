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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/config"
	"github.com/vipd/vipd/internal/controlplane"
	"github.com/vipd/vipd/internal/metrics"
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
	err := root(os.Stdout, os.Stderr).Execute()
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

func root(stdout, stderr io.Writer) *cobra.Command {
	c := &cobra.Command{
		Use:           "vipd",
		Short:         "Floating virtual IPs for bare-metal Kubernetes: control plane and LoadBalancer Services",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	c.SetOut(stdout)
	c.SetErr(stderr)
	c.AddCommand(versionCmd(), managerCmd(), manifestCmd())
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
from the kube-vip environment variable, else its default; see the README's
configuration reference.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log, err := newLogger(c.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return exitError{2, err}
			}
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

func resolve(name string) ([]netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return net.DefaultResolver.LookupNetIP(ctx, "ip", name)
}

func runManager(ctx context.Context, c *cobra.Command, log *slog.Logger) error {
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
		return exitError{2, fmt.Errorf("invalid configuration:\n  - %s", strings.ReplaceAll(err.Error(), "\n", "\n  - "))}
	}
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	log.Info("starting", "version", version, "config", cfg.String())

	client, err := kubeClient(cfg.Kubeconfig)
	if err != nil {
		return exitError{2, err}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	m := metrics.NewVIP(reg, cfg.Namespace+"/"+cfg.LeaseName, cfg.Prefix().String())

	sender := &announce.Link{Interface: cfg.Interface}
	defer sender.Close()
	opts := controlplane.Options{
		Client: client, Kernel: kernel, Sender: sender,
		Interface: cfg.Interface, Prefix: cfg.Prefix(),
		Namespace: cfg.Namespace, LeaseName: cfg.LeaseName, NodeName: cfg.NodeName,
		LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
		AnnouncePeriod: cfg.ARPRate, Metrics: m, Logger: log,
	}
	if cfg.IsName {
		opts.Resolve = func() (netip.Addr, error) { return config.ResolveOne(resolve, cfg.Address, cfg.DNSMode) }
		opts.ResolveEvery = 30 * time.Second
	}
	cp, err := controlplane.New(opts)
	if err != nil {
		return err
	}

	if cfg.MetricsAddress != "" {
		srv := &metrics.Server{
			Addr: cfg.MetricsAddress, Gatherer: reg, Log: log.With("component", "metrics"),
			Healthz: []metrics.Check{cp.Check},
			Readyz:  []metrics.Check{cp.Ready},
		}
		// The server ends with the main context, not the group's: it must keep
		// answering while the VIP steps down.
		if err := srv.Listen(); err != nil {
			return exitError{2, err}
		}
		go srv.Serve(ctx)
	}
	err = cp.Run(ctx)
	log.Info("stopped")
	return err
}

// kubeClient uses the kubeconfig at path when set, else the in-cluster
// ServiceAccount, as a Pod would.
func kubeClient(path string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if path != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("k8s_config_file/KUBECONFIG=%q: %w", path, err)
		}
	} else {
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubeconfig given and not running in a Pod (%w): set k8s_config_file or KUBECONFIG", err)
		}
	}
	rc.UserAgent = "vipd/" + version
	rc.QPS, rc.Burst = 20, 40
	return kubernetes.NewForConfig(rc)
}
