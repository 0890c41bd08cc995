// Package health gates the control-plane election on the local API server:
// a node whose own kube-apiserver is not ready must not hold the VIP, even if
// vipd there can still reach another API server (the seed's failover test is
// `systemctl stop k3s`, which stops the API server while Pods keep running).
package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/gate"
)

// Mode says when the gate applies.
type Mode string

const (
	// Off never gates.
	Off Mode = "false"
	// On gates from the start: a node competes only after its local API
	// server has answered ready.
	On Mode = "true"
	// Auto gates once the local API server has answered ready at least
	// once, so nodes without a local API server are never gated.
	Auto Mode = "auto"
)

// Options configure a Gate.
type Options struct {
	Mode Mode
	// URL is the local API server's readiness endpoint.
	URL string
	// CAFile verifies the API server's certificate; empty skips verification
	// (only readiness is read, no credentials are sent).
	CAFile string
	// Every is the check interval; Failures how many failed checks in a row
	// close the gate.
	Every    time.Duration
	Failures int
	Clock    clock.Clock
	Logger   *slog.Logger
	// OnChange, if set, is called with the new state on every change (metrics).
	OnChange func(open bool)
	// Check replaces the HTTP check (tests).
	Check func(ctx context.Context) error
}

// Gate is the result of the local API server checks (Open, Changed, Why).
type Gate struct {
	*gate.Gate
	o Options

	mu       sync.Mutex
	armed    bool
	failures int
}

// closedWhy is why a holder whose health gate closed steps down.
const closedWhy = "local API server not ready (health gate closed)"

// New returns a gate. With Mode On it starts closed; otherwise open.
func New(o Options) (*Gate, error) {
	if o.Mode != Off && o.Mode != On && o.Mode != Auto {
		return nil, fmt.Errorf("cp_healthcheck=%q: use auto, true or false", o.Mode)
	}
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Failures <= 0 {
		return nil, fmt.Errorf("cp_healthcheck_failures=%d: must be at least 1", o.Failures)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Check == nil {
		c, err := httpCheck(o.URL, o.CAFile)
		if err != nil {
			return nil, err
		}
		o.Check = c
	}
	return &Gate{Gate: gate.New(o.Mode != On, closedWhy, o.Clock), o: o, armed: o.Mode == On}, nil
}

func httpCheck(url, caFile string) (func(context.Context) error, error) {
	tc := &tls.Config{InsecureSkipVerify: true, ServerName: "kubernetes"}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cp_healthcheck_ca=%q: %w", caFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cp_healthcheck_ca=%q holds no PEM certificate", caFile)
		}
		tc = &tls.Config{RootCAs: pool, ServerName: "kubernetes"}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
		}
		return nil
	}, nil
}

// Run checks every interval until ctx ends.
func (g *Gate) Run(ctx context.Context) {
	if g.o.Mode == Off {
		return
	}
	for {
		// A fixed cadence: a check that hangs until its timeout (a server
		// shutting down often does) must not slow the next one.
		start := g.o.Clock.Now()
		cctx, cancel := context.WithTimeout(ctx, g.o.Every*9/10)
		err := g.o.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		g.record(err)
		select {
		case <-ctx.Done():
			return
		case <-g.o.Clock.After(g.o.Every - g.o.Clock.Since(start)):
		}
	}
}

// record applies one check result.
func (g *Gate) record(err error) {
	g.mu.Lock()
	was := g.Open()
	now := was
	if err == nil {
		if !g.armed {
			g.o.Logger.Info("local API server is ready: health gate armed", "url", g.o.URL)
		}
		g.armed, g.failures, now = true, 0, true
	} else if g.armed {
		g.failures++
		if g.failures >= g.o.Failures {
			now = false
		}
	}
	failures := g.failures
	g.Set(now, "")
	g.mu.Unlock()
	if was == now {
		if err != nil && g.armed && now {
			g.o.Logger.Warn("local API server check failed", "failures", failures, "of", g.o.Failures, "err", err)
		}
		return
	}
	if now {
		g.o.Logger.Info("health gate open: local API server ready again; competing for the VIP")
	} else {
		g.o.Logger.Warn("health gate closed: local API server not ready; giving up the VIP and staying out of the election", "failures", failures, "err", err)
	}
	if g.o.OnChange != nil {
		g.o.OnChange(now)
	}
}
