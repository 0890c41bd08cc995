package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

// BenchmarkKubelet measures vipd run by real kubelets and containerd (the
// kubelet lab), with the seed's manifests (only the image replaced) and with
// vipd's own (`vipd manifest rbac` + `daemonset`): apply → a vipd Pod Ready
// on each of the 3 nodes; apply → the VIP answering the client; a rolling
// update of the DaemonSet (a changed environment value): its total time,
// the client's longest gap through the VIP and the time with two owners
// (addresses sampled every 50 ms, a client connection every 20 ms).
//
//	make bench-kubelet
func BenchmarkKubelet(b *testing.B) {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nThe kubelet lab: 3 nodes, each with containerd and a kubelet; seed timings\n")
	fmt.Fprintf(&sb, "| manifests | apply → 3 vipd Pods Ready (s) | apply → VIP answering (s) | rolling update of 3 nodes (s) | longest client gap (ms) | two owners (ms) |\n|---|---|---|---|---|---|\n")
	for range b.N {
		for _, m := range []struct {
			name, selector, ds string
		}{
			{"seed's kube-vip-rbac.yaml + kube-vip.yaml.tpl", "app.kubernetes.io/name=kube-vip-ds", "kube-vip-ds"},
			{"vipd manifest rbac + daemonset", "app.kubernetes.io/name=vipd", "vipd"},
		} {
			benchKubelet(b, m.name, m.selector, m.ds, &sb)
		}
	}
	fmt.Print(sb.String())
}

func benchKubelet(b *testing.B, name, selector, dsName string, sb *strings.Builder) {
	l := kubeletLab(b)
	defer l.Close()
	ctx := context.Background()
	// The VIP answering, watched from before the apply.
	answered := make(chan time.Time, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := l.Reach(ctx, l.VIP, port, 100*time.Millisecond); err == nil {
				answered <- time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	start := time.Now()
	if dsName == "vipd" {
		vipdManifests(b, l)
	} else {
		if err := l.Apply(ctx, lab.SeedRBAC); err != nil {
			b.Fatal(err)
		}
		if err := l.Apply(ctx, withImage(lab.SeedDaemonSet(l.VIP.String(), "eth0"), "ghcr.io/kube-vip/kube-vip:v1.0.2")); err != nil {
			b.Fatal(err)
		}
		podsReady(b, l, "kube-system", selector, 3, 2*time.Minute)
	}
	ready := time.Since(start)
	var up time.Duration
	select {
	case at := <-answered:
		up = at.Sub(start)
	case <-time.After(time.Minute):
		b.Fatalf("%s: the VIP never answered", name)
	}

	o := l.Observe(l.VIP, port, 50*time.Millisecond, 20*time.Millisecond)
	rollout := time.Now()
	rollDaemonSet(b, l, dsName)
	took := time.Since(rollout)
	time.Sleep(2 * time.Second)
	r := o.Stop()
	note("%s: %s", name, r.Summary(rollout))
	fmt.Fprintf(sb, "| %s | %.1f | %.1f | %.1f | %d | %d |\n", name, ready.Seconds(), up.Seconds(), took.Seconds(), longestGap(r).Milliseconds(), r.TwoOwnerTime().Milliseconds())
}
