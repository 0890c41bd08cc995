// Package cordon watches this node's Node object and says whether it is
// cordoned (spec.unschedulable: kubectl cordon, and kubectl drain, which
// cordons before it evicts). An elector on a cordoned node hands its Lease
// to another candidate (election.Options.Standby): drain skips DaemonSet
// Pods, so without this the VIP would stay on a node about to go down.
package cordon

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vipd/vipd/internal/gate"
	"github.com/vipd/vipd/internal/kubeapi"
)

// Watch follows one Node.
type Watch struct {
	client kubernetes.Interface
	api    *kubeapi.Tracker
	node   string
	log    *slog.Logger

	// uncordoned is open while the Node is not cordoned.
	uncordoned *gate.Gate
}

// New returns a Watch of Node node; Run starts it. api says what the
// watch waits for (nil: a tracker of its own).
func New(client kubernetes.Interface, api *kubeapi.Tracker, node string, log *slog.Logger) *Watch {
	if api == nil {
		api = kubeapi.NewTracker("the API server", log, nil)
	}
	return &Watch{client: client, api: api, node: node, log: log.With("component", "cordon", "node", node), uncordoned: gate.New(true, "this Node is cordoned", nil)}
}

// Run watches the Node until ctx ends. While RBAC forbids reading Nodes
// it says so once and reports the node not cordoned.
func (w *Watch) Run(ctx context.Context) {
	sel := fields.OneTermEqualSelector("metadata.name", w.node).String()
	nodes := w.client.CoreV1().Nodes()
	src := kubeapi.New("Node "+w.node, nodes.List, nodes.Watch, func(lo *metav1.ListOptions) { lo.FieldSelector = sel })
	src.Forbidden = "cannot list Nodes (forbidden by RBAC), so the VIPs stay on this node when it is cordoned or drained: add {apiGroups: [\"\"], resources: [\"nodes\"], verbs: [\"list\", \"watch\"]} to ClusterRole system:kube-vip-role"
	inf := w.api.Informer(src, &corev1.Node{}, nil)
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.set(o) },
		UpdateFunc: func(_, o any) { w.set(o) },
		DeleteFunc: func(any) { w.update(false) },
	})
	inf.RunWithContext(ctx)
}

func (w *Watch) set(o any) {
	if n, ok := o.(*corev1.Node); ok && n.Name == w.node {
		w.update(n.Spec.Unschedulable)
	}
}

// update records the state and signals every view on a change.
func (w *Watch) update(cordoned bool) {
	if !w.uncordoned.Set(!cordoned, "") {
		return
	}
	if cordoned {
		w.log.Info("this Node is cordoned (kubectl cordon or drain): its VIPs go to another node that can take them")
	} else {
		w.log.Info("this Node is no longer cordoned")
	}
}

// Cordoned reports whether the Node is cordoned, as last seen.
func (w *Watch) Cordoned() bool { return !w.uncordoned.Open() }

// View is one elector's view of the Watch (election.Standby).
type View struct {
	w *Watch
	c <-chan struct{}
}

// View returns a new view with its own change channel.
func (w *Watch) View() *View { return &View{w: w, c: w.uncordoned.Subscribe()} }

// Standing reports whether the Node is cordoned.
func (v *View) Standing() bool { return v.w.Cordoned() }

// Changed receives a value after every change.
func (v *View) Changed() <-chan struct{} { return v.c }
