// Package metrics holds vipd's Prometheus collectors and serves /metrics,
// /healthz and /readyz.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// VIP holds the collectors of one managed VIP; it implements the recorders of
// the election and owner packages.
type VIP struct {
	leader        prometheus.Gauge
	present       prometheus.Gauge
	transitions   prometheus.Counter
	renewFailures prometheus.Counter
	announced     prometheus.Counter
	announceErrs  prometheus.Counter
	gateOpen      prometheus.Gauge
}

// NewVIP registers the collectors for the VIP named by lease on reg.
func NewVIP(reg prometheus.Registerer, lease, vip string) *VIP {
	l := prometheus.Labels{"lease": lease, "vip": vip}
	m := &VIP{
		leader:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "vipd_leader", Help: "1 while this node holds the Lease.", ConstLabels: l}),
		present:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "vipd_vip_present", Help: "1 while vipd has the VIP on its interface.", ConstLabels: l}),
		transitions:   prometheus.NewCounter(prometheus.CounterOpts{Name: "vipd_leader_transitions_total", Help: "Times this node became the Lease holder.", ConstLabels: l}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "vipd_renew_failures_total", Help: "Failed Lease renewals, and fence expiries.", ConstLabels: l}),
		announced:     prometheus.NewCounter(prometheus.CounterOpts{Name: "vipd_garp_sent_total", Help: "Gratuitous ARPs / unsolicited neighbor advertisements sent.", ConstLabels: l}),
		announceErrs:  prometheus.NewCounter(prometheus.CounterOpts{Name: "vipd_garp_errors_total", Help: "Announcements that failed to send.", ConstLabels: l}),
		gateOpen:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "vipd_health_gate_open", Help: "1 while the local API server health gate lets this node hold the VIP.", ConstLabels: l}),
	}
	m.gateOpen.Set(1)
	reg.MustRegister(m.leader, m.present, m.transitions, m.renewFailures, m.announced, m.announceErrs, m.gateOpen)
	return m
}

// SetLeader implements election.Recorder.
func (m *VIP) SetLeader(b bool) { m.leader.Set(b01(b)) }

// Transition implements election.Recorder.
func (m *VIP) Transition() { m.transitions.Inc() }

// RenewFailure implements election.Recorder.
func (m *VIP) RenewFailure() { m.renewFailures.Inc() }

// SetPresent implements owner.Recorder.
func (m *VIP) SetPresent(b bool) { m.present.Set(b01(b)) }

// SetGateOpen records the health gate's state.
func (m *VIP) SetGateOpen(b bool) { m.gateOpen.Set(b01(b)) }

// Announced counts one announcement attempt.
func (m *VIP) Announced(err error) {
	if err != nil {
		m.announceErrs.Inc()
		return
	}
	m.announced.Inc()
}

func b01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Check is one health condition; nil means healthy.
type Check func() error

// Server serves the endpoints.
type Server struct {
	Addr     string
	Gatherer prometheus.Gatherer
	Healthz  []Check
	Readyz   []Check
	Log      *slog.Logger

	ln net.Listener
}

// Handler returns the HTTP handler of the three endpoints.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", checks(s.Healthz))
	mux.HandleFunc("/readyz", checks(s.Readyz))
	return mux
}

func checks(cs []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		var errs []error
		for _, c := range cs {
			if err := c(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// Listen binds Addr. A listen error is returned at once: a port already in
// use is a configuration error the user must see.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("prometheus_server=%q: %w (choose a free port, or set prometheus_server to empty to disable)", s.Addr, err)
	}
	s.ln = ln
	return nil
}

// Serve answers on the listener bound by Listen until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	s.Log.Info("serving metrics and health", "addr", s.ln.Addr().String())
	if err := srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
