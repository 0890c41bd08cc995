package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/vipd/vipd/internal/config"
	"github.com/vipd/vipd/internal/manifest"
)

// K3sManifestDir is where K3s applies manifests from at start.
const K3sManifestDir = "/var/lib/rancher/k3s/server/manifests"

// manifestDefaults are the settings a generated manifest turns on, unlike the
// daemon's own defaults (which follow kube-vip's).
var manifestDefaults = map[string]string{"vip_arp": "true", "cp_enable": "true"}

type manifestFlags struct {
	image, kubeconfig, dir, nodes string
	events                        bool
}

func manifestCmd() *cobra.Command {
	var mf manifestFlags
	c := &cobra.Command{
		Use:   "manifest daemonset|pod|rbac|k3s",
		Short: "Print the Kubernetes manifests that install vipd",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return exitError{2, fmt.Errorf("unknown command %q for \"vipd manifest\": use daemonset, pod, rbac or k3s", args[0])}
			}
			return exitError{2, errors.New("say which manifest: vipd manifest daemonset|pod|rbac|k3s --address <VIP>")}
		},
		Long: `Print the manifests that install vipd, built from typed Kubernetes objects.

  daemonset  the DaemonSet for K3s and RKE2 (control-plane nodes, host network)
  pod        a static Pod for kubeadm (/etc/kubernetes/manifests)
  rbac       ServiceAccount, ClusterRole and binding with only the verbs needed
  k3s        write rbac and daemonset into K3s' auto-deploy folder and print
             the k3s server commands

The configuration flags are those of 'vipd manager'; --address is required.`,
	}
	pf := c.PersistentFlags()
	config.AddFlags(pf)
	pf.StringVar(&mf.image, "image", "ghcr.io/vipd/vipd:"+version, "Container image of vipd")
	pf.BoolVar(&mf.events, "events", true, "Allow vipd to post Events (diagnostics such as ServiceLB left on)")
	gen := func(name, short string, render func(manifest.Options) ([]byte, error)) *cobra.Command {
		return &cobra.Command{
			Use: name, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				o, err := manifestOptions(cmd.Flags(), mf)
				if err != nil {
					return exitError{2, err}
				}
				b, err := render(o)
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(b)
				return err
			},
		}
	}
	pf.StringVar(&mf.nodes, "nodes", "control-plane", "Nodes the DaemonSet runs on: control-plane (tolerating their taints; kube-vip's --taint) or all (spread mode on every node)")
	pod := gen("pod", "Static Pod for kubeadm", func(o manifest.Options) ([]byte, error) { return manifest.YAML(manifest.Pod(o)) })
	pod.Flags().StringVar(&mf.kubeconfig, "kubeconfig-path", "/etc/kubernetes/admin.conf", "Host path of the kubeconfig the static Pod mounts (super-admin.conf on kubeadm >= 1.29 during init)")
	k3s := &cobra.Command{
		Use: "k3s", Short: "Write RBAC and DaemonSet into K3s' manifests folder", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := manifestOptions(cmd.Flags(), mf)
			if err != nil {
				return exitError{2, err}
			}
			return writeK3s(cmd, o, mf.dir)
		},
	}
	k3s.Flags().StringVar(&mf.dir, "dir", K3sManifestDir, "K3s auto-deploy manifests folder (created if missing)")
	c.AddCommand(
		gen("daemonset", "DaemonSet for K3s and RKE2", func(o manifest.Options) ([]byte, error) { return manifest.YAML(manifest.DaemonSet(o)) }),
		pod,
		rbacCmd(&mf),
		k3s,
	)
	return c
}

// rbacCmd prints the RBAC objects: they depend only on the features
// (cp_enable, svc_enable) and Events, so no address is needed.
func rbacCmd(mf *manifestFlags) *cobra.Command {
	return &cobra.Command{
		Use: "rbac", Short: "ServiceAccount, ClusterRole and binding", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs := cmd.Flags()
			if err := config.ApplyKubeVipFlags(fs); err != nil {
				return exitError{2, fmt.Errorf("invalid flags:\n  - %s", strings.ReplaceAll(err.Error(), "\n", "\n  - "))}
			}
			env := func(name string) (string, bool) { v, ok := manifestDefaults[name]; return v, ok }
			o := manifest.Options{Events: mf.events}
			for _, kv := range config.Values(fs, env) {
				var dst *bool
				switch kv.Name {
				case "cp_enable":
					dst = &o.ControlPlane
				case "svc_enable":
					dst = &o.Services
				default:
					continue
				}
				b, err := strconv.ParseBool(kv.Value)
				if err != nil {
					return exitError{2, fmt.Errorf("invalid flags:\n  - --%s=%q is not a boolean: use true or false", strings.ReplaceAll(kv.Name, "_", "-"), kv.Value)}
				}
				*dst = b
			}
			b, err := manifest.YAML(manifest.RBAC(o)...)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}

// manifestOptions validates the flags as the daemon would validate its
// environment (except what only the node can check: the interface) and
// turns them into manifest options.
func manifestOptions(fs *pflag.FlagSet, mf manifestFlags) (manifest.Options, error) {
	env := func(name string) (string, bool) { v, ok := manifestDefaults[name]; return v, ok }
	cfg, err := config.Load(fs, config.Deps{Env: env})
	if err != nil {
		return manifest.Options{}, fmt.Errorf("invalid flags:\n  - %s", strings.ReplaceAll(flagNames(err.Error()), "\n", "\n  - "))
	}
	if strings.TrimSpace(mf.image) == "" {
		return manifest.Options{}, fmt.Errorf("--image is empty: give the vipd image, e.g. ghcr.io/vipd/vipd:%s", version)
	}
	port, err := manifest.MetricsPort(cfg.MetricsAddress)
	if err != nil {
		return manifest.Options{}, fmt.Errorf("--prometheus-server: %w", err)
	}
	o := manifest.Options{
		Image: mf.image, ControlPlane: cfg.ControlPlane, Services: cfg.Services, Events: mf.events,
		MetricsPort: port, Kubeconfig: mf.kubeconfig,
	}
	switch mf.nodes {
	case "control-plane":
	case "all":
		if f := fs.Lookup("taint"); f != nil && f.Changed {
			return manifest.Options{}, errors.New("--taint (control-plane nodes only) and --nodes=all contradict each other: give one of them")
		}
		o.AllNodes = true
	default:
		return manifest.Options{}, fmt.Errorf("--nodes=%q: use control-plane or all", mf.nodes)
	}
	// kube-vip's --k8sConfigPath is the kubeconfig its static Pod mounts.
	if f := fs.Lookup("kubeconfig-path"); (f == nil || !f.Changed) && cfg.Kubeconfig != "" {
		o.Kubeconfig = cfg.Kubeconfig
	}
	for _, kv := range config.Values(fs, env) {
		switch kv.Name {
		case "vip_nodename", "k8s_config_file", "k8s_api":
			continue // from spec.nodeName (DaemonSet) or the host name; the Pod adds its kubeconfig and k8s_api
		}
		if kv.Value == "" && kv.Name != "prometheus_server" {
			continue
		}
		o.Env = append(o.Env, corev1.EnvVar{Name: kv.Name, Value: kv.Value})
	}
	if o.AllNodes && cfg.ControlPlane {
		// On every node, only control-plane nodes may take the control-plane
		// VIP: with the gate from the start (cp_healthcheck=true) a node
		// competes only once its own API server is ready, which a worker
		// never is (cp_healthcheck=auto arms the gate only after a first
		// success, so a worker would compete).
		if cfg.HealthMode == "false" {
			return manifest.Options{}, errors.New("--nodes=all with the control-plane VIP needs the health gate, and --cp-healthcheck=false turns it off: a worker, which runs no API server, would take the control-plane VIP. Drop --cp-healthcheck=false, or keep --nodes=control-plane")
		}
		o.Env = slices.DeleteFunc(o.Env, func(e corev1.EnvVar) bool { return e.Name == "cp_healthcheck" })
		o.Env = append(o.Env, corev1.EnvVar{Name: "cp_healthcheck", Value: "true"})
	}
	return o, nil
}

// flagNames rewrites "env x" and bare setting names in config errors into
// the flag a user of 'vipd manifest' typed.
func flagNames(msg string) string {
	for _, s := range config.Settings {
		re := regexp.MustCompile(`(^|[^-\w])(?:default of |env )?` + regexp.QuoteMeta(s.Env) + `=`)
		msg = re.ReplaceAllString(msg, "${1}--"+s.Flag()+"=")
	}
	return msg
}

func writeK3s(cmd *cobra.Command, o manifest.Options, dir string) error {
	rbac, err := manifest.YAML(manifest.RBAC(o)...)
	if err != nil {
		return err
	}
	ds, err := manifest.YAML(manifest.DaemonSet(o))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w (run as root, or choose another --dir)", dir, err)
	}
	out := cmd.OutOrStdout()
	for _, f := range []struct {
		name string
		data []byte
	}{{"vipd-rbac.yaml", rbac}, {"vipd.yaml", ds}} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, 0o600); err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s\n", p)
	}
	for _, old := range []string{"kube-vip.yaml", "kube-vip-rbac.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, old)); err == nil {
			fmt.Fprintf(out, "warning: %s is still there: remove it so that kube-vip and vipd do not both manage the VIP\n", filepath.Join(dir, old))
		}
	}
	vip := envValue(o.Env, "address")
	fmt.Fprintf(out, `
First server:
  curl -sfL https://get.k3s.io | sh -s - server --cluster-init --tls-san %[1]s --disable servicelb --disable-cloud-controller

Other servers (after copying the token from /var/lib/rancher/k3s/server/node-token on the first):
  curl -sfL https://get.k3s.io | K3S_TOKEN=<token> sh -s - server --server https://%[1]s:6443 --tls-san %[1]s --disable servicelb --disable-cloud-controller
`, vip)
	return nil
}

func envValue(env []corev1.EnvVar, name string) string {
	for _, e := range env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
