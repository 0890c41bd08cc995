package main

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// TestImageEntrypointRunsVersion builds the image from a fresh static binary
// and runs its entrypoint the way a runtime would, with args ["version"].
func TestImageEntrypointRunsVersion(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "vipd")
	gobuild := exec.Command("go", "build", "-trimpath", "-ldflags", "-X main.version=image-test", "-o", bin, "./cmd/vipd")
	gobuild.Dir = "../.."
	gobuild.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gobuild.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := build(bin, "/vipd", "manager", "ghcr.io/vipd/vipd:test", archive); err != nil {
		t.Fatal(err)
	}

	// Unpack the OCI archive and read it back as an image layout.
	lay := filepath.Join(dir, "layout")
	untar(t, archive, lay)
	p, err := layout.FromPath(lay)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "ghcr.io/vipd/vipd:test" {
		t.Fatalf("index: %+v %v", im, err)
	}
	img, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || strings.Join(cf.Config.Entrypoint, " ") != "/vipd" || strings.Join(cf.Config.Cmd, " ") != "manager" {
		t.Fatalf("config: os %s entrypoint %v cmd %v", cf.OS, cf.Config.Entrypoint, cf.Config.Cmd)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d %v", len(layers), err)
	}
	root := filepath.Join(dir, "rootfs")
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	extract(t, rc, root)
	rc.Close()

	out, err := exec.Command(filepath.Join(root, cf.Config.Entrypoint[0]), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "vipd image-test") {
		t.Fatalf("entrypoint version: %q %v", out, err)
	}
}

func untar(t *testing.T, archive, dst string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	extract(t, f, dst)
}

func extract(t *testing.T, r io.Reader, dst string) {
	t.Helper()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		w, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode)|0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(w, tr); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
}
