package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealthAndMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewVIP(reg, "kube-system/plndr-cp-lock", "198.51.100.200/32")
	m.SetLeader(true)
	m.Transition()
	m.Announced(nil)
	m.Announced(errors.New("x"))
	var healthErr error
	s := &Server{Gatherer: reg, Healthz: []Check{func() error { return healthErr }}, Readyz: []Check{func() error { return errors.New("Lease not read yet") }}}
	h := s.Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	healthErr = errors.New("leader, but 198.51.100.200/32 is missing from eth0")
	if code, body := get("/healthz"); code != 503 || !strings.Contains(body, "missing from eth0") {
		t.Errorf("failing healthz %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "Lease not read yet") {
		t.Errorf("readyz %d %q", code, body)
	}
	_, body := get("/metrics")
	for _, want := range []string{
		`vipd_leader{lease="kube-system/plndr-cp-lock",vip="198.51.100.200/32"} 1`,
		`vipd_leader_transitions_total{lease="kube-system/plndr-cp-lock",vip="198.51.100.200/32"} 1`,
		`vipd_garp_sent_total{lease="kube-system/plndr-cp-lock",vip="198.51.100.200/32"} 1`,
		`vipd_garp_errors_total{lease="kube-system/plndr-cp-lock",vip="198.51.100.200/32"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
