package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive flock on DATA_DIR/slipway.lock so that two servers never share a data folder.
// The kernel drops the lock when the process dies, so a crash never leaves a stale lock.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "slipway.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		_ = f.Close() // never locked nor written: closing only drops the descriptor
		pid := strings.TrimSpace(string(holder))
		if pid == "" {
			pid = "unknown"
		}
		return nil, fmt.Errorf("data folder %s is in use by another slipway server (pid %s, lock %s): stop it or use another --data-dir", dir, pid, path)
	}
	if err := f.Truncate(0); err == nil {
		// Best effort: the pid only names the holder in another server's refusal.
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

func unlockDataDir(f *os.File) error {
	_ = f.Truncate(0)                               // the pid, best effort as when it was written
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) // the Close below releases the lock anyway
	return f.Close()
}
