package doctor

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// LeaseWritersWhy is why it matters who may write Leases in vipd's
// namespace (S9).
const LeaseWritersWhy = "vipd's Leases (plndr-cp-lock, plndr-svcs-lock, vipd-node-*, vipd-svc-*) say who holds which VIP; " +
	"a change that vipd did not write (kubectl edit or patch, a script, a GitOps tool re-applying an old copy) is detected by its seal " +
	"(vipd.io/seal) and never moves an address at once, but it costs up to a lease duration with the VIPs down on their holder: " +
	"keep these Leases out of GitOps and scripts"

// LeaseWriters returns who, besides self (vipd's ServiceAccount,
// namespace/name), may update, patch or delete Leases in namespace, by
// ClusterRoleBindings and RoleBindings: "User alice (ClusterRole admin via
// ClusterRoleBinding x)". Reading RBAC needs permissions vipd's own
// ClusterRole does not have: run it with an administrator's kubeconfig.
func LeaseWriters(ctx context.Context, c kubernetes.Interface, namespace, self string) ([]string, error) {
	rbac := c.RbacV1()
	crs, err := rbac.ClusterRoles().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterRoles: %w", err)
	}
	rs, err := rbac.Roles(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing Roles in %s: %w", namespace, err)
	}
	crbs, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterRoleBindings: %w", err)
	}
	rbs, err := rbac.RoleBindings(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing RoleBindings in %s: %w", namespace, err)
	}
	writes := map[string]bool{}
	for _, r := range crs.Items {
		writes["ClusterRole/"+r.Name] = writesLeases(r.Rules)
	}
	for _, r := range rs.Items {
		writes["Role/"+r.Name] = writesLeases(r.Rules)
	}
	seen := map[string]bool{}
	var out []string
	add := func(subjects []rbacv1.Subject, ref rbacv1.RoleRef, via string) {
		if !writes[ref.Kind+"/"+ref.Name] {
			return
		}
		for _, s := range subjects {
			who := s.Kind + " " + s.Name
			if s.Namespace != "" {
				who = s.Kind + " " + s.Namespace + "/" + s.Name
			}
			if s.Kind == rbacv1.ServiceAccountKind && s.Namespace+"/"+s.Name == self || s.Kind == rbacv1.GroupKind && s.Name == "system:masters" {
				continue // vipd itself; cluster administrators (always allowed)
			}
			line := fmt.Sprintf("%s (%s %s via %s)", who, ref.Kind, ref.Name, via)
			if !seen[line] {
				seen[line] = true
				out = append(out, line)
			}
		}
	}
	for _, b := range crbs.Items {
		add(b.Subjects, b.RoleRef, "ClusterRoleBinding "+b.Name)
	}
	for _, b := range rbs.Items {
		add(b.Subjects, b.RoleRef, "RoleBinding "+namespace+"/"+b.Name)
	}
	sort.Strings(out)
	return out, nil
}

// writesLeases reports whether rules allow updating, patching or deleting
// Leases (coordination.k8s.io).
func writesLeases(rules []rbacv1.PolicyRule) bool {
	for _, r := range rules {
		group := slices.Contains(r.APIGroups, "coordination.k8s.io") || slices.Contains(r.APIGroups, "*")
		res := slices.Contains(r.Resources, "leases") || slices.Contains(r.Resources, "*")
		verb := slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "update" || v == "patch" || v == "delete" || v == "*" })
		if group && res && verb {
			return true
		}
	}
	return false
}

// LeaseWritersReport is LeaseWriters in words, for vipd doctor.
func LeaseWritersReport(writers []string) string {
	if len(writers) == 0 {
		return "only vipd (and cluster administrators) may write Leases in this namespace"
	}
	return "besides vipd, these may write Leases in this namespace: " + strings.Join(writers, "; ")
}
