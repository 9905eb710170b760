package e2e

import "os/exec"

func exec_(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
