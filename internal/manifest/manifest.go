// Package manifest builds the Kubernetes objects that install vipd: RBAC, a
// DaemonSet for K3s and RKE2, a static Pod for kubeadm. Objects are typed
// (k8s.io/api) and rendered with sigs.k8s.io/yaml; there are no templates.
package manifest

import (
	"bytes"
	"fmt"
	"net"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Names shared with kube-vip, so that its users' RBAC keeps working and
// replacing kube-vip replaces its objects.
const (
	Namespace      = "kube-system"
	ServiceAccount = "kube-vip"
	ClusterRole    = "system:kube-vip-role"
	Binding        = "system:kube-vip-binding"
	Name           = "vipd"
)

// Options describe what to install.
type Options struct {
	// Env is the container environment, in order (kube-vip variable names).
	Env []corev1.EnvVar
	// Image is the vipd container image.
	Image string
	// ControlPlane and Services select the permissions needed.
	ControlPlane, Services bool
	// Events adds permission to post Events (optional: vipd degrades to
	// one warning when forbidden).
	Events bool
	// MetricsPort is the port of /healthz and /readyz; 0 disables probes.
	MetricsPort int
	// Kubeconfig is the host path of the kubeconfig a static Pod mounts.
	Kubeconfig string
	// AllNodes runs the DaemonSet on every node (spread mode), not only
	// on control-plane nodes.
	AllNodes bool
}

// MetricsPort returns the port of a prometheus_server value like ":2112",
// or 0 if it is empty.
func MetricsPort(addr string) (int, error) {
	if addr == "" {
		return 0, nil
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("prometheus_server=%q: %w (write it like :2112)", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("prometheus_server=%q: port %q is not 1-65535", addr, p)
	}
	return n, nil
}

// RBAC returns the ServiceAccount, ClusterRole and binding, with only the
// verbs the enabled features need.
func RBAC(o Options) []any {
	rules := []rbacv1.PolicyRule{}
	if o.ControlPlane || o.Services {
		rules = append(rules, rbacv1.PolicyRule{
			APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"},
			Verbs: []string{"get", "list", "watch", "create", "update"},
		})
	}
	// Start-up checks: ServiceLB (klipper) pods left running.
	rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}})
	if o.Services {
		rules = append(rules,
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch", "update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"update"}},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
			rbacv1.PolicyRule{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			// Address pools: ConfigMap kube-system/kubevip (kube-vip-cloud-provider's format).
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}},
		)
	}
	if o.Events {
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}})
	}
	return []any{
		&corev1.ServiceAccount{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
			ObjectMeta: metav1.ObjectMeta{Name: ServiceAccount, Namespace: Namespace},
		},
		&rbacv1.ClusterRole{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: ClusterRole,
				Annotations: map[string]string{"rbac.authorization.kubernetes.io/autoupdate": "true"}},
			Rules: rules,
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: Binding},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: ServiceAccount, Namespace: Namespace}},
		},
	}
}

func labels() map[string]string { return map[string]string{"app.kubernetes.io/name": Name} }

// container is the vipd container, the same in the DaemonSet and the Pod.
func container(o Options, env []corev1.EnvVar) corev1.Container {
	c := corev1.Container{
		Name:            Name,
		Image:           o.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            []string{"manager"},
		Env:             env,
		SecurityContext: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
			Drop: []corev1.Capability{"ALL"},
		}},
		Resources: corev1.ResourceRequirements{},
	}
	if o.MetricsPort > 0 {
		probe := func(path string, period, failures int32) *corev1.Probe {
			return &corev1.Probe{
				ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: path, Port: intstr.FromInt32(int32(o.MetricsPort)), Host: "127.0.0.1",
				}},
				PeriodSeconds: period, TimeoutSeconds: 2, FailureThreshold: failures,
			}
		}
		c.LivenessProbe = probe("/healthz", 5, 3)
		// Every second: a rolling update waits for each new Pod to be
		// Ready, and vipd is ready as soon as it has read its Lease (about
		// a second after start); at 5 s each node took 5 s more.
		c.ReadinessProbe = probe("/readyz", 1, 1)
		c.Ports = []corev1.ContainerPort{{Name: "metrics", ContainerPort: int32(o.MetricsPort), Protocol: corev1.ProtocolTCP}}
	}
	return c
}

// DaemonSet runs vipd on every control-plane node (K3s, RKE2), or on every
// node with AllNodes.
func DaemonSet(o Options) *appsv1.DaemonSet {
	env := append([]corev1.EnvVar{{
		Name:      "vip_nodename",
		ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}},
	}}, o.Env...)
	exists := func(key string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: corev1.NodeSelectorOpExists}}}
	}
	affinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			exists("node-role.kubernetes.io/control-plane"), exists("node-role.kubernetes.io/master"),
		}},
	}}
	if o.AllNodes {
		affinity = nil
	}
	return &appsv1.DaemonSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "DaemonSet"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: labels()},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels()},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels()},
				Spec: corev1.PodSpec{
					Affinity:           affinity,
					Containers:         []corev1.Container{container(o, env)},
					HostNetwork:        true,
					ServiceAccountName: ServiceAccount,
					// SIGTERM steps down in well under a second; give it room.
					TerminationGracePeriodSeconds: ptr.To(int64(10)),
					PriorityClassName:             "system-node-critical",
					Tolerations: []corev1.Toleration{
						{Effect: corev1.TaintEffectNoSchedule, Operator: corev1.TolerationOpExists},
						{Effect: corev1.TaintEffectNoExecute, Operator: corev1.TolerationOpExists},
					},
				},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				// One node at a time, never two vipd on one node.
				Type:          appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptr.To(intstr.FromInt32(1)), MaxSurge: ptr.To(intstr.FromInt32(0))},
			},
		},
	}
}

// Pod is a static Pod for kubeadm (/etc/kubernetes/manifests). It uses the
// credentials of the mounted kubeconfig but talks to the API server of its
// own node (k8s_api=local): the kubeconfig's server is usually the VIP,
// which is not up yet while kubeadm init runs.
func Pod(o Options) *corev1.Pod {
	env := append([]corev1.EnvVar{}, o.Env...)
	env = append(env,
		corev1.EnvVar{Name: "k8s_config_file", Value: o.Kubeconfig},
		corev1.EnvVar{Name: "k8s_api", Value: "local"})
	c := container(o, env)
	c.VolumeMounts = []corev1.VolumeMount{{Name: "kubeconfig", MountPath: o.Kubeconfig, ReadOnly: true}}
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: labels()},
		Spec: corev1.PodSpec{
			Containers:  []corev1.Container{c},
			HostNetwork: true,
			Volumes: []corev1.Volume{{Name: "kubeconfig", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: o.Kubeconfig, Type: ptr.To(corev1.HostPathFile)},
			}}},
			PriorityClassName: "system-node-critical",
		},
	}
}

// YAML renders objects as a multi-document YAML stream, without the empty
// fields typed objects carry (creationTimestamp, status).
func YAML(objs ...any) ([]byte, error) {
	var buf bytes.Buffer
	for i, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		delete(m, "status")
		prune(m)
		if b, err = yaml.Marshal(m); err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// prune removes null values and empty maps, recursively.
func prune(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for k, x := range t {
			if prune(x) {
				delete(t, k)
			}
		}
		return len(t) == 0
	case []any:
		for _, x := range t {
			prune(x)
		}
	}
	return false
}
