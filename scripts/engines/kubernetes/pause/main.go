// Command pause is the pod sandbox's process (the "pause" container every pod has): it sleeps until it is told to
// stop. Built static (CGO_ENABLED=0) into a one-file image, because no registry is reachable to pull the usual one.
// As PID 1 of the pod's namespace it also reaps orphaned children, as the upstream pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
