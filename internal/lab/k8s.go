package lab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// RepoRoot is the vipd checkout this package was compiled from.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binaries returns the folder holding kube-apiserver, etcd and kubectl,
// building them with hack/build-k8s.sh the first time (cached across runs).
var Binaries = sync.OnceValues(func() (string, error) {
	if d := os.Getenv("VIPD_K8S_BIN"); d != "" {
		return d, nil
	}
	return buildScript("build-k8s.sh", "kube-apiserver and etcd")
})

// buildScript runs hack/<script>, which builds what (cached across runs)
// and prints the folder that holds it.
func buildScript(script, what string) (string, error) {
	cmd := exec.Command("bash", filepath.Join(RepoRoot(), "hack", script))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building %s (hack/%s): %w\n%s", what, script, err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

var (
	vipdOnce sync.Once
	vipdPath string
	vipdErr  error
)

// Cleanup removes what the package built for this process (the vipd
// binary); call it from TestMain.
func Cleanup() {
	if vipdPath != "" && os.Getenv("VIPD_BIN") == "" {
		os.RemoveAll(filepath.Dir(vipdPath))
	}
}

// VipdBinary builds cmd/vipd once per process and returns its path.
func VipdBinary() (string, error) {
	vipdOnce.Do(func() {
		if p := os.Getenv("VIPD_BIN"); p != "" {
			vipdPath = p
			return
		}
		dir, err := os.MkdirTemp("", "vipd-bin-")
		if err != nil {
			vipdErr = err
			return
		}
		vipdPath = filepath.Join(dir, "vipd")
		cmd := exec.Command("go", "build", "-o", vipdPath, "./cmd/vipd")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			vipdErr = fmt.Errorf("go build ./cmd/vipd: %w\n%s", err, out)
		}
	})
	return vipdPath, vipdErr
}

// member is one etcd member of the lab.
type member struct {
	name, peerIP string
}

// startEtcd starts an etcd member in host h. With peers, it is one member of
// a cluster listening for peers and clients on h's address too.
func (l *Lab) startEtcd(h *Host, name string, cluster []member) (*Proc, error) {
	peer := "http://127.0.0.1:2380"
	clients := "http://127.0.0.1:2379"
	advertise := clients
	initial := name + "=" + peer
	if len(cluster) > 1 {
		peer = "http://" + h.IP.String() + ":2380"
		clients += ",http://" + h.IP.String() + ":2379"
		advertise = "http://" + h.IP.String() + ":2379"
		var parts []string
		for _, m := range cluster {
			parts = append(parts, m.name+"=http://"+m.peerIP+":2380")
		}
		initial = strings.Join(parts, ",")
	}
	return l.Start(h, "etcd-"+h.Name, nil, filepath.Join(l.Bin, "etcd"),
		"--name="+name, "--data-dir="+filepath.Join(l.Dir, "etcd-"+h.Name),
		"--listen-client-urls="+clients, "--advertise-client-urls="+advertise,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster="+initial, "--initial-cluster-token=vipd-lab",
		"--log-level=warn", "--unsafe-no-fsync", "--quota-backend-bytes=1073741824")
}

// startAPIServer starts kube-apiserver in host h, bound to bind, using the
// etcd on h's loopback, with a serving certificate for sans (+ the VIP
// unless the lab leaves it out).
func (l *Lab) startAPIServer(h *Host, bind netip.Addr, sans []netip.Addr) (*Proc, error) {
	sans = append(sans, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.18.0.1"))
	if !l.opts.CertWithoutVIP {
		sans = append(sans, l.VIP)
	}
	crt, key, err := l.PKI.serving("apiserver-"+h.Name, sans,
		[]string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "localhost"})
	if err != nil {
		return nil, err
	}
	authz, reconciler := "--authorization-mode=RBAC", "--endpoint-reconciler-type=none"
	if l.opts.Kubelet {
		// Kubelets are authorized as nodes, and Pods reach the API server
		// through the kubernetes Service, whose endpoint is this server.
		authz, reconciler = "--authorization-mode=Node,RBAC", "--endpoint-reconciler-type=lease"
	}
	// Its own host name, as on a real server: API servers name their
	// identity Lease after it.
	return l.Start(h, "kube-apiserver-"+h.Name, nil, "unshare", "--uts", "sh", "-c", "hostname "+h.Name+"; exec \"$@\"", "sh",
		filepath.Join(l.Bin, "kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address="+bind.String(), "--advertise-address="+h.IP.String(), "--secure-port=6443",
		"--tls-cert-file="+crt, "--tls-private-key-file="+key,
		"--client-ca-file="+l.PKI.CAFile,
		authz, "--enable-admission-plugins=NodeRestriction",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+l.PKI.SAPub,
		"--service-account-signing-key-file="+l.PKI.SAKey,
		// Service ClusterIPs come from the benchmark range: no address
		// outside the documentation and benchmark ranges appears anywhere.
		"--service-cluster-ip-range=198.18.0.0/20",
		reconciler,
		"--profiling=false",
		"--cert-dir="+filepath.Join(l.Dir, "apiserver-certs-"+h.Name),
		"--v=0")
}

func (l *Lab) startControlPlane(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	etcd, err := l.startEtcd(l.CP, "cp", nil)
	if err != nil {
		return err
	}
	if err := waitTCP(wctx, l.CP, "127.0.0.1:2379", etcd); err != nil {
		return err
	}
	l.logf("etcd up")
	api, err := l.startAPIServer(l.CP, CPAddr, []netip.Addr{CPAddr})
	if err != nil {
		return err
	}
	return l.waitAPI(ctx, []*Proc{api})
}

// waitAPI makes the admin client (through 198.51.100.2:6443, from the client
// host) and waits until the API answers ready and kube-system exists.
func (l *Lab) waitAPI(ctx context.Context, apis []*Proc) error {
	var err error
	l.AdminConfig = &rest.Config{
		Host:            "https://" + CPAddr.String() + ":6443",
		TLSClientConfig: rest.TLSClientConfig{CAData: l.PKI.CAPEM, CertData: l.PKI.AdminCrt, KeyData: l.PKI.AdminKey},
		Dial:            l.Client.DialContext,
		QPS:             200, Burst: 400,
		Timeout: 10 * time.Second,
	}
	l.Admin, err = kubernetes.NewForConfig(l.AdminConfig)
	if err != nil {
		return err
	}
	wctx2, cancel2 := context.WithTimeout(ctx, 120*time.Second)
	defer cancel2()
	tails := func() string {
		var b strings.Builder
		for _, a := range apis {
			fmt.Fprintf(&b, "--- %s\n%s\n", a.Name, a.Tail(20))
		}
		return b.String()
	}
	for {
		body, err := l.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(wctx2)
		if err == nil && strings.TrimSpace(string(body)) == "ok" {
			break
		}
		select {
		case <-wctx2.Done():
			return fmt.Errorf("kube-apiserver not ready: %v\n%s", err, tails())
		case <-time.After(200 * time.Millisecond):
		}
		for _, a := range apis {
			select {
			case <-a.Done():
				return fmt.Errorf("%s exited: %v\n%s", a.Name, a.err, a.Tail(40))
			default:
			}
		}
	}
	// The namespace controller creates kube-system shortly after readiness.
	for {
		_, err := l.Admin.CoreV1().Namespaces().Get(wctx2, "kube-system", metav1.GetOptions{})
		if err == nil {
			break
		}
		select {
		case <-wctx2.Done():
			return fmt.Errorf("namespace kube-system never appeared: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	// What kube-controller-manager would do: a default ServiceAccount in
	// each namespace (Pods cannot be admitted without it).
	for _, ns := range []string{"default", "kube-system"} {
		_, err := l.Admin.CoreV1().ServiceAccounts(ns).Create(wctx2, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s/default ServiceAccount: %w", ns, err)
		}
	}
	l.logf("kube-apiserver up at https://%s:6443", CPAddr)
	return nil
}

// Apply creates (or replaces) every object of a multi-document YAML with the
// admin client, as `kubectl apply` would for new objects.
func (l *Lab) Apply(ctx context.Context, manifest []byte) error {
	return l.apply(ctx, manifest, nil)
}

// ApplyDryRun is Apply with server-side dry run: the API server validates
// and admits every object but stores nothing.
func (l *Lab) ApplyDryRun(ctx context.Context, manifest []byte) error {
	return l.apply(ctx, manifest, []string{metav1.DryRunAll})
}

func (l *Lab) apply(ctx context.Context, manifest []byte, dryRun []string) error {
	dyn, err := dynamic.NewForConfig(l.AdminConfig)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(manifest, []byte("\n---")) {
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			return fmt.Errorf("parsing manifest: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		gv, err := schema.ParseGroupVersion(u.GetAPIVersion())
		if err != nil {
			return err
		}
		res, err := l.resourceFor(gv.WithKind(u.GetKind()))
		if err != nil {
			return err
		}
		var ri dynamic.ResourceInterface = dyn.Resource(res)
		if u.GetNamespace() != "" {
			ri = dyn.Resource(res).Namespace(u.GetNamespace())
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{DryRun: dryRun, FieldValidation: "Strict"}); apierrors.IsAlreadyExists(err) {
			cur, gerr := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if gerr != nil {
				return gerr
			}
			u.SetResourceVersion(cur.GetResourceVersion())
			_, err = ri.Update(ctx, u, metav1.UpdateOptions{DryRun: dryRun, FieldValidation: "Strict"})
			if err != nil {
				return fmt.Errorf("updating %s %s: %w", u.GetKind(), u.GetName(), err)
			}
		} else if err != nil {
			return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

func (l *Lab) resourceFor(gvk schema.GroupVersionKind) (schema.GroupVersionResource, error) {
	rl, err := l.Admin.Discovery().ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	for _, r := range rl.APIResources {
		if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
			return gvk.GroupVersion().WithResource(r.Name), nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("no resource for kind %s", gvk)
}

// Token returns a ServiceAccount token, as the kubelet would project it.
func (l *Lab) Token(ctx context.Context, namespace, sa string) (string, error) {
	tr, err := l.Admin.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, sa, err)
	}
	return tr.Status.Token, nil
}

// ClientFor returns a client authenticated with token, connecting from host h.
func (l *Lab) ClientFor(h *Host, token string) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(&rest.Config{
		Host:            l.AdminConfig.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: l.PKI.CAPEM},
		Dial:            h.DialContext,
		Timeout:         10 * time.Second,
	})
}
