// Package lab builds a test network of Linux network namespaces with a real
// etcd and kube-apiserver, on which vipd runs as it would in a cluster. It is
// used by the e2e tests, the benchmarks and the demo.
//
// Topology (all on 198.51.100.0/24, a documentation range; nothing is ever
// sent elsewhere):
//
//	switch namespace: bridge br0
//	cp      198.51.100.2    etcd (loopback) + kube-apiserver :6443
//	n1..nN  198.51.100.11+  vipd, a TCP server on :8080 that answers its name
//	client  198.51.100.100  probes the VIP
//	VIP     198.51.100.200
//
// Everything it creates is removed by Close, and namespaces left by a killed
// test process are removed by the next lab that starts.
package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Well-known lab addresses.
var (
	CPAddr     = netip.MustParseAddr("198.51.100.2")
	ClientAddr = netip.MustParseAddr("198.51.100.100")
	DefaultVIP = netip.MustParseAddr("198.51.100.200")
)

// NodeAddr is the address of node i (0-based).
func NodeAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(11 + i)}) }

// Options configure a lab.
type Options struct {
	// Nodes is the number of node hosts (default 3).
	Nodes int
	// VIP is put in the API server's certificate (default DefaultVIP).
	VIP netip.Addr
	// IPv6 also gives every host an address in 2001:db8::/64 (node i:
	// 2001:db8::11+i, client 2001:db8::100), for an IPv6 VIP.
	IPv6 bool
	// HA runs the seed's cluster: an etcd member and a kube-apiserver on
	// every node, and 198.51.100.2:6443 forwarding to any of them.
	HA bool
	// CertWithoutVIP leaves the VIP out of the API server certificate (the
	// seed's trap: K3s started without --tls-san).
	CertWithoutVIP bool
	// Kubelet runs the kubelet lab (see kubelet.go): kube-controller-manager
	// and kube-scheduler beside the API server, and containerd, a kubelet
	// and kube-proxy on every node.
	Kubelet bool
	// Log receives progress lines and process output on failure (default: discarded).
	Log io.Writer
}

// Lab is a running lab.
type Lab struct {
	Dir    string
	CP     *Host
	Nodes  []*Host
	Client *Host
	VIP    netip.Addr

	// Admin is a cluster-admin client that connects from the client host.
	Admin       kubernetes.Interface
	AdminConfig *rest.Config
	PKI         *pki
	Bin         string

	opts  Options
	net   *network
	cps   map[string]*nodeCP // ha: each node's control plane
	cpsMu sync.Mutex
	// kubelets: each node's containerd, kubelet and kube-proxy (Options.Kubelet)
	kubelets map[string]*kubeletNode
	mu       sync.Mutex
	procs    []*Proc
	closers  []func()
}

var labSeq, procSeq atomic.Int32

// New builds the binaries if needed (cached), creates the network, and
// starts etcd and kube-apiserver. On error nothing is left behind.
func New(ctx context.Context, o Options) (l *Lab, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces, veth, netlink)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("the lab needs iproute2's `ip` command")
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if !o.VIP.IsValid() {
		o.VIP = DefaultVIP
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	bin, err := Binaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vipd-lab-")
	if err != nil {
		return nil, err
	}
	l = &Lab{Dir: dir, VIP: o.VIP, Bin: bin, opts: o}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	l.net, err = newNetwork(fmt.Sprintf("x%d", labSeq.Add(1)))
	if err != nil {
		return l, err
	}
	if l.CP, err = l.net.addHost("cp", CPAddr); err != nil {
		return l, err
	}
	if l.Nodes, err = l.net.addNodes(o.Nodes); err != nil {
		return l, err
	}
	if l.Client, err = l.net.addHost("client", ClientAddr); err != nil {
		return l, err
	}
	if o.IPv6 {
		for i, h := range append(append([]*Host{}, l.Nodes...), l.Client) {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(0x11 + i)})
			if h == l.Client {
				a = netip.MustParseAddr("2001:db8::100")
			}
			if err := h.IPCmd("-6", "addr", "add", netip.PrefixFrom(a, 64).String(), "dev", "eth0", "nodad"); err != nil {
				return l, err
			}
			h.IP6 = a
		}
	}
	l.logf("lab network up: %d nodes, namespaces %s-*", o.Nodes, l.net.prefix)
	if l.PKI, err = newPKI(dir); err != nil {
		return l, err
	}
	start := l.startControlPlane
	if o.HA {
		start = l.startHA
	}
	if err := start(ctx); err != nil {
		return l, err
	}
	if o.Kubelet {
		if err := l.startKubelets(ctx); err != nil {
			return l, err
		}
	}
	return l, nil
}

func (l *Lab) logf(format string, args ...any) {
	fmt.Fprintf(l.opts.Log, "[lab] "+format+"\n", args...)
}

// Close stops every process and removes every namespace and file.
func (l *Lab) Close() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	closers := l.closers
	l.closers = nil
	l.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
	for _, p := range procs {
		p.Kill()
	}
	if l.net != nil {
		for _, h := range l.net.hosts {
			killIn(h.NS)
		}
		l.net.close()
	}
	if l.Dir != "" {
		os.RemoveAll(l.Dir)
	}
}

// OnClose registers f to run first when the lab closes.
func (l *Lab) OnClose(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closers = append(l.closers, f)
}

// Proc is a process running in a lab host.
type Proc struct {
	Name string
	Host *Host
	Cmd  *exec.Cmd
	Log  string // path of its combined output

	done chan struct{}
	err  error
}

// Start runs argv in host h with env (plus PATH), output to a log file in
// the lab folder.
func (l *Lab) Start(h *Host, name string, env []string, argv ...string) (*Proc, error) {
	return l.start(h, name, env, append([]string{"ip", "netns", "exec", h.NS}, argv...))
}

// StartNetOnly is Start in the host's network namespace only: `ip netns
// exec` also gives the process a mount namespace of its own with a fresh
// /sys, which hides the cgroup hierarchies and keeps mounts from other
// processes. A kubelet and its containerd must see the cgroups and each
// other's mounts (the kubelet mounts the volumes that runc bind-mounts).
//
// The process also gets a UTS namespace with the host's name as host name,
// as on a real server; host-network containers share it.
func (l *Lab) StartNetOnly(h *Host, name string, env []string, argv ...string) (*Proc, error) {
	return l.start(h, name, env, append([]string{"nsenter", "--net=/run/netns/" + h.NS,
		"unshare", "--uts", "sh", "-c", "hostname " + h.Name + "; exec \"$@\"", "sh"}, argv...))
}

func (l *Lab) start(h *Host, name string, env []string, argv []string) (*Proc, error) {
	logPath := filepath.Join(l.Dir, fmt.Sprintf("%s-%d.log", name, procSeq.Add(1)))
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with the test process, whatever kills it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig follows the thread that forked
	err = cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		f.Close()
		return nil, err
	}
	p := &Proc{Name: name, Host: h, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Kill kills the process (resuming it first if stopped) and waits for it.
func (p *Proc) Kill() {
	p.Cmd.Process.Signal(syscall.SIGKILL)
	p.Cmd.Process.Signal(syscall.SIGCONT)
	<-p.done
}

// Wait waits for the process to exit, at most d, and returns its error
// (an *exec.ExitError for a non-zero exit).
func (p *Proc) Wait(d time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Output returns the process's log so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	f, err := os.Open(p.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		lines = append(lines, s.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// HTTPClient returns a client whose connections start in host h.
func HTTPClient(h *Host, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
}

// Serve runs a TCP server on :port in every node that writes the node's
// name and closes: what a client reaches through the VIP tells who owns it.
func (l *Lab) Serve(port int) error {
	for _, n := range l.Nodes {
		ln, err := n.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			return err
		}
		l.OnClose(func() { ln.Close() })
		name := n.Name
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(name + "\n"))
				c.Close()
			}
		}()
	}
	return nil
}

// Reach connects from the client host to addr:port and returns the name the
// server wrote.
func (l *Lab) Reach(ctx context.Context, addr netip.Addr, port int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := l.Client.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, uint16(port)).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// waitTCP waits until addr accepts connections from host h.
func waitTCP(ctx context.Context, h *Host, addr string, p *Proc) error {
	for {
		c, err := h.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never listened on %s: %w\n%s", p.Name, addr, ctx.Err(), p.Tail(30))
		case <-p.Done():
			return fmt.Errorf("%s exited: %v\n%s", p.Name, p.err, p.Tail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
}
