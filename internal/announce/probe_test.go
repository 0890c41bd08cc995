package announce

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"
)

// TestProbe runs a real probe between two network namespaces joined by a
// veth pair: the far side has 198.51.100.77 and 2001:db8::77; the probe asks
// for those and for two free addresses, and must name exactly the two
// taken ones with the far side's MAC. The probe runs in a child process
// started inside the near namespace (sockets belong to the namespace of the
// thread that opens them, and the probe opens them on several goroutines).
func TestProbe(t *testing.T) {
	if os.Getenv("VIPD_PROBE_CHILD") == "1" {
		probeChild()
		return
	}
	if os.Geteuid() != 0 {
		if os.Getenv("VIPD_E2E") == "1" {
			t.Fatal("VIPD_E2E=1 but not root")
		}
		t.Skip("needs root")
	}
	near, far := fmt.Sprintf("vpn%d", os.Getpid()), fmt.Sprintf("vpf%d", os.Getpid())
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, ns := range []string{near, far} {
		sh("ip", "netns", "add", ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
		// Addresses usable at once: no duplicate address detection.
		sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	}
	sh("ip", "-n", near, "link", "add", "p0", "type", "veth", "peer", "name", "p1", "netns", far)
	sh("ip", "-n", near, "addr", "add", "198.51.100.76/24", "dev", "p0")
	sh("ip", "-n", near, "addr", "add", "2001:db8::76/64", "dev", "p0")
	sh("ip", "-n", far, "addr", "add", "198.51.100.77/24", "dev", "p1")
	sh("ip", "-n", far, "addr", "add", "2001:db8::77/64", "dev", "p1")
	sh("ip", "-n", near, "link", "set", "p0", "up")
	sh("ip", "-n", far, "link", "set", "p1", "up")
	mac, err := exec.Command("ip", "-n", far, "-br", "link", "show", "p1").Output()
	if err != nil {
		t.Fatal(err)
	}
	farMAC := strings.Fields(string(mac))[2]
	exe, _ := os.Executable()
	cmd := exec.Command("ip", "netns", "exec", near, exe, "-test.run", "^TestProbe$", "-test.v")
	cmd.Env = append(os.Environ(), "VIPD_PROBE_CHILD=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	t.Logf("probe child ran %s", time.Since(start).Round(time.Millisecond))
	want := fmt.Sprintf("answered: 198.51.100.77=%s 2001:db8::77=%s\n", farMAC, farMAC)
	if !strings.Contains(string(out), want) {
		t.Errorf("probe output lacks %q:\n%s", want, out)
	}
}

func probeChild() {
	addrs := []netip.Addr{
		netip.MustParseAddr("198.51.100.77"), netip.MustParseAddr("198.51.100.78"),
		netip.MustParseAddr("2001:db8::77"), netip.MustParseAddr("2001:db8::78"),
	}
	start := time.Now()
	got, err := Probe(context.Background(), "p0", addrs, ProbeWindow)
	took := time.Since(start)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	var s []string
	for ip, mac := range got {
		s = append(s, ip.String()+"="+net.HardwareAddr(mac).String())
	}
	sort.Strings(s)
	fmt.Printf("answered: %s\n", strings.Join(s, " "))
	if took > ProbeWindow+100*time.Millisecond {
		// A figure, not an assertion on time: printed for the log.
		fmt.Printf("note: the probe took %s\n", took)
	}
}
