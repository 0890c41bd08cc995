package e2e

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/doctor"
	"github.com/vipd/vipd/internal/lab"
)

// waitLog waits until the process's log contains every string in want.
func waitLog(t *testing.T, p *lab.Proc, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := p.Output()
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log of vipd on %s lacks %q after %s:\n%s", p.Host.Name, missing, timeout, p.Tail(30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvent waits for a Warning Event with reason in kube-system whose
// message contains want.
func waitEvent(t *testing.T, l *lab.Lab, reason, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, err := l.Admin.CoreV1().Events("kube-system").List(context.Background(), metav1.ListOptions{})
		if err == nil {
			for _, e := range evs.Items {
				if e.Reason == reason && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, want) {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s Event containing %q (err %v)", reason, want, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func startOne(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, n *lab.Host, edit func(*lab.Container)) *lab.Proc {
	t.Helper()
	c, err := sc.Container(n.Name)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&c)
	}
	p, err := l.RunVipd(context.Background(), n, c, sc.Token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p
}

func setEnv(name, value string) func(*lab.Container) {
	return func(c *lab.Container) {
		for i, kv := range c.Env {
			if strings.HasPrefix(kv, name+"=") {
				c.Env[i] = name + "=" + value
			}
		}
	}
}

// TestTrapServiceLB reproduces the seed's second trap: K3s' ServiceLB left
// enabled. With the seed's ClusterRole (no Events) vipd says so in its log,
// once, plus one warning that Events are forbidden; with the generated
// ClusterRole it also posts an Event.
func TestTrapServiceLB(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	labels := map[string]string{doctor.ServiceLBLabel: "traefik", "app": "svclb-traefik-0a1b2c3d"}
	_, err := l.Admin.AppsV1().DaemonSets("kube-system").Create(ctx, &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "svclb-traefik-0a1b2c3d", Namespace: "kube-system"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "lb-tcp-80", Image: "rancher/klipper-lb:v0.4.9"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The lab has no controller-manager: create the pod the DaemonSet would.
	_, err = l.Admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "svclb-traefik-0a1b2c3d-x7k2p", Namespace: "kube-system", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "lb-tcp-80", Image: "rancher/klipper-lb:v0.4.9"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	sc := seedScenario(t, l)

	// vipd doctor, run where vipd runs with the same environment, finds it.
	d := startOne(t, l, sc, l.Nodes[2], func(c *lab.Container) { c.Args = []string{"doctor"} })
	exited, err := d.Wait(15 * time.Second)
	var ee *exec.ExitError
	if !exited || !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(d.Output(), "problem (ServiceLBEnabled)") || !strings.Contains(d.Output(), "configuration: ok") {
		t.Errorf("vipd doctor: exited %v, %v; want exit 1 with the ServiceLB problem:\n%s", exited, err, d.Output())
	}

	p := startOne(t, l, sc, l.Nodes[0], nil)
	waitLog(t, p, 15*time.Second, "K3s ServiceLB (klipper) is running in kube-system", "pod/svclb-traefik-0a1b2c3d-x7k2p", "--disable servicelb", "cannot post Events (forbidden by RBAC)")
	if n := strings.Count(p.Output(), "cannot post Events"); n != 1 {
		t.Errorf("the Events warning appears %d times, want once", n)
	}
	if _, err := l.WaitOwner(ctx, sc, 15*time.Second); err != nil {
		t.Errorf("the trap must not stop vipd from serving the VIP: %v", err)
	}
	p.Kill()

	// The generated ClusterRole allows Events (and DaemonSets are not listed:
	// the pod alone is evidence enough).
	rbac := mustGen(t, "manifest", "rbac", "--address", l.VIP.String())
	if err := l.Apply(ctx, rbac); err != nil {
		t.Fatal(err)
	}
	p = startOne(t, l, sc, l.Nodes[1], nil)
	waitEvent(t, l, "ServiceLBEnabled", "--disable servicelb")
	if strings.Contains(p.Output(), "cannot post Events") {
		t.Errorf("Events reported forbidden with the generated ClusterRole")
	}
}

// TestTrapCertificateWithoutVIP reproduces K3s started without --tls-san:
// the API server's certificate lacks the VIP.
func TestTrapCertificateWithoutVIP(t *testing.T) {
	l := newLabWith(t, lab.Options{Nodes: 3, CertWithoutVIP: true})
	sc := seedScenario(t, l)
	d := startOne(t, l, sc, l.Nodes[1], func(c *lab.Container) { c.Args = []string{"doctor"} })
	if exited, _ := d.Wait(15 * time.Second); !exited || !strings.Contains(d.Output(), "problem (VIPNotInCertificate)") {
		t.Errorf("vipd doctor does not report the certificate:\n%s", d.Output())
	}
	p := startOne(t, l, sc, l.Nodes[0], nil)
	waitLog(t, p, 15*time.Second,
		fmt.Sprintf("does not include the VIP %s", l.VIP),
		fmt.Sprintf("--tls-san %s", l.VIP))
	if _, err := l.WaitOwner(context.Background(), sc, 15*time.Second); err != nil {
		t.Errorf("the trap must not stop vipd from serving the VIP: %v", err)
	}
}

// TestTrapWrongInterface: a node without the configured interface exits
// with a message naming the interfaces it has and the right one, and posts
// it as an Event when allowed.
func TestTrapWrongInterface(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	if err := l.Apply(ctx, mustGen(t, "manifest", "rbac", "--address", l.VIP.String())); err != nil {
		t.Fatal(err)
	}
	sc := seedScenario(t, l)
	p := startOne(t, l, sc, l.Nodes[1], setEnv("vip_interface", "eno3"))
	if exited, err := p.Wait(10 * time.Second); !exited || err == nil {
		t.Fatalf("vipd with a wrong interface: exited %v, err %v", exited, err)
	}
	waitLog(t, p, time.Second, `vip_interface="eno3": no such interface on node n2; interfaces here: eth0, lo; eth0 has a subnet that contains 198.51.100.200, so set vip_interface=eth0`)
	waitEvent(t, l, "InvalidConfiguration", "no such interface on node n2")
	if s, _ := l.Owners(l.VIP); len(s.Owners) != 0 {
		t.Errorf("VIP on %v", s.Owners)
	}
}
