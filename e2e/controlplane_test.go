package e2e

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/lab"
)

// TestSeedControlPlane runs the seed's DaemonSet environment and RBAC on
// three nodes and checks what the seed's author checks, and more.
func TestSeedControlPlane(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	sc := seedScenario(t, l)
	procs, owner, err := l.StartFresh(ctx, sc, 30*time.Second)
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Lease holder and VIP owner: %s", owner)

	// kubectl get lease -n kube-system plndr-cp-lock: the holder is a node name.
	lease, err := l.Lease(ctx, leaseNS, leaseName)
	if err != nil || lease == nil {
		t.Fatalf("Lease: %v", err)
	}
	if *lease.Spec.HolderIdentity != owner || *lease.Spec.LeaseDurationSeconds != 5 {
		t.Errorf("Lease spec = holder %q duration %d, want holder %q duration 5", *lease.Spec.HolderIdentity, *lease.Spec.LeaseDurationSeconds, owner)
	}

	// vipd status, from the client host, as an operator would run it.
	out, err := vipdStatus(t, l)
	if err != nil || !strings.Contains(string(out), "Holder:       "+owner+"\n") || !strings.Contains(string(out), "VIP:          198.51.100.200/32") || !strings.Contains(string(out), "Holder's MAC: ") {
		t.Errorf("vipd status: %v\n%s", err, out)
	}

	// vipd doctor on a healthy set-up: nothing to report, exit 0.
	d := startOne(t, l, sc, l.Nodes[0], func(c *lab.Container) {
		setEnv("svc_enable", "false")(c)
		c.Args = []string{"doctor"}
	})
	if exited, err := d.Wait(15 * time.Second); !exited || err != nil || !strings.Contains(d.Output(), "no problems found") {
		t.Errorf("vipd doctor on a healthy set-up: exited %v, %v:\n%s", exited, err, d.Output())
	}
	// With the seed's svc_enable=true, no pools (its ClusterRole cannot
	// even read them) and no svc_pools_only: one finding, who may claim what.
	d = startOne(t, l, sc, l.Nodes[0], func(c *lab.Container) { c.Args = []string{"doctor"} })
	exited, err := d.Wait(15 * time.Second)
	var ee *exec.ExitError
	if !exited || !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Count(d.Output(), "problem (") != 1 ||
		!strings.Contains(d.Output(), "problem (ServiceAddressesOpen): svc_enable=true with neither address pools") || !strings.Contains(d.Output(), "svc_pools_only=true") {
		t.Errorf("vipd doctor with the seed's Services settings: exited %v, %v; want exit 1 with ServiceAddressesOpen only:\n%s", exited, err, d.Output())
	}

	// ip a show eth0 on the leader: the VIP as an extra /32, deprecated, with a
	// finite lifetime no longer than the renew deadline (3 s).
	for _, n := range l.Nodes {
		addrs, err := n.Netlink().AddrList(mustLink(t, n), netlink.FAMILY_V4)
		if err != nil {
			t.Fatal(err)
		}
		var vip *netlink.Addr
		for i := range addrs {
			if ip, _ := netip.AddrFromSlice(addrs[i].IP); ip.Unmap() == l.VIP {
				vip = &addrs[i]
			}
		}
		if n.Name != owner {
			if vip != nil {
				t.Errorf("%s is not the owner but has %s", n.Name, vip)
			}
			continue
		}
		if vip == nil {
			t.Fatalf("owner %s does not have the VIP", n.Name)
		}
		if ones, _ := vip.Mask.Size(); ones != 32 {
			t.Errorf("VIP prefix /%d, want /32", ones)
		}
		if vip.Flags&unix.IFA_F_DEPRECATED == 0 || vip.PreferedLft != 0 {
			t.Errorf("VIP flags %#x preferred_lft %d: want deprecated with preferred_lft 0", vip.Flags, vip.PreferedLft)
		}
		if vip.ValidLft <= 0 || vip.ValidLft > 3 {
			t.Errorf("VIP valid_lft %d, want 1..3 seconds (renew deadline)", vip.ValidLft)
		}
		if vip.Flags&unix.IFA_F_PERMANENT != 0 {
			t.Errorf("VIP is permanent; want a finite lifetime")
		}
	}

	// Over a few renewals: still one owner, and the lifetime keeps being
	// refreshed (the address would have expired after 3 s otherwise).
	obs := l.Observe(l.VIP, port, 50*time.Millisecond, 100*time.Millisecond)
	time.Sleep(5 * time.Second)
	r := obs.Stop()
	if seq := r.OwnerChanges(); len(seq) != 1 || seq[0] != owner || r.MaxOwners() != 1 {
		t.Errorf("over 5 s: %s; want only %s", r.Summary(time.Now()), owner)
	}
	for _, p := range r.Probes {
		if p.Err != nil || p.Node != owner {
			t.Errorf("probe at %s: answered by %q, err %v; want %s", p.At.Format("15:04:05.000"), p.Node, p.Err, owner)
			break
		}
	}

	// /metrics and /healthz on the owner (prometheus_server=:2112).
	c := lab.HTTPClient(l.Client, 2*time.Second)
	for _, n := range l.Nodes {
		resp, err := c.Get("http://" + n.IP.String() + ":2112/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.Name, err)
		}
		body := readAll(resp)
		want := "vipd_leader{"
		if !strings.Contains(body, want) {
			t.Errorf("metrics of %s lack %s", n.Name, want)
		}
		leader := strings.Contains(body, `vipd_leader{lease="kube-system/plndr-cp-lock",vip="198.51.100.200/32"} 1`)
		if leader != (n.Name == owner) {
			t.Errorf("metrics of %s say leader=%v", n.Name, leader)
		}
		// The takeover burst (3) and at least one periodic announcement.
		garps := metricValue(body, "vipd_garp_sent_total")
		if n.Name == owner && garps < 4 || n.Name != owner && garps != 0 {
			t.Errorf("%s sent %v gratuitous ARPs", n.Name, garps)
		}
		resp, err = c.Get("http://" + n.IP.String() + ":2112/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("healthz of %s: %v %v", n.Name, err, resp)
		}
	}

	// Removing the VIP behind vipd's back makes the owner's /healthz fail
	// until the next renewal puts it back.
	on := l.Nodes[0]
	for _, n := range l.Nodes {
		if n.Name == owner {
			on = n
		}
	}
	if err := on.IPCmd("addr", "del", l.VIP.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get("http://" + on.IP.String() + ":2112/healthz")
	if err != nil || resp.StatusCode != 503 || !strings.Contains(readAll(resp), "missing") {
		t.Errorf("healthz right after removing the VIP: %v %v; want 503 naming the missing VIP", err, resp)
	}
	if _, err := l.WaitOwner(ctx, sc, 3*time.Second); err != nil {
		t.Errorf("the VIP did not come back after removal: %v", err)
	}
}

func mustLink(t testing.TB, h *lab.Host) netlink.Link {
	t.Helper()
	link, err := h.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// TestFailover applies each fault of the matrix to the owner while a client
// connects through the VIP every 20 ms and the nodes' addresses are sampled
// every 50 ms.
func TestFailover(t *testing.T) {
	l := newLab(t)
	sc := seedScenario(t, l)
	for _, f := range lab.Faults {
		t.Run(strings.Fields(f.Name)[0], func(t *testing.T) {
			r := runFault(t, l, sc, f)
			if f.Name == "SIGTERM" && !r.ExitedClean {
				t.Errorf("SIGTERM: vipd did not exit 0 within 1 s (after %s)", r.ExitAfter)
			}
		})
	}
}

// FastProfile is the README's fast profile: the shortest timings the
// kernel fence allows (renew deadline 2 s, lease duration 2 s more).
var FastProfile = []string{"vip_leaseduration=4", "vip_renewdeadline=2", "vip_retryperiod=0.5"}

// TestFailoverFastProfile: the whole fault matrix with the fast profile:
// never two owners, reachable again within its lease duration + 3 s.
func TestFailoverFastProfile(t *testing.T) {
	l := newLab(t)
	sc := withEnv(seedScenario(t, l), FastProfile...)
	for _, f := range lab.Faults {
		t.Run(strings.Fields(f.Name)[0], func(t *testing.T) {
			runFaultWithin(t, l, sc, f, 4*time.Second+3*time.Second)
		})
	}
}

// runFault injects f on the VIP's owner and checks the result: never two
// owners, one change of owner, reachable again within lease duration + 3 s.
func runFault(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, f lab.Fault) *lab.Result {
	t.Helper()
	return runFaultWithin(t, l, sc, f, leaseDuration+3*time.Second)
}

func runFaultWithin(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, f lab.Fault, limit time.Duration) *lab.Result {
	t.Helper()
	r, err := l.RunFault(context.Background(), sc, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s on %s: %s", f.Name, r.OldOwner, r.Report.Summary(r.FaultAt))
	if err := r.Check(limit); err != nil {
		t.Error(err)
	}
	return r
}

// TestBadInput runs vipd with each kind of bad configuration, in a node,
// with the seed's environment otherwise: it must exit non-zero with a
// message that names the setting and the fix, and leave no address behind.
func TestBadInput(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	sc := seedScenario(t, l)
	cases := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"address not an IP", map[string]string{"address": "198.51.100.300/24"}, []string{`address="198.51.100.300/24"`, "neither an IP address nor a DNS name"}},
		{"address unresolvable", map[string]string{"address": "no-such-vip.lab.example"}, []string{`address="no-such-vip.lab.example"`, "cannot resolve"}},
		{"interface missing", map[string]string{"vip_interface": "eno3"}, []string{`vip_interface="eno3"`, "no such interface on node n1", "interfaces here: eth0, lo", "set vip_interface=eth0"}},
		{"lease not above renew deadline", map[string]string{"vip_leaseduration": "3"}, []string{"vip_leaseduration=3 must exceed vip_renewdeadline=3 by at least 2 seconds", "use vip_leaseduration=5"}},
		{"renew deadline too short", map[string]string{"vip_renewdeadline": "2"}, []string{"vip_renewdeadline=2 must be more than twice vip_retryperiod=1", "use vip_renewdeadline=3"}},
		{"arp off", map[string]string{"vip_arp": "false"}, []string{"vip_arp", "set vip_arp=true"}},
		{"not a boolean", map[string]string{"cp_enable": "yes please"}, []string{`cp_enable="yes please" is not a boolean`}},
		// S7: the node's own address is never taken over, nor swept.
		{"address is the node's own", map[string]string{"address": "198.51.100.11"}, []string{"address=198.51.100.11 is already on this node's interface eth0 as 198.51.100.11/24, not added by vipd", "ip addr del"}},
	}
	node := l.Nodes[0]
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sc.Container(node.Name)
			if err != nil {
				t.Fatal(err)
			}
			for i, kv := range c.Env {
				k, _, _ := strings.Cut(kv, "=")
				if v, ok := tc.env[k]; ok {
					c.Env[i] = k + "=" + v
				}
			}
			p, err := l.RunVipd(ctx, node, c, sc.Token)
			if err != nil {
				t.Fatal(err)
			}
			exited, err := p.Wait(10 * time.Second)
			if !exited {
				p.Kill()
				t.Fatalf("vipd still running with bad input; log:\n%s", p.Output())
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("exit: %v, want exit code 2", err)
			}
			out := p.Output()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if s, err := l.Owners(l.VIP); err != nil || len(s.Owners) != 0 {
				t.Errorf("VIP on %v after bad input (%v)", s.Owners, err)
			}
			if s, err := l.Owners(lab.NodeAddr(0)); err != nil || len(s.Owners) != 1 || s.Owners[0] != node.Name {
				t.Errorf("the node's own address %s is on %v after bad input (%v), want only on %s", lab.NodeAddr(0), s.Owners, err, node.Name)
			}
		})
	}

	// A DNS name (dns_mode=first) that resolves to the VIP works.
	t.Run("address as DNS name", func(t *testing.T) {
		procs := map[string]*lab.Proc{}
		for _, n := range l.Nodes {
			c, _ := sc.Container(n.Name)
			for i, kv := range c.Env {
				if strings.HasPrefix(kv, "address=") {
					c.Env[i] = "address=" + lab.VIPName
				}
			}
			p, err := l.RunVipd(ctx, n, c, sc.Token)
			if err != nil {
				t.Fatal(err)
			}
			procs[n.Name] = p
		}
		dumpOnFailure(t, procs)
		defer func() {
			for _, p := range procs {
				p.Kill()
			}
		}()
		if _, err := l.WaitOwner(ctx, sc, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	})
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// metricValue returns the value of the first sample of metric in a
// Prometheus text exposition, or -1.
func metricValue(body, metric string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, metric+"{") || strings.HasPrefix(line, metric+" ") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
