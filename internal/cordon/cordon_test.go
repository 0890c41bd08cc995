package cordon

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestWatchFollowsTheNode: cordoning this node (and only this node)
// signals every view; uncordoning signals again.
func TestWatchFollowsTheNode(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	w := New(client, nil, "n1", slog.New(slog.DiscardHandler))
	a, b := w.View(), w.View()
	go w.Run(ctx)
	set := func(name string, cordoned bool) {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n.Spec.Unschedulable = cordoned
		if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(v *View, want bool) {
		t.Helper()
		select {
		case <-v.Changed():
		case <-time.After(5 * time.Second):
			t.Fatalf("no change signalled; Standing=%v, want %v", v.Standing(), want)
		}
		if v.Standing() != want {
			t.Fatalf("Standing=%v, want %v", v.Standing(), want)
		}
	}
	time.Sleep(100 * time.Millisecond) // the informer lists first
	set("n2", true)
	select {
	case <-a.Changed():
		t.Fatal("another Node cordoned counts as this one")
	case <-time.After(200 * time.Millisecond):
	}
	set("n1", true)
	wait(a, true)
	wait(b, true)
	set("n1", false)
	wait(a, false)
	wait(b, false)
}
