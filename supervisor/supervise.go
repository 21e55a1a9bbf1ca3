package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options of one supervised run.
type Options struct {
	Container    string        // k8s.container.name of the records
	Trace        *TraceContext // the caller's span (commands run through the SDKs), or nil
	Args         []string      // the command and its arguments
	DrainTimeout time.Duration
	FlushTimeout time.Duration
	Version      string
}

// Exit codes of a command that cannot be started, as shells and tini give them.
const (
	ExitNotFound      = 127
	ExitCannotExecute = 126
)

const (
	readChunk = 64 * 1024
	pipeBytes = 1 << 20
	// After a read much smaller than the buffer (the command writes a little at a time), the reader lets more
	// output gather before reading again: one wake-up per 8 KiB write of a busy program costs more CPU than
	// the rest of the work on those bytes. A command writing faster than a pipe of pipeBytes fills in this time
	// (2 GB/s) finds the reader reading full buffers without pause.
	gatherDelay = 500 * time.Microsecond
)

// Supervise runs the command as a child and does for it what an init process does: forwards every signal it
// gets (but SIGCHLD, its own SIGPIPE and the Go runtime's SIGURG), reaps every child that ends (the command's
// orphans too: it makes itself a child subreaper when it is not PID 1), and returns the command's exit code
// (128+N when a signal N killed it). Every byte the command writes goes to the supervisor's own stdout or
// stderr first, as is; then each line becomes a log record (when export is on). Only this function waits for
// children: one wait4 owner, so no exit status is taken from under another waiter.
func Supervise(opts Options, settings Settings, stdout, stderr *os.File) int {
	signals := make(chan os.Signal, 64)
	signal.Notify(signals) // before the fork: no SIGCHLD is missed
	defer signal.Stop(signals)
	if os.Getpid() != 1 {
		// Orphans of the command come to the supervisor, which reaps them (where PID 1 would not).
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	started := time.Now()
	process := &Process{Container: opts.Container, Args: opts.Args, RunID: newRunID(),
		Service: settings.Service, Extra: settings.Resource}

	var queue *Queue
	var exporter *Exporter
	startExport := func() {
		if settings.Disabled {
			return
		}
		queue = NewQueue(settings.BufferBytes, DefaultBatchSize)
		encoder := NewEncoder(process, opts.Version, opts.Trace, started.UnixNano())
		exporter = NewExporter(ExporterConfig{LogsURL: settings.LogsURL, MetricsURL: settings.MetricsURL,
			Timeout: settings.Timeout, Linger: DefaultLinger, BatchSize: DefaultBatchLines, BatchBytes: DefaultBatchBytes,
			UserAgent: ScopeName + "/" + opts.Version}, queue, encoder)
		exporter.Start()
	}

	path, err := resolve(opts.Args[0])
	var outR, outW, errR, errW *os.File
	if err == nil {
		if outR, outW, err = blockingPipe("stdout"); err == nil {
			if errR, errW, err = blockingPipe("stderr"); err != nil {
				_ = outR.Close()
				_ = outW.Close()
			}
		}
	}
	pid := 0
	if err == nil {
		process.Exe = path
		pid, err = syscall.ForkExec(path, opts.Args, &syscall.ProcAttr{
			Env:   os.Environ(),
			Files: []uintptr{stdinFd(), outW.Fd(), errW.Fd()},
		})
		_ = outW.Close()
		_ = errW.Close()
		if err != nil {
			_ = outR.Close()
			_ = errR.Close()
		}
	}
	if err != nil {
		code, message := execFailure(opts.Args[0], err)
		_, _ = fmt.Fprintln(stderr, message)
		startExport()
		if exporter != nil {
			exporter.Add(ExecFailedEvent(time.Now().UnixNano(), code, message))
			exporter.Shutdown(opts.FlushTimeout)
		}
		return code
	}
	process.PID = pid
	startExport()
	if exporter != nil {
		exporter.Add(StartEvent(started.UnixNano(), path, pid))
	}

	var readers sync.WaitGroup
	for _, stream := range []struct {
		r   *os.File
		out *os.File
		s   Stream
	}{{outR, stdout, Stdout}, {errR, stderr, Stderr}} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			pump(stream.r, stream.out, stream.s, queue)
		}()
	}

	status, ok := reapUntil(pid, signals)
	if !ok { // no way to learn the status (cannot happen: only this loop waits): report a failure
		status = syscall.WaitStatus(1 << 8)
	}
	// What the command wrote before it ended is in the pipes; a background process it started may keep them
	// open: read until they close, at most DrainTimeout.
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	go reapOrphans(signals, drained)
	select {
	case <-drained:
	case <-time.After(opts.DrainTimeout):
		// Still held open: stop waiting (a reader blocked in read(2) ends with the process; the pipes close
		// when it does, and what is still written then is not read).
	}
	_ = outR.Close()
	_ = errR.Close()
	code, signalName := exitCode(status)
	if exporter != nil {
		exporter.Add(ExitEvent(time.Now().UnixNano(), code, signalName, time.Since(started).Seconds(), exporter.Lost()))
		exporter.Shutdown(opts.FlushTimeout)
	}
	return code
}

// pump copies one pipe to the supervisor's own output, then splits what it read into lines for the queue
// (nil: export off). When its own output is closed (the reader of kubectl logs or of an exec went away), it
// closes the pipe, so the command sees the broken pipe it would have seen without the supervisor.
func pump(r *os.File, out *os.File, stream Stream, queue *Queue) {
	splitter := NewSplitter(stream)
	buf := make([]byte, readChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				_ = r.Close()
				err = werr
			}
			if queue != nil {
				now := time.Now().UnixNano()
				queue.Lock()
				splitter.Feed(buf[:n], now, queue.pushLocked)
				queue.Unlock()
			}
		}
		if err == nil && n < readChunk/4 {
			time.Sleep(gatherDelay)
			continue
		}
		if err != nil {
			if queue != nil {
				queue.Lock()
				splitter.Flush(time.Now().UnixNano(), queue.pushLocked)
				queue.Unlock()
			}
			if err != io.EOF && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) &&
				!errors.Is(err, syscall.EPIPE) {
				_ = r.Close()
			}
			return
		}
	}
}

// reapUntil forwards signals to the child and reaps every child that ends until the command (pid) has; it
// returns the command's wait status.
func reapUntil(pid int, signals <-chan os.Signal) (syscall.WaitStatus, bool) {
	if status, done := reap(pid); done {
		return status, true
	}
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			if status, done := reap(pid); done {
				return status, true
			}
		case syscall.SIGURG, syscall.SIGPIPE: // the Go runtime's preemption; a closed output of our own
		default:
			if s, ok := sig.(syscall.Signal); ok {
				_ = syscall.Kill(pid, s)
			}
		}
	}
	return 0, false
}

// reapOrphans goes on reaping (and ignoring signals) while the supervisor finishes, until stop.
func reapOrphans(signals <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case sig := <-signals:
			if sig == syscall.SIGCHLD {
				reap(-1)
			}
		}
	}
}

// reap collects every child that has ended, without blocking; done is true when pid was one of them.
func reap(pid int) (status syscall.WaitStatus, done bool) {
	for {
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || got <= 0 {
			return status, done
		}
		if got == pid {
			status, done = ws, true
		}
	}
}

// exitCode is the code the supervisor exits with: the command's, or 128+N for a signal N (and its name).
func exitCode(ws syscall.WaitStatus) (int, string) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return ws.ExitStatus(), ""
}

// resolve finds the command's executable as execvp would: a name without a slash is looked up in PATH.
func resolve(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	return exec.LookPath(name)
}

// execFailure is the exit code and the message (on stderr) of a command that could not be started: 127 when
// it does not exist, 126 when it exists but cannot be run.
func execFailure(name string, err error) (int, string) {
	reason := err.Error()
	code := ExitCannotExecute
	var errno syscall.Errno
	switch {
	case errors.Is(err, exec.ErrNotFound):
		reason, code = "executable file not found in $PATH", ExitNotFound
	case errors.As(err, &errno):
		reason = errno.Error()
		if errno == syscall.ENOENT || errno == syscall.ENOTDIR {
			code = ExitNotFound
		}
	}
	return code, fmt.Sprintf("%s%q: %s", ExecErrorPrefix, name, reason)
}

// blockingPipe is a pipe whose ends are in blocking mode (os.Pipe's are non-blocking, read through the
// runtime's poller: an epoll wait and a goroutine hand-off per read, which costs more than the read itself at
// full speed). Each reader blocks in read(2) on an OS thread of its own.
func blockingPipe(name string) (r, w *os.File, err error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	// Room for a burst while the reader waits for more (below): 1 MiB, the default most a process may ask for
	// (fs.pipe-max-size); the kernel's 64 KiB when refused.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeBytes)
	return os.NewFile(uintptr(fds[0]), name+"-read"), os.NewFile(uintptr(fds[1]), name+"-write"), nil
}

// stdinFd is the supervisor's stdin for the child (inherited as is), or "closed" when it has none.
func stdinFd() uintptr {
	var st syscall.Stat_t
	if err := syscall.Fstat(0, &st); err != nil {
		return ^uintptr(0)
	}
	return 0
}

func newRunID() string {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}
