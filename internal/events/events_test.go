package events

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestPostOncePerMessageAndForgetDeleted(t *testing.T) {
	c := fake.NewClientset()
	p := &Poster{Client: c, Node: "n1", Log: slog.New(slog.DiscardHandler)}
	svc := corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "web", UID: "u1"}
	ctx := context.Background()
	if !p.Post(ctx, svc, corev1.EventTypeWarning, "AddressInUse", "a") || p.Post(ctx, svc, corev1.EventTypeWarning, "AddressInUse", "a") {
		t.Fatal("the same Event must be posted once")
	}
	if !p.Post(ctx, svc, corev1.EventTypeWarning, "AddressInUse", "b") {
		t.Fatal("a new message is a new Event")
	}
	p.Retain(func(uid string) bool { return uid != "u1" })
	if !p.Post(ctx, svc, corev1.EventTypeWarning, "AddressInUse", "b") {
		t.Fatal("after Retain dropped the object, its Events are posted again")
	}
	creates := 0
	for _, a := range c.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "events" {
			creates++
		}
	}
	if creates != 3 {
		t.Fatalf("%d Events created, want 3", creates)
	}
}

func TestForbiddenWarnsOnce(t *testing.T) {
	c := fake.NewClientset()
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", nil)
	})
	var log bytes.Buffer
	p := &Poster{Client: c, Node: "n1", Log: slog.New(slog.NewTextHandler(&log, nil))}
	for _, m := range []string{"a", "b", "c"} {
		p.Post(context.Background(), corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "web"}, corev1.EventTypeWarning, "X", m)
	}
	if n := strings.Count(log.String(), "cannot post Events (forbidden by RBAC)"); n != 1 {
		t.Fatalf("%d forbidden warnings, want 1:\n%s", n, log.String())
	}
}
