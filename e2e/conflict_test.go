package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/lab"
)

// waitEventOf waits for an Event of type typ and reason in ns (on the
// object name, if not empty), posted from now on, whose message contains
// want, and returns its message and how long it took.
func waitEventOf(t *testing.T, l *lab.Lab, ns, name, typ, reason, want string, timeout time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		msg, err := eventSince(l, ns, name, typ, reason, want, start)
		if err == nil && msg != "" {
			return msg, time.Since(start)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no %s %s Event in %s containing %q within %s (err %v)", typ, reason, ns, want, timeout, last)
	return "", 0
}

// eventSince returns the message of an Event of type typ and reason in ns
// (on the object name, if not empty) posted since start whose message
// contains want ("" if none).
func eventSince(l *lab.Lab, ns, name, typ, reason, want string, start time.Time) (string, error) {
	evs, err := l.Admin.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, e := range evs.Items {
		// (Event times have whole seconds.)
		fresh := !e.LastTimestamp.Time.Before(start.Truncate(time.Second))
		if fresh && e.Reason == reason && e.Type == typ && strings.Contains(e.Message, want) && (name == "" || e.InvolvedObject.Name == name) {
			return e.Message, nil
		}
	}
	return "", nil
}

// metricsOf reads node h's /metrics (prometheus_server=:2112).
func metricsOf(t *testing.T, l *lab.Lab, h *lab.Host) string {
	t.Helper()
	resp, err := lab.HTTPClient(l.Client, 2*time.Second).Get("http://" + h.IP.String() + ":2112/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readAll(resp)
}

// sample is the value of the first series whose line starts with prefix
// (a metric name with the start of its labels), or -1.
func sample(body, prefix string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				return v
			}
		}
	}
	return -1
}

// conflictEvents counts AddressConflict Events in every namespace.
func conflictEvents(t *testing.T, l *lab.Lab) int {
	t.Helper()
	evs, err := l.Admin.CoreV1().Events("").List(context.Background(), metav1.ListOptions{FieldSelector: "reason=AddressConflict"})
	if err != nil {
		t.Fatal(err)
	}
	return len(evs.Items)
}

// rogueConflict has the rogue host take addr (as a host configured by
// hand would: its kernel answers ARP / neighbor solicitations for it)
// while vipd's node holder holds it, and checks what vipd reports: an
// AddressConflict Event (in ns, on object name) naming the rogue's MAC,
// the metric on the holder, the address still on the holder only, and then,
// once the rogue lets go, the conflict resolved. It returns the time from
// the rogue taking the address to the Event.
func rogueConflict(t *testing.T, l *lab.Lab, rogue, holder *lab.Host, addr netip.Addr, ns, name string) time.Duration {
	t.Helper()
	mac := mustLink(t, rogue).Attrs().HardwareAddr.String()
	bits := addr.BitLen()
	add := []string{"addr", "add", netip.PrefixFrom(addr, bits).String(), "dev", "eth0"}
	if addr.Is6() {
		add = append(add, "nodad") // vipd's node answers the rogue's DAD otherwise
	}
	if err := rogue.IPCmd(add...); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rogue.IPCmd("addr", "del", netip.PrefixFrom(addr, bits).String(), "dev", "eth0") }()
	msg, took := waitEventOf(t, l, ns, name, corev1.EventTypeWarning, "AddressConflict", mac, 10*time.Second)
	t.Logf("%s taken by a rogue (MAC %s): AddressConflict after %s: %s", addr, mac, took.Round(time.Millisecond), msg)
	for _, want := range []string{addr.String(), holder.Name, "ServiceLB"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the AddressConflict Event lacks %q: %s", want, msg)
		}
	}
	if v := sample(metricsOf(t, l, holder), `vipd_address_conflicts_total{address="`+addr.String()+`"}`); v < 1 {
		t.Errorf("vipd_address_conflicts_total for %s on %s = %v, want ≥ 1", addr, holder.Name, v)
	}
	if o, err := l.Owners(addr); err != nil || len(o.Owners) != 1 || o.Owners[0] != holder.Name {
		t.Errorf("during the conflict %s is on %v (%v), want only %s: vipd keeps holding it", addr, o.Owners, err, holder.Name)
	}
	out, err := vipdStatus(t, l)
	if err != nil || !strings.Contains(string(out), "ADDRESS CONFLICTS") || !strings.Contains(string(out), mac) {
		t.Errorf("vipd status does not show the conflict with %s (%v):\n%s", mac, err, out)
	}
	if err := rogue.IPCmd("addr", "del", netip.PrefixFrom(addr, bits).String(), "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	msg, took = waitEventOf(t, l, ns, name, corev1.EventTypeNormal, "AddressConflictResolved", mac, 15*time.Second)
	t.Logf("the rogue let go: resolved after %s: %s", took.Round(time.Millisecond), msg)
	return took
}

// announcingRogue: the rogue announces the control-plane VIP addr every 2 s
// (gratuitous ARP, or unsolicited neighbor advertisement for IPv6) without
// having the address (so it answers no probe), as a misconfigured or
// spoofing host does. The holder hears it: an
// AddressConflict naming its MAC at once, one only while it goes on, and
// resolved once it has been quiet for conflict.Quiet (10 s). (Probes alone
// see such a host only when a probe's window catches an announcement, and
// would call it resolved two probes later.)
func announcingRogue(t *testing.T, l *lab.Lab, rogue, holder *lab.Host, addr netip.Addr) {
	t.Helper()
	mac := mustLink(t, rogue).Attrs().HardwareAddr.String()
	start := time.Now()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			if err := rogue.Announce(addr); err != nil {
				done <- err
				return
			}
			select {
			case <-stop:
				done <- nil
				return
			case <-time.After(2 * time.Second):
			}
		}
	}()
	msg, took := waitEventOf(t, l, "kube-system", leaseName, corev1.EventTypeWarning, "AddressConflict", mac, 10*time.Second)
	t.Logf("a rogue announcing %s every 2 s (no address): AddressConflict after %s: %s", addr, took.Round(time.Millisecond), msg)
	if !strings.Contains(msg, holder.Name) {
		t.Errorf("the AddressConflict Event does not name the holder %s: %s", holder.Name, msg)
	}
	// This conflict's resolution names its start (an earlier one's may
	// carry a time in the same second).
	since, _, _ := strings.Cut(strings.TrimPrefix(msg, "since "), " ")
	this := "(it did since " + since + ")"
	time.Sleep(8 * time.Second)
	if m, _ := eventSince(l, "kube-system", leaseName, corev1.EventTypeNormal, "AddressConflictResolved", this, start); m != "" {
		t.Errorf("resolved while the rogue still announces: %s", m)
	}
	if o, err := l.Owners(addr); err != nil || len(o.Owners) != 1 || o.Owners[0] != holder.Name {
		t.Errorf("during the conflict the VIP is on %v (%v), want only %s", o.Owners, err, holder.Name)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	quiet := time.Now()
	msg, _ = waitEventOf(t, l, "kube-system", leaseName, corev1.EventTypeNormal, "AddressConflictResolved", this, 20*time.Second)
	t.Logf("the rogue went quiet: resolved after %s: %s", time.Since(quiet).Round(100*time.Millisecond), msg)
}

// takenBeforeTheFirstClaim: rogue has addr before vipd first claims it for
// a new Service: the Service gets AddressConflict naming the rogue's MAC, no
// node holds addr for as long as the rogue has it (each probe is answered),
// and a node claims it once the rogue lets go.
func takenBeforeTheFirstClaim(t *testing.T, l *lab.Lab, rogue *lab.Host, addr netip.Addr) {
	t.Helper()
	if err := rogue.IPCmd("addr", "add", addr.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	create(t, l.Admin, lbService("default", "taken", port, withIPs(addr.String())))
	mac := mustLink(t, rogue).Attrs().HardwareAddr.String()
	waitEventOf(t, l, "default", "taken", corev1.EventTypeWarning, "AddressConflict", mac, 15*time.Second)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if o, err := l.Owners(addr); err != nil || len(o.Owners) != 0 {
			t.Fatalf("%s, which the rogue has, is on %v (%v): vipd must not claim it", addr, o.Owners, err)
		}
	}
	if err := rogue.IPCmd("addr", "del", addr.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	eventually(t, 30*time.Second, "the address claimed once the rogue let go", func() error {
		_, err := converged(context.Background(), l, []string{"default/taken"}, map[string]string{"default/taken": addr.String()})
		return err
	})
	t.Logf("the rogue let go of %s: claimed %s later", addr, time.Since(left).Round(100*time.Millisecond))
}

// TestSpreadProbesBeforeAFirstClaim: in spread mode too, an address another
// host has before vipd first claims it is asked on the wire first and not
// claimed while it answers (the node's own heartbeat, which lists it
// before the claim check reads, is no sign that a vipd node had it).
func TestSpreadProbesBeforeAFirstClaim(t *testing.T) {
	l, sc := servicesLab(t)
	sc = withEnv(sc, "svc_election=true")
	createNodes(t, l)
	create(t, l.Admin, lbService("default", "web", port, withIPs("198.51.100.210")))
	startDaemons(t, l, sc)
	eventually(t, 30*time.Second, "the first Service's VIP announced", func() error {
		_, err := converged(context.Background(), l, []string{"default/web"}, map[string]string{"default/web": "198.51.100.210"})
		return err
	})
	takenBeforeTheFirstClaim(t, l, l.CP, netip.MustParseAddr("198.51.100.211"))
}

// TestAddressConflict: a rogue host on the segment takes the control-plane
// VIP, then a Service VIP, while vipd holds them: each is reported
// (AddressConflict naming the rogue's MAC, vipd_address_conflicts_total on
// the holder, vipd status), vipd keeps the address and its announcement
// rate, and the conflict is resolved once the rogue lets go. A rogue that
// has a Service's address before the first claim keeps vipd from claiming
// it until it lets go. Failovers between vipd nodes raise no conflict.
func TestAddressConflict(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	procs := startDaemons(t, l, sc)
	owner, err := l.WaitOwner(ctx, sc, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	holder := l.Node(owner)
	rogue := l.CP // any host on the segment; its API server is unaffected
	before := conflictEvents(t, l)

	cpGARPs := `vipd_garp_sent_total{lease="kube-system/plndr-cp-lock"`
	g0 := sample(metricsOf(t, l, holder), cpGARPs)
	time.Sleep(6 * time.Second)
	quiet := sample(metricsOf(t, l, holder), cpGARPs) - g0
	rogueDone := make(chan float64, 1)
	go func() {
		// The announcement rate while the rogue answers (sampled in the
		// first 6 s of the conflict).
		time.Sleep(1500 * time.Millisecond)
		g := sample(metricsOf(t, l, holder), cpGARPs)
		time.Sleep(6 * time.Second)
		rogueDone <- sample(metricsOf(t, l, holder), cpGARPs) - g
	}()
	rogueConflict(t, l, rogue, holder, l.VIP, "kube-system", leaseName)
	if during := <-rogueDone; during > quiet+1 {
		t.Errorf("gratuitous ARPs for the VIP: %v in 6 s during the conflict, %v in 6 s before: vipd must not fight (no GARP war)", during, quiet)
	}

	// A Service VIP.
	svcIP := netip.MustParseAddr("198.51.100.210")
	create(t, l.Admin, lbService("default", "web", port, withIPs(svcIP.String())))
	var svcHolder *lab.Host
	eventually(t, 30*time.Second, "the Service VIP announced", func() error {
		if _, err := converged(ctx, l, []string{"default/web"}, map[string]string{"default/web": svcIP.String()}); err != nil {
			return err
		}
		o, err := l.Owners(svcIP)
		if err != nil || len(o.Owners) != 1 {
			return fmt.Errorf("%s on %v (%v)", svcIP, o.Owners, err)
		}
		svcHolder = l.Node(o.Owners[0])
		return nil
	})
	rogueConflict(t, l, rogue, svcHolder, svcIP, "default", "web")
	announcingRogue(t, l, rogue, holder, l.VIP)

	takenBeforeTheFirstClaim(t, l, rogue, netip.MustParseAddr("198.51.100.211"))

	// Failovers between vipd nodes are no conflict: the previous owner's
	// announcements stop before the new owner claims.
	n := conflictEvents(t, l)
	if err := procs[owner].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next, err := l.WaitOwner(ctx, sc, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if m := conflictEvents(t, l); m != n {
		t.Errorf("the failover from %s to %s raised %d AddressConflict Events", owner, next, m-n)
	}
	t.Logf("AddressConflict Events: %d before the rogue, %d after its three conflicts, %d after a failover", before, n, conflictEvents(t, l))
}

// TestAddressConflictIPv6: the same for an IPv6 control-plane VIP: the
// rogue answers neighbor solicitations for it. First at a cold start (no
// Lease yet): with the rogue holding the VIP no node claims it, the
// conflict is reported, and a node claims it once the rogue lets go. Then
// a rogue that only sends unsolicited neighbor advertisements for it.
func TestAddressConflictIPv6(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8::200")
	l, sc := servicesLabWith(t, lab.Options{Nodes: 3, IPv6: true, VIP: vip}) // (Events allowed)
	ctx := context.Background()
	sc = withEnv(sc, "vip_subnet=128")
	rogue := l.CP
	mac := mustLink(t, rogue).Attrs().HardwareAddr.String()
	if err := rogue.IPCmd("addr", "add", vip.String()+"/128", "dev", "eth0", "nodad"); err != nil {
		t.Fatal(err)
	}
	startDaemons(t, l, sc)
	msg, took := waitEventOf(t, l, "kube-system", leaseName, corev1.EventTypeWarning, "AddressConflict", mac, 15*time.Second)
	t.Logf("cold start with the VIP on a rogue: AddressConflict after %s: %s", took.Round(time.Millisecond), msg)
	if !strings.Contains(msg, "does not claim it") {
		t.Errorf("the cold start's AddressConflict does not say the VIP is not claimed: %s", msg)
	}
	for range 20 {
		if o, err := l.Owners(vip); err != nil || len(o.Owners) != 0 {
			t.Fatalf("the VIP, which the rogue has, is on %v (%v) at a cold start", o.Owners, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if err := rogue.IPCmd("addr", "del", vip.String()+"/128", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	owner, err := l.WaitOwner(ctx, sc, 45*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the rogue let go: %s claimed the VIP %s later", owner, time.Since(left).Round(100*time.Millisecond))
	rogueConflict(t, l, rogue, l.Node(owner), vip, "kube-system", leaseName)
	announcingRogue(t, l, rogue, l.Node(owner), vip)
}
