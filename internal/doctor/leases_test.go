package doctor

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Who may write Leases in vipd's namespace, besides vipd's own
// ServiceAccount: a user bound to a ClusterRole that may, a GitOps
// controller through a RoleBinding; not a role that only reads them.
func TestLeaseWriters(t *testing.T) {
	rules := func(verbs ...string) []rbacv1.PolicyRule {
		return []rbacv1.PolicyRule{{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: verbs}}
	}
	c := fake.NewClientset(
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "system:kube-vip-role"}, Rules: rules("list", "get", "watch", "update", "create")},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "lease-editor"}, Rules: rules("patch")},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "lease-reader"}, Rules: rules("get", "list")},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "all"}, Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "system:kube-vip-binding"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:kube-vip-role"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "kube-system", Name: "kube-vip"}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "lease-editor"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bob"}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "lease-reader"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "bob"}}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "gitops"}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "all"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "flux-system", Name: "kustomize-controller"}}},
	)
	got, err := LeaseWriters(context.Background(), c, "kube-system", "kube-system/kube-vip")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Join(got, "\n")
	for _, want := range []string{"User alice (ClusterRole lease-editor", "ServiceAccount flux-system/kustomize-controller (Role all via RoleBinding kube-system/gitops)"} {
		if !strings.Contains(s, want) {
			t.Errorf("missing %q in:\n%s", want, s)
		}
	}
	for _, not := range []string{"kube-vip", "bob"} {
		if strings.Contains(s, not) {
			t.Errorf("%q listed:\n%s", not, s)
		}
	}
}
