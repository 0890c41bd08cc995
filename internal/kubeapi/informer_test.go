package kubeapi

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// A watch that ends at once again and again (410 Expired, as a restarted
// API server's watch cache answers an older resource version; an error
// event; a close within a second) is opened again every second or so for
// as long as it lasts: client-go's own back-off would double the wait up
// to 30-60 s within two minutes.
func TestWatchEndsAreRetriedAtAnEvenPace(t *testing.T) {
	for _, mode := range []string{"expired", "error event", "short"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var lists, watches []time.Time
			src := &Source{
				Name: "ConfigMaps",
				ListFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
					mu.Lock()
					lists = append(lists, time.Now())
					mu.Unlock()
					return &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "10"}}, nil
				},
				WatchFunc: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
					mu.Lock()
					watches = append(watches, time.Now())
					mu.Unlock()
					fw := watch.NewFakeWithChanSize(1, false)
					switch mode {
					case "expired":
						st := apierrors.NewResourceExpired("too old resource version: 10 (20)").Status()
						fw.Error(&st)
					case "error event":
						st := apierrors.NewInternalError(context.DeadlineExceeded).Status()
						fw.Error(&st)
					default:
						fw.Stop()
					}
					return fw, nil
				},
				Empty: func() runtime.Object { return &corev1.ConfigMapList{} },
			}
			tr := NewTracker("x", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			inf := tr.Informer(src, &corev1.ConfigMap{}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go inf.RunWithContext(ctx)
			time.Sleep(10 * time.Second)
			mu.Lock()
			defer mu.Unlock()
			longest := time.Duration(0)
			for i := 1; i < len(watches); i++ {
				longest = max(longest, watches[i].Sub(watches[i-1]))
			}
			t.Logf("%d lists, %d watches in 10 s, longest gap between watches %s", len(lists), len(watches), longest.Round(10*time.Millisecond))
			if len(watches) < 5 || longest > 3*time.Second {
				t.Errorf("%d watches in 10 s, longest gap %s: want one about every 1-2 s", len(watches), longest)
			}
		})
	}
}
