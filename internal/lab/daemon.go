package lab

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// SeedRBAC is the seed's kube-vip-rbac.yaml.
//
//go:embed seed/kube-vip-rbac.yaml
var SeedRBAC []byte

//go:embed seed/kube-vip.yaml.tpl
var seedDaemonSet []byte

// SeedDaemonSet is the seed's DaemonSet with VIP and interface substituted
// the way the seed does it (sed on the template).
func SeedDaemonSet(vip, iface string) []byte {
	b := bytes.ReplaceAll(seedDaemonSet, []byte("##VIP_ADDRESS##"), []byte(vip))
	return bytes.ReplaceAll(b, []byte("##VIP_INTERFACE##"), []byte(iface))
}

// Container is what the lab takes from a Pod template to run vipd: the
// arguments and the environment.
type Container struct {
	Args []string
	Env  []string
}

// ContainerOf reads the first container of a DaemonSet manifest.
// Environment values taken from spec.nodeName are filled with node.
func ContainerOf(manifest []byte, node string) (Container, error) {
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(manifest, &ds); err != nil {
		return Container{}, fmt.Errorf("parsing DaemonSet: %w", err)
	}
	if len(ds.Spec.Template.Spec.Containers) == 0 {
		return Container{}, fmt.Errorf("DaemonSet %s has no container", ds.Name)
	}
	c := ds.Spec.Template.Spec.Containers[0]
	out := Container{Args: append(c.Command[len(c.Command):], c.Args...)}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			v = node
		}
		out.Env = append(out.Env, e.Name+"="+v)
	}
	return out, nil
}

// VIPName resolves to the lab's VIP inside the nodes (through /etc/hosts).
const VIPName = "vip.lab.example"

// RunVipd starts vipd in node h the way the kubelet would start the
// container: the given arguments and environment, the host name set to the
// node name, KUBERNETES_SERVICE_HOST/PORT, and a ServiceAccount token at
// /var/run/secrets/kubernetes.io/serviceaccount (in a private mount
// namespace: the host's /run is not touched).
func (l *Lab) RunVipd(ctx context.Context, h *Host, c Container, token string) (*Proc, error) {
	bin, err := VipdBinary()
	if err != nil {
		return nil, err
	}
	sa := filepath.Join(l.Dir, "sa-"+h.Name)
	if err := os.MkdirAll(sa, 0o755); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"token": []byte(token), "ca.crt": l.PKI.CAPEM, "namespace": []byte("kube-system")} {
		if err := os.WriteFile(filepath.Join(sa, name), data, 0o644); err != nil {
			return nil, err
		}
	}
	// Name resolution inside the lab: /etc/hosts knows the lab's names, and
	// the only name server is a lab address where nothing answers, so no
	// DNS query ever leaves the lab.
	hosts := filepath.Join(l.Dir, "hosts")
	resolv := filepath.Join(l.Dir, "resolv.conf")
	if err := os.WriteFile(hosts, []byte(fmt.Sprintf("127.0.0.1 localhost\n%s %s\n%s %s\n", CPAddr, "cp.lab.example", l.VIP, VIPName)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(resolv, []byte("nameserver 198.51.100.53\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		return nil, err
	}
	script := strings.Join([]string{
		"set -e",
		"hostname " + h.Name,
		"mount --bind " + hosts + " /etc/hosts",
		"mount --bind " + resolv + " /etc/resolv.conf",
		"mount -t tmpfs -o size=1m,mode=755 tmpfs /run",
		"mkdir -p /run/secrets/kubernetes.io/serviceaccount",
		"cp " + sa + "/* /run/secrets/kubernetes.io/serviceaccount/",
	}, "\n")
	env := append([]string{
		"KUBERNETES_SERVICE_HOST=" + CPAddr.String(),
		"KUBERNETES_SERVICE_PORT=6443",
	}, c.Env...)
	argv := append([]string{"unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script + "\nexec \"$@\"", "sh", bin}, c.Args...)
	return l.Start(h, "vipd-"+h.Name, env, argv...)
}
