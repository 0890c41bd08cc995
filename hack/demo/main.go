// Command demo shows vipd doing the seed's job on one Linux machine: three
// servers in network namespaces, each with an etcd member and a
// kube-apiserver, vipd with the seed's RBAC and DaemonSet environment, the
// seed's failover test (the leader's control plane stopped) and a planned
// handover. Everything is removed at the end, also on Ctrl-C. Run it with
// `sudo make demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/lab"
)

func main() {
	err := run()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo: interrupted; the lab was removed")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n%s\n", bold("==> "+fmt.Sprintf(format, args...)))
}

// bold makes s bold on a terminal, unless NO_COLOR is set (no-color.org);
// piped or redirected output gets no escape codes.
func bold(s string) string {
	if !colour(os.Getenv("NO_COLOR"), isTerminal(os.Stdout)) {
		return s
	}
	return "\033[1m" + s + "\033[0m"
}

func colour(noColor string, terminal bool) bool { return noColor == "" && terminal }

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the demo creates network namespaces and needs root: run `sudo make demo`")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the demo needs iproute2's `ip` (apt-get install iproute2)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	step("Starting the seed's cluster in network namespaces: 3 servers, each with an etcd member and a kube-apiserver (certificate includes the VIP, like --tls-san); a client host")
	l, err := lab.New(ctx, lab.Options{Nodes: 3, HA: true, Log: os.Stdout})
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
	step("Starting vipd on n1, n2, n3 with the seed's RBAC and DaemonSet environment (only the image differs):\n    %s", strings.Join(c.Env, " "))
	procs, err := l.StartDaemons(ctx, sc)
	if err != nil {
		return err
	}
	owner, err := l.WaitOwner(ctx, sc, 60*time.Second)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	show(ctx, l, sc)
	time.Sleep(2 * time.Second) // every health gate sees its API server ready once

	step("systemctl stop k3s on the leader %s: its etcd and kube-apiserver stop, vipd keeps running", owner)
	r, err := l.StopLeaderControlPlane(ctx, l.Node(owner), 20*time.Second)
	if err != nil {
		return err
	}
	if r.Outage < 0 {
		return fmt.Errorf("kubectl through the VIP did not work again within 20 s (last: %s)", r.LastKubectl)
	}
	fmt.Printf("    %s's health gate closed, it gave up the VIP and released the Lease; the VIP moved %s -> %s\n", owner, owner, r.NewOwner)
	fmt.Printf("    %s; nodes holding the VIP at once: at most %d\n",
		bold(fmt.Sprintf("kubectl through https://%s:6443 worked again %.1f s after the stop", l.VIP, r.Outage.Seconds())), r.Report.MaxOwners())
	show(ctx, l, sc)

	step("systemctl start k3s on %s: it rejoins as a follower; the VIP stays on %s (no flapping)", owner, r.NewOwner)
	if err := l.StartControlPlane(ctx, l.Node(owner)); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	show(ctx, l, sc)

	next := r.NewOwner
	step("Planned handover: SIGTERM to vipd on %s (a rolling update), while a client connects every 20 ms", next)
	obs := l.Observe(l.VIP, 8080, 50*time.Millisecond, 20*time.Millisecond)
	time.Sleep(500 * time.Millisecond)
	at := time.Now()
	if err := procs[next].Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if _, err := l.WaitOwner(ctx, sc, 10*time.Second); err != nil {
		return err
	}
	time.Sleep(time.Second)
	rep := obs.Stop()
	fmt.Printf("    the VIP moved %s; client-seen outage %d ms\n", strings.Join(rep.OwnerChanges(), " -> "), rep.Gap(at).Milliseconds())
	show(ctx, l, sc)
	fmt.Printf("\ndemo finished in %s\n", time.Since(start).Round(time.Second))
	return ctx.Err()
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
	kctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out, err := l.Kubectl(kctx, "get", "--raw", "/readyz")
	if err != nil {
		out = err.Error()
	}
	fmt.Printf("    client: kubectl --server https://%s:6443 get --raw /readyz  ->  %s\n", l.VIP, strings.TrimSpace(out))
}
