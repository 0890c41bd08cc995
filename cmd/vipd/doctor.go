package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/config"
	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/doctor"
	"github.com/vipd/vipd/internal/election"
)

func doctorCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check this node's set-up once, with the manager's configuration, and print what is wrong",
		Long: `Check this node's set-up once and print every problem with its fix: the
configuration (read exactly as 'vipd manager' reads it: flags, then kube-vip
environment variables), the interface, K3s ServiceLB left enabled, API
server certificates without the VIP, and (with Services) who may claim which
addresses through a LoadBalancer Service. Exit code 0: nothing found; 1: findings;
2: the configuration is invalid. Run it where vipd runs, e.g.
kubectl exec -n kube-system <vipd pod> -- /vipd doctor.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			cfg, err := loadConfig(cmd)
			if err != nil {
				return exitError{2, err}
			}
			fmt.Fprintf(out, "configuration: ok (%s)\n", cfg.String())
			for _, w := range cfg.Warnings {
				fmt.Fprintf(out, "warning: %s\n", w)
			}
			_, client, certAddrs, err := apiClient(cfg)
			if err != nil {
				return exitError{2, err}
			}
			fs := runChecks(cmd.Context(), client, slog.New(slog.DiscardHandler), certAddrs, cfg.VIP)
			if cfg.Services {
				more, err := doctor.ServiceAddresses(cmd.Context(), client, cfg.SvcPoolsOnly)
				if err != nil {
					fmt.Fprintf(out, "warning: cannot check who may claim Service addresses: %v\n", err)
				}
				fs = append(fs, more...)
			}
			if ls, err := client.CoordinationV1().Leases("").List(cmd.Context(), metav1.ListOptions{}); err == nil {
				for _, d := range conflict.Describe(ls.Items) {
					fs = append(fs, doctor.Finding{Reason: "AddressConflict", Message: d + ": " + conflict.Causes})
				}
				for _, d := range election.DescribeEdits(ls.Items) {
					fs = append(fs, doctor.Finding{Reason: "LeaseEdited", Message: d + ": " + doctor.LeaseWritersWhy})
				}
			} else {
				fmt.Fprintf(out, "warning: cannot read the Leases for address conflicts vipd saw on the wire: %v\n", err)
			}
			// Who else may write vipd's Leases (S9): needs RBAC read access,
			// which an administrator's kubeconfig has and vipd's own does not.
			if ws, err := doctor.LeaseWriters(cmd.Context(), client, cfg.Namespace, "kube-system/kube-vip"); err == nil {
				fmt.Fprintf(out, "leases: %s. %s\n", doctor.LeaseWritersReport(ws), doctor.LeaseWritersWhy)
			} else {
				fmt.Fprintf(out, "leases: cannot tell who else may write Leases in %s (%v): run vipd doctor with an administrator's kubeconfig to see. %s\n", cfg.Namespace, err, doctor.LeaseWritersWhy)
			}
			for _, f := range fs {
				fmt.Fprintf(out, "problem (%s): %s\n", f.Reason, f.Message)
			}
			if len(fs) > 0 {
				return exitError{1, fmt.Errorf("%d problem(s) found", len(fs))}
			}
			fmt.Fprintln(out, "no problems found")
			return nil
		},
	}
	config.AddFlags(c.Flags())
	return c
}
