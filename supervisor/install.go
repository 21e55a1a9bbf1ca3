package main

import (
	"io"
	"os"
	"path/filepath"
)

// Install copies the running binary to dest (read and execute for everyone, written under a temporary name
// and renamed, so a half-written file is never run). The init container of a sandbox pod runs it to put the
// supervisor in the volume the sandbox container mounts read-only: the image needs no shell and no cp.
func Install(dest string) error {
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		path, perr := os.Executable()
		if perr != nil {
			return err
		}
		if self, err = os.Open(path); err != nil {
			return err
		}
	}
	defer self.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".leap0-supervisor-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, self); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o555); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}
