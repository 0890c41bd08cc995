package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The "ha" topology is the seed's cluster: every node runs an etcd member
// (one three-member cluster, as K3s --cluster-init builds) and a
// kube-apiserver whose certificate names the VIP (--tls-san). The cp host
// no longer runs a control plane; it forwards 198.51.100.2:6443 to any node
// API server that accepts connections, as the in-cluster `kubernetes`
// Service does through kube-proxy.

// nodeCP is the control plane of one node in the ha topology.
type nodeCP struct {
	etcd, api *Proc
}

func (l *Lab) startHA(ctx context.Context) error {
	var cluster []member
	for _, n := range l.Nodes {
		cluster = append(cluster, member{name: n.Name, peerIP: n.IP.String()})
	}
	l.cps = map[string]*nodeCP{}
	for _, n := range l.Nodes {
		etcd, err := l.startEtcd(n, n.Name, cluster)
		if err != nil {
			return err
		}
		l.cps[n.Name] = &nodeCP{etcd: etcd}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, n := range l.Nodes {
		if err := waitTCP(wctx, n, "127.0.0.1:2379", l.cps[n.Name].etcd); err != nil {
			return err
		}
	}
	l.logf("etcd cluster up on %d nodes", len(l.Nodes))
	var apis []*Proc
	var backends []netip.AddrPort
	for _, n := range l.Nodes {
		// 198.51.100.2 stands for the kubernetes Service IP, which is in
		// every API server's certificate.
		api, err := l.startAPIServer(n, netip.IPv4Unspecified(), []netip.Addr{n.IP, CPAddr})
		if err != nil {
			return err
		}
		l.cps[n.Name].api = api
		apis = append(apis, api)
		backends = append(backends, netip.AddrPortFrom(n.IP, 6443))
	}
	if err := l.serveProxy(l.CP, netip.AddrPortFrom(CPAddr, 6443), backends); err != nil {
		return err
	}
	return l.waitAPI(ctx, apis)
}

// StopControlPlane ends a node's kube-apiserver and etcd at once, as
// `systemctl stop k3s` does: K3s runs both inside its one process, and when
// that process is gone the kernel resets every connection to it. (A
// separate kube-apiserver given SIGTERM would instead drain for up to a
// minute, keeping its clients' connections open.) vipd keeps running.
func (l *Lab) StopControlPlane(h *Host) error {
	l.cpsMu.Lock()
	cp := l.cps[h.Name]
	l.cpsMu.Unlock()
	if cp == nil {
		return fmt.Errorf("%s runs no control plane (not an ha lab?)", h.Name)
	}
	cp.api.Kill()
	cp.etcd.Kill()
	return nil
}

// StartEtcd starts a stopped node's etcd member (rejoining with its data)
// and does not wait for it.
func (l *Lab) StartEtcd(h *Host) error {
	var cluster []member
	for _, n := range l.Nodes {
		cluster = append(cluster, member{name: n.Name, peerIP: n.IP.String()})
	}
	etcd, err := l.startEtcd(h, h.Name, cluster)
	if err != nil {
		return err
	}
	l.cpsMu.Lock()
	defer l.cpsMu.Unlock()
	l.cps[h.Name].etcd = etcd
	return nil
}

// StartAPIServer starts a stopped node's kube-apiserver and does not wait
// for it (it answers once etcd has a quorum).
func (l *Lab) StartAPIServer(h *Host) (*Proc, error) {
	api, err := l.startAPIServer(h, netip.IPv4Unspecified(), []netip.Addr{h.IP, CPAddr})
	if err != nil {
		return nil, err
	}
	l.cpsMu.Lock()
	defer l.cpsMu.Unlock()
	l.cps[h.Name].api = api
	return api, nil
}

// StartControlPlane starts a stopped node's etcd (rejoining with its data)
// and kube-apiserver, and waits until the API server answers ready.
func (l *Lab) StartControlPlane(ctx context.Context, h *Host) error {
	if err := l.StartEtcd(h); err != nil {
		return err
	}
	api, err := l.StartAPIServer(h)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if err := l.localReady(ctx, h); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-api.Done():
			return fmt.Errorf("kube-apiserver on %s exited: %s", h.Name, api.Tail(20))
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("kube-apiserver on %s not ready after 60s: %s", h.Name, api.Tail(20))
}

// localReady asks node h's own API server for /readyz, from the client
// host, verifying its certificate.
func (l *Lab) localReady(ctx context.Context, h *Host) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(l.PKI.CAPEM)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:       l.Client.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+netip.AddrPortFrom(h.IP, 6443).String()+"/readyz", nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// serveProxy forwards TCP connections on addr (in host h) to the first of
// backends, in rotation, that accepts a connection.
func (l *Lab) serveProxy(h *Host, addr netip.AddrPort, backends []netip.AddrPort) error {
	ln, err := h.Listen("tcp", addr.String())
	if err != nil {
		return err
	}
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	l.OnClose(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	var next atomic.Uint32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				start := int(next.Add(1))
				for i := range backends {
					b := backends[(start+i)%len(backends)]
					ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
					up, err := h.DialContext(ctx, "tcp", b.String())
					cancel()
					if err != nil {
						continue
					}
					track(c, true)
					track(up, true)
					go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
					io.Copy(c, up)
					up.Close()
					track(c, false)
					track(up, false)
					return
				}
			}()
		}
	}()
	return nil
}

// Kubeconfig writes (once) an admin kubeconfig for server, verified with
// the cluster CA, and returns its path.
func (l *Lab) Kubeconfig(server netip.AddrPort) (string, error) {
	kc := filepath.Join(l.Dir, "kubeconfig-"+strings.NewReplacer(":", "_", "[", "", "]", "").Replace(server.String()))
	if _, err := os.Stat(kc); err == nil {
		return kc, nil
	}
	return kc, writeKubeconfig(kc, server, l.PKI.CAPEM, l.PKI.AdminCrt, l.PKI.AdminKey)
}

// writeKubeconfig writes a kubeconfig for server with a client certificate.
func writeKubeconfig(path string, server netip.AddrPort, ca, crt, key []byte) error {
	b64 := base64.StdEncoding.EncodeToString
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://%s
    certificate-authority-data: %s
users:
- name: user
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: lab
  context: {cluster: lab, user: user}
current-context: lab
`, server, b64(ca), b64(crt), b64(key))
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// Kubectl runs the lab's kubectl in the client host against
// https://<VIP>:6443, verifying the certificate with the cluster CA.
func (l *Lab) Kubectl(ctx context.Context, args ...string) (string, error) {
	return l.kubectl(ctx, netip.AddrPortFrom(l.VIP, 6443), args...)
}

// KubectlAPI runs the lab's kubectl in the client host against the API
// server on the control-plane host (not through the VIP).
func (l *Lab) KubectlAPI(ctx context.Context, args ...string) (string, error) {
	return l.kubectl(ctx, netip.AddrPortFrom(l.CP.IP, 6443), args...)
}

func (l *Lab) kubectl(ctx context.Context, server netip.AddrPort, args ...string) (string, error) {
	kc, err := l.Kubeconfig(server)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.Client.NS, filepath.Join(l.Bin, "kubectl"), "--kubeconfig", kc, "--request-timeout=2s"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// HAResult is what one "control plane stopped on the leader" run measured.
type HAResult struct {
	OldOwner, NewOwner string
	// Outage is from the stop until kubectl through the VIP works again; -1
	// if it did not within the wait.
	Outage time.Duration
	Report *Report
	// VIPStayed is true when the VIP was still on the old owner at the end.
	VIPStayed bool
	// LastKubectl is the last failed kubectl's output, for diagnosis.
	LastKubectl string
}

// StopLeaderControlPlane stops the control plane (etcd + kube-apiserver) of
// owner while vipd keeps running there, and measures until kubectl through
// the VIP works again, or until wait passes. Node addresses are sampled
// every 50 ms throughout.
func (l *Lab) StopLeaderControlPlane(ctx context.Context, owner *Host, wait time.Duration) (*HAResult, error) {
	r := &HAResult{OldOwner: owner.Name, Outage: -1}
	obs := l.Observe(l.VIP, 0, 50*time.Millisecond, 0)
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- l.StopControlPlane(owner) }()
	for time.Since(start) < wait {
		s, _ := l.Owners(l.VIP)
		if len(s.Owners) == 1 && s.Owners[0] != owner.Name {
			kctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			out, err := l.Kubectl(kctx, "get", "--raw", "/readyz")
			cancel()
			if err == nil && out == "ok" {
				r.Outage = time.Since(start)
				break
			}
			r.LastKubectl = fmt.Sprintf("%q (%v)", out, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-stopped; err != nil {
		obs.Stop()
		return nil, err
	}
	// Watch a little longer for flapping.
	time.Sleep(time.Second)
	r.Report = obs.Stop()
	if seq := r.Report.OwnerChanges(); len(seq) > 0 {
		r.NewOwner = seq[len(seq)-1]
	}
	r.VIPStayed = r.NewOwner == owner.Name
	return r, nil
}

// RunControlPlaneStop starts vipd on every node, waits for an owner, stops
// the owner's control plane and measures until kubectl through the VIP works
// again (at most wait); then it starts that control plane again and stops
// every daemon.
func (l *Lab) RunControlPlaneStop(ctx context.Context, o ScenarioOptions, wait time.Duration) (*HAResult, error) {
	procs, owner, err := l.StartFresh(ctx, o, 60*time.Second)
	defer KillAll(procs)
	if err != nil {
		return nil, err
	}
	// Let every health gate arm (one ready answer each).
	time.Sleep(2 * time.Second)
	r, err := l.StopLeaderControlPlane(ctx, l.Node(owner), wait)
	if err != nil {
		return nil, err
	}
	if err := l.StartControlPlane(ctx, l.Node(owner)); err != nil {
		return nil, err
	}
	return r, nil
}
