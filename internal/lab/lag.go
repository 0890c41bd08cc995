package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// LagAPI starts a TCP proxy inside host h, on 127.0.0.1:port, to the API
// server, that delays everything the API server sends by d: watch events
// arrive late and writes commit at once but are answered late, on this
// node only. Start the node's vipd with APIEnv(port) to use it. stop closes
// it and every connection through it.
func (l *Lab) LagAPI(h *Host, port int, d time.Duration) (stop func(), err error) {
	ln, err := h.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("lag proxy in %s: %w", h.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := h.DialContext(ctx, "tcp", net.JoinHostPort(CPAddr.String(), "6443"))
			if err != nil {
				in.Close()
				continue
			}
			track(in)
			track(out)
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() { defer wg.Done(); delayedCopy(in, out, d); in.Close() }()
		}
	}()
	return func() {
		cancel()
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}, nil
}

// APIEnv points a daemon's in-cluster configuration at a LagAPI proxy
// (the API server's certificate is valid for 127.0.0.1).
func APIEnv(port int) []string {
	return []string{"KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=" + strconv.Itoa(port)}
}

// delayedCopy copies src to dst, each chunk d after it was read, in order.
func delayedCopy(dst io.Writer, src io.Reader, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range ch {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			for range ch {
			}
			return
		}
	}
}
