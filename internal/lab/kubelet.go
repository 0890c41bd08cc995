package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The kubelet lab (Options.Kubelet) runs vipd as users do: the control-plane
// host adds kube-controller-manager and kube-scheduler (the API server
// authorizes kubelets with the Node authorizer), and every node namespace
// runs its own containerd (own root, state, socket and cgroup parent),
// kubelet (own root folder, cgroup root and node client certificate) and
// kube-proxy (nftables), so that a host-network Pod reaches the API server
// through the in-cluster `kubernetes` Service. The vipd image (hack/image)
// and a pause image are imported into every containerd: no registry.
// Containers of host-network Pods run in the node's network namespace, as on
// a real server.

// VipdImage is the vipd image's name in the kubelet lab's containerd.
const VipdImage = "ghcr.io/vipd/vipd:lab"

// pauseImage is the sandbox image (hack/pause).
const pauseImage = "vipd.local/pause:lab"

// NodeBinaries returns the folder holding kubelet, kube-proxy,
// kube-controller-manager, kube-scheduler, containerd, its shim and ctr,
// building them with hack/build-node.sh the first time (cached across runs).
var NodeBinaries = sync.OnceValues(func() (string, error) {
	if _, err := exec.LookPath("runc"); err != nil {
		return "", fmt.Errorf("the kubelet lab needs runc (apt-get install runc): %w", err)
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return "", fmt.Errorf("the kubelet lab's kube-proxy needs nft (apt-get install nftables): %w", err)
	}
	return buildScript("build-node.sh", "the node components")
})

// kubeletNode is what runs on one node of the kubelet lab.
type kubeletNode struct {
	dir        string // the node's folder: containerd, kubelet, manifests
	sock       string // containerd's socket
	cgroup     string // the node's cgroup root (in every hierarchy)
	Containerd *Proc
	Kubelet    *Proc
	Proxy      *Proc
}

// StaticPods is the kubelet's static Pod folder on node h (kubeadm's
// /etc/kubernetes/manifests).
func (l *Lab) StaticPods(h *Host) string {
	return filepath.Join(l.kubelets[h.Name].dir, "manifests")
}

// LocalAPIServer makes https://127.0.0.1:6443 on node h reach the API
// server, as on a kubeadm control-plane node, where the static Pod's
// vipd talks to its own node's API server (k8s_api=local).
func (l *Lab) LocalAPIServer(h *Host) error {
	local := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 6443)
	return l.serveProxy(h, local, []netip.AddrPort{netip.AddrPortFrom(CPAddr, 6443)})
}

// Kubelet is the kubelet process of node h.
func (l *Lab) Kubelet(h *Host) *Proc { return l.kubelets[h.Name].Kubelet }

// ContainerLogs returns the last lines of the logs of every container the
// kubelet of node h ran whose Pod name starts with pod.
func (l *Lab) ContainerLogs(h *Host, pod string, lines int) string {
	files, _ := filepath.Glob(filepath.Join(l.kubelets[h.Name].dir, "logs", "*_"+pod+"*", "*", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, _ := os.ReadFile(f)
		ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(ls) > lines {
			ls = ls[len(ls)-lines:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", strings.TrimPrefix(f, l.Dir+"/"), strings.Join(ls, "\n"))
	}
	return b.String()
}

// Containerd is the containerd process of node h.
func (l *Lab) Containerd(h *Host) *Proc { return l.kubelets[h.Name].Containerd }

// startKubelets starts the controllers on the control-plane host and the
// node components on every node, imports the images, and waits until every
// Node is registered; then labels them control-plane nodes, as kubeadm does.
func (l *Lab) startKubelets(ctx context.Context) error {
	nb, err := NodeBinaries()
	if err != nil {
		return err
	}
	admin, err := l.Kubeconfig(netip.AddrPortFrom(CPAddr, 6443))
	if err != nil {
		return err
	}
	images, err := l.buildImages()
	if err != nil {
		return err
	}
	if _, err := l.Start(l.CP, "kube-controller-manager", nil, filepath.Join(nb, "kube-controller-manager"),
		"--kubeconfig="+admin, "--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin,
		"--bind-address=127.0.0.1", "--secure-port=10257", "--leader-elect=false",
		"--service-account-private-key-file="+l.PKI.SAKey, "--root-ca-file="+l.PKI.CAFile,
		"--use-service-account-credentials=false", "--cert-dir="+filepath.Join(l.Dir, "kcm-certs"),
		"--node-monitor-grace-period=20s", "--v=0"); err != nil {
		return err
	}
	if _, err := l.Start(l.CP, "kube-scheduler", nil, filepath.Join(nb, "kube-scheduler"),
		"--kubeconfig="+admin, "--authentication-kubeconfig="+admin, "--authorization-kubeconfig="+admin,
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--v=0"); err != nil {
		return err
	}
	l.kubelets = map[string]*kubeletNode{}
	l.OnClose(l.stopKubelets)
	for _, h := range l.Nodes {
		if err := l.startNode(ctx, nb, h, images); err != nil {
			return fmt.Errorf("node %s: %w", h.Name, err)
		}
	}
	// Registered, and labelled as kubeadm labels a control-plane node (a
	// kubelet may not label itself node-role.kubernetes.io/*).
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for _, h := range l.Nodes {
		for {
			n, err := l.Admin.CoreV1().Nodes().Get(wctx, h.Name, metav1.GetOptions{})
			if err == nil {
				if n.Labels == nil {
					n.Labels = map[string]string{}
				}
				n.Labels["node-role.kubernetes.io/control-plane"] = ""
				if _, err = l.Admin.CoreV1().Nodes().Update(wctx, n, metav1.UpdateOptions{}); err == nil {
					break
				}
			}
			select {
			case <-wctx.Done():
				return fmt.Errorf("node %s never registered: %v\n--- kubelet:\n%s", h.Name, err, l.kubelets[h.Name].Kubelet.Tail(30))
			case <-time.After(300 * time.Millisecond):
			}
		}
	}
	l.logf("kubelets up: %d nodes registered", len(l.Nodes))
	return nil
}

// buildImages writes the vipd image (the lab's vipd binary) and the pause
// image as OCI archives, with hack/image.
func (l *Lab) buildImages() ([]string, error) {
	// Static, as `make build` builds it (the image has no libc).
	vipd, pause := filepath.Join(l.Dir, "vipd"), filepath.Join(l.Dir, "pause")
	for _, b := range [][2]string{{vipd, "./cmd/vipd"}, {pause, "./hack/pause"}} {
		build := exec.Command("go", "build", "-trimpath", "-o", b[0], b[1])
		build.Dir, build.Env = RepoRoot(), append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", b[1], err, out)
		}
	}
	var out []string
	for _, img := range []struct{ bin, path, cmd, tag string }{
		{vipd, "/vipd", "manager", VipdImage},
		{pause, "/pause", "", pauseImage},
	} {
		tar := filepath.Join(l.Dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.tag)+".tar")
		c := exec.Command("go", "run", "./hack/image", "-binary", img.bin, "-path", img.path, "-cmd", img.cmd, "-tag", img.tag, "-out", tar)
		c.Dir = RepoRoot()
		if o, err := c.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("hack/image for %s: %w\n%s", img.tag, err, o)
		}
		out = append(out, tar)
	}
	return out, nil
}

// cgroupHierarchies are the cgroup v1 hierarchies mounted under /sys/fs/cgroup.
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fl := strings.Fields(s.Text())
		if len(fl) >= 3 && fl[2] == "cgroup" && strings.HasPrefix(fl[1], "/sys/fs/cgroup/") {
			out = append(out, fl[1])
		}
	}
	return out
}

// makeCgroup creates path in every hierarchy (cpuset: with its parent's
// CPUs and memory nodes), as the kubelet wants its cgroup root to exist.
func makeCgroup(path string) error {
	for _, h := range cgroupHierarchies() {
		d := filepath.Join(h, path)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if strings.HasSuffix(h, "/cpuset") {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				v, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(d, f), v, 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// removeCgroup removes path and everything under it in every hierarchy,
// deepest first (the processes in it must be gone).
func removeCgroup(path string) {
	for _, h := range cgroupHierarchies() {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(h, path), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			_ = os.Remove(dirs[i])
		}
	}
}

func (l *Lab) startNode(ctx context.Context, nb string, h *Host, images []string) error {
	// Named after the lab's namespaces (which carry this process's pid), so
	// that a lab whose test binary was killed is swept (sweepKubelets).
	name := l.net.prefix + "-" + h.Name
	k := &kubeletNode{dir: filepath.Join(l.Dir, name), cgroup: "/" + name}
	l.kubelets[h.Name] = k
	k.sock = filepath.Join(k.dir, "containerd.sock")
	for _, d := range []string{"containerd", "kubelet", "manifests", "pki"} {
		if err := os.MkdirAll(filepath.Join(k.dir, d), 0o755); err != nil {
			return err
		}
	}
	// A route for the Service range (a node's default route covers it):
	// the kernel routes a packet before kube-proxy's DNAT rewrites it.
	if err := h.IPCmd("route", "add", "198.18.0.0/20", "dev", "eth0"); err != nil {
		return err
	}
	if err := makeCgroup(k.cgroup); err != nil {
		return fmt.Errorf("cgroup %s: %w", k.cgroup, err)
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return err
	}
	path := "PATH=" + nb + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	cfg := filepath.Join(k.dir, "containerd.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(containerdConfig, k.dir, k.sock, pauseImage, runc)), 0o644); err != nil {
		return err
	}
	if k.Containerd, err = l.StartNetOnly(h, "containerd-"+h.Name, []string{path}, filepath.Join(nb, "containerd"), "--config", cfg); err != nil {
		return err
	}
	ctr := func(args ...string) ([]byte, error) {
		c := exec.CommandContext(ctx, filepath.Join(nb, "ctr"), append([]string{"--address", k.sock, "--namespace", "k8s.io"}, args...)...)
		return c.CombinedOutput()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := ctr("version")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not answering: %v %s\n%s", err, out, k.Containerd.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, img := range images {
		if out, err := ctr("images", "import", img); err != nil {
			return fmt.Errorf("ctr images import %s: %w\n%s", img, err, out)
		}
	}
	// The node's client certificate (the Node authorizer knows it by its
	// name) and its kubeconfig.
	crt, key, err := l.PKI.issue("system:node:"+h.Name, []string{"system:nodes"}, nil, nil, true)
	if err != nil {
		return err
	}
	kc := filepath.Join(k.dir, "kubelet.kubeconfig")
	if err := writeKubeconfig(kc, netip.AddrPortFrom(CPAddr, 6443), l.PKI.CAPEM, crt, key); err != nil {
		return err
	}
	kcfg := filepath.Join(k.dir, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(fmt.Sprintf(kubeletConfig, h.IP, k.cgroup, k.sock,
		filepath.Join(k.dir, "manifests"), l.PKI.CAFile, filepath.Join(k.dir, "logs"))), 0o644); err != nil {
		return err
	}
	if k.Kubelet, err = l.StartNetOnly(h, "kubelet-"+h.Name, []string{path}, filepath.Join(nb, "kubelet"),
		"--config="+kcfg, "--kubeconfig="+kc, "--hostname-override="+h.Name, "--node-ip="+h.IP.String(),
		"--root-dir="+filepath.Join(k.dir, "kubelet"), "--cert-dir="+filepath.Join(k.dir, "pki"), "--v=1"); err != nil {
		return err
	}
	admin, err := l.Kubeconfig(netip.AddrPortFrom(CPAddr, 6443))
	if err != nil {
		return err
	}
	k.Proxy, err = l.StartNetOnly(h, "kube-proxy-"+h.Name, []string{path}, filepath.Join(nb, "kube-proxy"),
		"--kubeconfig="+admin, "--hostname-override="+h.Name, "--proxy-mode=nftables",
		"--bind-address="+h.IP.String(), "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256",
		"--conntrack-max-per-core=0", "--cluster-cidr=198.18.32.0/20", "--v=0")
	return err
}

// stopKubelets stops every node's components and what they started (the
// containers: their shims outlive containerd), then removes the mounts and
// cgroups they left.
func (l *Lab) stopKubelets() {
	for _, k := range l.kubelets {
		for _, p := range []*Proc{k.Kubelet, k.Proxy, k.Containerd} {
			if p != nil {
				p.Kill()
			}
		}
	}
	for _, h := range l.Nodes {
		killIn(h.NS)
	}
	time.Sleep(200 * time.Millisecond)
	unmountUnder(l.Dir)
	for _, k := range l.kubelets {
		removeCgroup(k.cgroup)
	}
}

// deadLab reports whether name starts with the namespace prefix of a lab
// whose process is gone.
func deadLab(name string) bool {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return false
	}
	digits := strings.TrimLeft(rest, "0123456789")
	pid, err := strconv.Atoi(rest[:len(rest)-len(digits)])
	if err != nil || !strings.HasPrefix(digits, "x") {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err != nil
}

// sweepKubelets removes what kubelet labs of killed test binaries left:
// their containers (killed through their cgroups), mounts and cgroups.
func sweepKubelets() {
	for _, h := range cgroupHierarchies() {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			if !e.IsDir() || !deadLab(e.Name()) {
				continue
			}
			_ = filepath.WalkDir(filepath.Join(h, e.Name()), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Name() == "cgroup.procs" {
					b, _ := os.ReadFile(p)
					for _, f := range strings.Fields(string(b)) {
						if pid, err := strconv.Atoi(f); err == nil {
							_ = syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				return nil
			})
		}
	}
	b, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) <= 4 {
			continue
		}
		for _, part := range strings.Split(f[4], "/") {
			if deadLab(part) {
				points = append(points, f[4])
				break
			}
		}
	}
	unmount(points)
	for _, h := range cgroupHierarchies() {
		entries, _ := os.ReadDir(h)
		for _, e := range entries {
			if e.IsDir() && deadLab(e.Name()) {
				removeCgroup("/" + e.Name())
			}
		}
	}
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	unmount(points)
}

// unmount lazily unmounts points, deepest first.
func unmount(points []string) {
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		_ = exec.Command("umount", "-l", p).Run()
	}
}

// containerdConfig: root and state in the node's folder (%[1]s), its own
// socket (%[2]s), the lab's pause image (%[3]s), runc (%[4]s) with
// cgroupfs and its state in the node's folder, no CNI (only host-network
// Pods run here), no NRI.
const containerdConfig = `version = 3
root = "%[1]s/containerd/root"
state = "%[1]s/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]

[grpc]
  address = "%[2]s"

[ttrpc]
  address = "%[2]s.ttrpc"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "%[3]s"

[plugins."io.containerd.cri.v1.runtime"]
  # No CAP_SYS_RESOURCE on the lab machines: no process may lower its
  # oom_score_adj (the sandbox's -998 fails), so none below containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["%[1]s/cni/bin"]
    conf_dir = "%[1]s/cni/net.d"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      SystemdCgroup = false
      BinaryName = "%[4]s"
      Root = "%[1]s/runc"
`

// kubeletConfig: the node's address (%[1]s), cgroup root (%[2]s), containerd
// socket (%[3]s), static Pod folder (%[4]s), client CA (%[5]s), container
// logs (%[6]s). cgroup v1
// (failCgroupV1: false) with the cgroupfs driver; no swap check, no disk
// eviction (three kubelets share one disk).
const kubeletConfig = `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[2]s
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://%[3]s
staticPodPath: %[4]s
podLogsDir: %[6]s
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %[5]s}
authorization: {mode: AlwaysAllow}
failSwapOn: false
evictionHard: {memory.available: "1Mi", nodefs.available: "0%%", imagefs.available: "0%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
makeIPTablesUtilChains: false
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 5s
resolvConf: ""
`
