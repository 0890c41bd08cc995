// Command pause is the kubelet lab's sandbox ("pause") image: the process
// that holds a Pod's namespaces. It waits for SIGTERM or SIGINT and exits.
// The lab has no registry to pull registry.k8s.io/pause from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
