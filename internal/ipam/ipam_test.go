package ipam

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustPools(t *testing.T, data map[string]string) *Pools {
	t.Helper()
	p, err := ParsePools(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var a4 = netip.MustParseAddr

func TestParsePools(t *testing.T) {
	p := mustPools(t, map[string]string{
		"cidr-global":   "198.51.100.64/30, 2001:db8::/126",
		"range-global":  "198.51.100.200-198.51.100.201",
		"range-team-a":  "203.0.113.10-203.0.113.11",
		"allow-share-x": "true", // another kube-vip-cloud-provider key: ignored
	})
	g := p.Global
	if g == nil || len(g.Ranges) != 3 {
		t.Fatalf("global: %+v", g)
	}
	// /30: network and broadcast skipped.
	if g.Ranges[0] != (Range{a4("198.51.100.65"), a4("198.51.100.66")}) {
		t.Errorf("cidr range %v", g.Ranges[0])
	}
	if g.Ranges[1] != (Range{a4("2001:db8::"), a4("2001:db8::3")}) {
		t.Errorf("IPv6 cidr range %v", g.Ranges[1])
	}
	if pool, _ := p.For("team-a"); pool.Name != "team-a" || !pool.Contains(a4("203.0.113.11")) {
		t.Errorf("namespace pool %+v", pool)
	}
	if pool, _ := p.For("other"); pool.Name != "global" {
		t.Errorf("fallback %+v", pool)
	}
}

func TestParsePoolsErrorsNameKeyAndValue(t *testing.T) {
	for data, want := range map[string]string{
		"198.51.100.0/33":           `key cidr-global: "198.51.100.0/33": not a CIDR`,
		"198.51.100.9-198.51.100.1": "ends before it starts",
		"198.51.100.1-2001:db8::1":  "mixes IPv4 and IPv6",
		"198.51.100.1":              "not a range",
		"198.51.100.1-198.51.100.x": "not a range of two IP addresses",
	} {
		key := "range-global"
		if strings.Contains(data, "/") {
			key = "cidr-global"
		}
		_, err := ParsePools(map[string]string{key: data})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=%q: %v, want %q", key, data, err, want)
		}
	}
}

func TestAllocateLowestFreeAndRelease(t *testing.T) {
	a := New(mustPools(t, map[string]string{"range-global": "198.51.100.200-198.51.100.202", "range-team-a": "203.0.113.10-203.0.113.10"}))
	got := map[string]netip.Addr{}
	for _, svc := range []string{"default/a", "default/b", "default/c"} {
		ip, err := a.Allocate(Claim{Service: svc}, "default", 4)
		if err != nil {
			t.Fatal(err)
		}
		got[svc] = ip
	}
	if got["default/a"] != a4("198.51.100.200") || got["default/c"] != a4("198.51.100.202") {
		t.Fatalf("%v", got)
	}
	if _, err := a.Allocate(Claim{Service: "default/d"}, "default", 4); !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), `pool "global" (198.51.100.200-198.51.100.202)`) {
		t.Fatalf("exhausted: %v", err)
	}
	// Asking again returns the same address (idempotent).
	if ip, _ := a.Allocate(Claim{Service: "default/b"}, "default", 4); ip != got["default/b"] {
		t.Fatalf("re-allocate gave %s", ip)
	}
	a.Release("default/b")
	if ip, err := a.Allocate(Claim{Service: "default/d"}, "default", 4); err != nil || ip != a4("198.51.100.201") {
		t.Fatalf("after release: %s %v", ip, err)
	}
	if ip, err := a.Allocate(Claim{Service: "team-a/x"}, "team-a", 4); err != nil || ip != a4("203.0.113.10") {
		t.Fatalf("namespace pool: %s %v", ip, err)
	}
	if _, err := a.Allocate(Claim{Service: "team-a/y"}, "team-a", 6); !errors.Is(err, ErrExhausted) {
		t.Fatalf("no IPv6 in pool: %v", err)
	}
}

func TestNoAddressTwiceUnlessSharedWithoutPortClash(t *testing.T) {
	a := New(mustPools(t, map[string]string{"range-global": "198.51.100.200-198.51.100.209"}))
	ip := a4("198.51.100.205")
	web := Claim{Service: "default/web", ShareKey: "k", Ports: []Port{{"TCP", 80}}}
	dns := Claim{Service: "default/dns", ShareKey: "k", Ports: []Port{{"UDP", 53}}}
	if err := a.Assign(web, ip); err != nil {
		t.Fatal(err)
	}
	if err := a.Assign(dns, ip); err != nil {
		t.Fatalf("sharing with the same key and other ports: %v", err)
	}
	var inUse *InUseError
	if err := a.Assign(Claim{Service: "default/other"}, ip); !errors.As(err, &inUse) || !strings.Contains(err.Error(), "default/web") {
		t.Fatalf("no share key: %v", err)
	}
	if err := a.Assign(Claim{Service: "default/web2", ShareKey: "k", Ports: []Port{{"TCP", 80}}}, ip); err == nil {
		t.Fatal("port 80/TCP given twice on one address")
	}
	if err := a.Assign(Claim{Service: "default/x", ShareKey: "other", Ports: []Port{{"TCP", 81}}}, ip); err == nil {
		t.Fatal("shared under a different key")
	}
	// Allocate with a share key joins the existing shared address.
	got, err := a.Allocate(Claim{Service: "default/ssh", ShareKey: "k", Ports: []Port{{"TCP", 22}}}, "default", 4)
	if err != nil || got != ip {
		t.Fatalf("allocate with share key: %s %v", got, err)
	}
	// Releasing one sharer keeps the address for the others.
	a.Release("default/web")
	if err := a.Assign(Claim{Service: "default/other"}, ip); err == nil {
		t.Fatal("address taken while still shared by dns and ssh")
	}
	if !a.InPools(ip) || a.InPools(a4("198.51.100.210")) {
		t.Fatal("InPools")
	}
}

// FuzzParsePools: any ConfigMap value either fails with an error or gives
// ranges that are ordered and of one family.
func FuzzParsePools(f *testing.F) {
	for _, s := range []string{"198.51.100.0/24", "198.51.100.1-198.51.100.9", "2001:db8::/127", ",", "1.2.3.4/0", "::/0"} {
		f.Add("cidr-global", s)
		f.Add("range-ns", s)
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		p, err := ParsePools(map[string]string{key: value})
		if err != nil {
			return
		}
		pools := []Pool{}
		if p.Global != nil {
			pools = append(pools, *p.Global)
		}
		for _, q := range p.Namespaces {
			pools = append(pools, q)
		}
		for _, q := range pools {
			for _, r := range q.Ranges {
				if r.To.Less(r.From) || r.From.BitLen() != r.To.BitLen() {
					t.Fatalf("%s=%q gave %v", key, value, r)
				}
			}
		}
	})
}
