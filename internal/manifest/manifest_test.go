package manifest

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

func opts() Options {
	return Options{
		Env:          []corev1.EnvVar{{Name: "address", Value: "198.51.100.200"}, {Name: "vip_arp", Value: "true"}},
		Image:        "ghcr.io/vipd/vipd:test",
		ControlPlane: true, Events: true, MetricsPort: 2112, Kubeconfig: "/etc/kubernetes/admin.conf",
	}
}

func TestRBACGrantsOnlyWhatIsUsed(t *testing.T) {
	objs := RBAC(opts())
	role := objs[1].(*rbacv1.ClusterRole)
	var got []string
	for _, r := range role.Rules {
		got = append(got, strings.Join(r.Resources, ",")+":"+strings.Join(r.Verbs, ","))
	}
	want := "leases:get,list,watch,create,update pods:list events:create,patch"
	if strings.Join(got, " ") != want {
		t.Fatalf("rules %v, want %s", got, want)
	}
	o := opts()
	o.Events = false
	if len(RBAC(o)[1].(*rbacv1.ClusterRole).Rules) != 2 {
		t.Fatal("events granted with Events=false")
	}
}

func TestDaemonSetAndPod(t *testing.T) {
	ds := DaemonSet(opts())
	c := ds.Spec.Template.Spec.Containers[0]
	if c.Env[0].Name != "vip_nodename" || c.Env[0].ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("vip_nodename not from spec.nodeName: %+v", c.Env[0])
	}
	if c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Port.IntValue() != 2112 {
		t.Errorf("probes: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	}
	if ds.Spec.UpdateStrategy.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Error("surge would run two vipd on one node")
	}
	p := Pod(opts())
	env := map[string]string{}
	for _, e := range p.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	if env["k8s_api"] != "local" || env["k8s_config_file"] != "/etc/kubernetes/admin.conf" || p.Spec.Volumes[0].HostPath.Path != "/etc/kubernetes/admin.conf" {
		t.Errorf("static Pod env %v volumes %+v", env, p.Spec.Volumes)
	}
	o := opts()
	o.MetricsPort = 0
	if DaemonSet(o).Spec.Template.Spec.Containers[0].LivenessProbe != nil {
		t.Error("probes without a metrics server")
	}
}

func TestYAMLHasNoEmptyFields(t *testing.T) {
	b, err := YAML(DaemonSet(opts()), Pod(opts()))
	if err != nil {
		t.Fatal(err)
	}
	y := string(b)
	for _, bad := range []string{"creationTimestamp", "status:", "resources: {}", "null"} {
		if strings.Contains(y, bad) {
			t.Errorf("YAML contains %q", bad)
		}
	}
	if strings.Count(y, "\n---\n") != 1 {
		t.Errorf("want two documents:\n%s", y)
	}
}

func TestMetricsPort(t *testing.T) {
	for in, want := range map[string]int{":2112": 2112, "0.0.0.0:9000": 9000, "": 0} {
		if got, err := MetricsPort(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"2112", ":0", ":http"} {
		if _, err := MetricsPort(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
