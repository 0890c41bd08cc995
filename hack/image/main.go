// Command image assembles vipd's container image without a Docker engine:
// one layer holding the static binary at /vipd, entrypoint /vipd, default
// argument "manager" (the seed's DaemonSet passes args: [manager]); -path
// and -cmd change both (the kubelet lab builds its pause image so). It writes
// an OCI image layout as a tar archive (oci-archive), which `ctr images
// import`, `k3s ctr images import`, podman and skopeo accept.
//
//	go run ./hack/image -binary bin/vipd -tag ghcr.io/vipd/vipd:dev -out bin/vipd-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	bin := flag.String("binary", "bin/vipd", "static vipd binary (CGO_ENABLED=0)")
	tag := flag.String("tag", "ghcr.io/vipd/vipd:dev", "image name recorded in the index (org.opencontainers.image.ref.name)")
	out := flag.String("out", "bin/vipd-image.tar", "OCI archive to write")
	path := flag.String("path", "/vipd", "where the binary is in the image (the entrypoint)")
	cmd := flag.String("cmd", "manager", "the default argument (none if empty)")
	flag.Parse()
	if err := build(*bin, *path, *cmd, *tag, *out); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(*out)
}

func build(bin, path, cmd, tag, out string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("reading the binary (run `make build` first): %w", err)
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	epoch := time.Unix(0, 0)
	if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(path, "/"), Mode: 0o755, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = []string{path}
	cf.Config.Cmd = nil
	if cmd != "" {
		cf.Config.Cmd = []string{cmd}
	}
	cf.Config.User = "0"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/vipd/vipd"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "vipd-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		return err
	}
	return tarDir(dir, out)
}

// tarDir writes the files under dir into a tar archive at out.
func tarDir(dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		info, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
