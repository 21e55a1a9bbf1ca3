package main

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// busybox is Debian's busybox-static (scripts/test.sh installs it).
const busybox = "/bin/busybox"

// The supervisor needs nothing from the image it runs in: here its root holds nothing but itself and a static
// busybox (no libc, no /etc, no /proc), and it runs the command, passes its output through and exports its
// lines.
func TestRunsInAnEmptyRootBesideAStaticBusybox(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	bb, err := elf.Open(busybox)
	if err != nil {
		t.Fatalf("%s: %v (install Debian's busybox-static: apt-get install busybox-static)", busybox, err)
	}
	for _, p := range bb.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked: install Debian's busybox-static, not busybox", busybox)
		}
	}
	_ = bb.Close()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{binary: "leap0-supervisor", busybox: "bin/busybox"} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var found []string
	_ = filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			found = append(found, strings.TrimPrefix(path, root))
		}
		return nil
	})
	if strings.Join(found, " ") != "/bin/busybox /leap0-supervisor" {
		t.Fatalf("the root holds %v", found)
	}

	rcv := newReceiver(t)
	cmd := exec.Command("/leap0-supervisor", "exec", "--flush-timeout=60s", "--container", "sandbox", "--", "busybox", "sh", "-c",
		"echo out; echo err >&2; exit 7")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin", "OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 7 {
		t.Fatalf("exit %v (stderr %q)", err, stderr.String())
	}
	if stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("output %q %q", stdout.String(), stderr.String())
	}
	records := rcv.records()
	if strings.Join(lines(records, "stdout"), "|") != "out" || strings.Join(lines(records, "stderr"), "|") != "err" {
		t.Fatalf("records %v", records)
	}
	exit := event(records, EventExit)
	if exit == nil || exit.attrs[AttrExitCode] != int64(7) || exit.resource[AttrProcessExeName] != "busybox" {
		t.Fatalf("exit record %v", exit)
	}
}
