package vipd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README's test command (make test) installs everything the suite
// needs; CI (.ci/run) runs exactly that and installs or builds nothing of
// its own, so a missing step cannot hide behind CI. Every program the lab
// looks up on PATH is in hack/deps.sh.
func TestCIIsTheREADMECommand(t *testing.T) {
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(ci), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "#") {
			continue
		}
		for _, bad := range []string{"apt-get", "apt ", "go build", "go install", "build-k8s", "build-node", "curl", "wget"} {
			if strings.Contains(l, bad) {
				t.Errorf(".ci/run installs or builds something itself (%q): make test must do it", l)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^make test$`).Match(ci) {
		t.Error(".ci/run does not run make test")
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "sudo make test") {
		t.Error("the README's test command is not sudo make test")
	}
	mk, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "hack/deps.sh") {
		t.Error("make test does not run hack/deps.sh")
	}
	deps, err := os.ReadFile("hack/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	srcs, _ := filepath.Glob("internal/lab/*.go")
	look := regexp.MustCompile(`exec\.LookPath\("([^"]+)"\)`)
	for _, f := range srcs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range look.FindAllSubmatch(b, -1) {
			if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(string(m[1])) + ` \S+`).Match(deps) {
				t.Errorf("%s looks up %q, which hack/deps.sh does not install", f, m[1])
			}
		}
	}
}

// TestDemoBuildsOnlyWhatItRuns: the first command a newcomer runs builds
// kube-apiserver, etcd and kubectl, not the kubelet lab's node components.
func TestDemoBuildsOnlyWhatItRuns(t *testing.T) {
	out, err := exec.Command("make", "-n", "demo").CombinedOutput()
	if err != nil {
		t.Fatalf("make -n demo: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "build-node.sh") || !strings.Contains(string(out), "build-k8s.sh") {
		t.Errorf("make demo must build kube-apiserver and etcd (hack/build-k8s.sh) and no node component (hack/build-node.sh):\n%s", out)
	}
}
