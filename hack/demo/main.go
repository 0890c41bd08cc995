// Command demo shows vipd doing the seed's job on one Linux machine: three
// nodes in network namespaces, a real kube-apiserver, the seed's RBAC and
// DaemonSet environment, and two failovers you can watch (a planned one with
// SIGTERM, then a power loss). Everything is removed at the end, also on
// Ctrl-C. Run it with `sudo make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m==> "+format+"\033[0m\n", args...)
}

func run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo creates network namespaces and needs root: run `sudo make demo`")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	step("Building (cached) and starting the lab: etcd + kube-apiserver, 3 nodes, a client (198.51.100.0/24)")
	l, err := lab.New(ctx, lab.Options{Nodes: 3, Log: os.Stdout})
	if err != nil {
		return err
	}
	defer func() {
		step("Tearing down: stopping every process, deleting every namespace")
		l.Close()
		lab.Cleanup()
	}()
	if err := l.Apply(ctx, lab.SeedRBAC); err != nil {
		return err
	}
	if err := l.Serve(8080); err != nil {
		return err
	}
	token, err := l.Token(ctx, "kube-system", "kube-vip")
	if err != nil {
		return err
	}
	ds := lab.SeedDaemonSet(l.VIP.String(), "eth0")
	sc := lab.ScenarioOptions{
		Container: func(node string) (lab.Container, error) { return lab.ContainerOf(ds, node) },
		Token:     token, Namespace: "kube-system", LeaseName: "plndr-cp-lock", Port: 8080,
	}
	c, _ := sc.Container("n1")
	step("Starting vipd on n1, n2, n3 with the seed's DaemonSet environment:\n    %s", strings.Join(c.Env, " "))
	procs, err := l.StartDaemons(ctx, sc)
	if err != nil {
		return err
	}
	owner, err := l.WaitOwner(ctx, sc, 30*time.Second)
	if err != nil {
		return err
	}
	show(ctx, l, sc)

	for _, fault := range []lab.Fault{lab.Faults[0], lab.Faults[2]} {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		step("%s on the owner %s, while the client connects to %s:8080 every 20 ms", fault.Name, owner, l.VIP)
		obs := l.Observe(l.VIP, 8080, 50*time.Millisecond, 20*time.Millisecond)
		time.Sleep(500 * time.Millisecond)
		at := time.Now()
		if err := fault.Inject(l, procs[owner]); err != nil {
			obs.Stop()
			return err
		}
		next, err := l.WaitOwner(ctx, sc, 15*time.Second)
		time.Sleep(time.Second)
		r := obs.Stop()
		if err != nil {
			return err
		}
		fmt.Printf("    the VIP moved %s -> %s; client-seen outage %d ms; nodes holding the VIP at once: at most %d\n",
			owner, next, r.Gap(at).Milliseconds(), r.MaxOwners())
		show(ctx, l, sc)
		// Bring the failed node back as a follower.
		old := procs[owner]
		old.Kill()
		old.Host.IPCmd("link", "set", "eth0", "up")
		c, _ := sc.Container(old.Host.Name)
		if procs[owner], err = l.RunVipd(ctx, old.Host, c, token); err != nil {
			return err
		}
		step("%s restarted: it rejoins as a follower; the VIP stays on %s", owner, next)
		time.Sleep(2 * time.Second)
		show(ctx, l, sc)
		owner = next
	}
	fmt.Printf("\ndemo finished in %s\n", time.Since(start).Round(time.Second))
	return nil
}

// show prints what a user checks: the Lease holder, the VIP on each node's
// interface, and who answers on the VIP.
func show(ctx context.Context, l *lab.Lab, sc lab.ScenarioOptions) {
	holder, _ := l.Holder(ctx, sc.Namespace, sc.LeaseName)
	fmt.Printf("    kubectl get lease -n kube-system plndr-cp-lock  ->  holderIdentity: %s\n", holder)
	for _, n := range l.Nodes {
		present, up, _ := n.HasAddr(l.VIP)
		state := "-"
		if present {
			state = fmt.Sprintf("%s/32 deprecated (link up: %v)", l.VIP, up)
		}
		fmt.Printf("    %s eth0: %s  %s\n", n.Name, n.IP, state)
	}
	who, err := l.Reach(ctx, l.VIP, sc.Port, time.Second)
	if err != nil {
		fmt.Printf("    client -> %s:8080: %v\n", l.VIP, err)
		return
	}
	fmt.Printf("    client -> %s:8080: answered by %s\n", l.VIP, who)
}
