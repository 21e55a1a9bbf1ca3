// Command leap0-supervisor runs a command in a leap0 sandbox and turns its output into OpenTelemetry logs.
//
//	leap0-supervisor run  [--container NAME] [--] COMMAND [ARG...]   the sandbox's main process
//	leap0-supervisor exec [--container NAME] [--traceparent TP] [--] COMMAND [ARG...]   a command run through the SDKs
//	leap0-supervisor install DEST   copy this binary to DEST (the pod's init container)
//	leap0-supervisor version
//
// It passes every byte the command writes to its own stdout and stderr as is, and sends each line as an
// OTLP/HTTP log record to the telemetry sidecar (OTEL_EXPORTER_OTLP_ENDPOINT, default http://127.0.0.1:4318).
// It never slows the command for the sake of telemetry: a bounded queue drops the oldest lines when the
// sidecar does not keep up, and says how many. See docs/logs.md.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  leap0-supervisor run  [--container NAME] [--] COMMAND [ARG...]
  leap0-supervisor exec [--container NAME] [--traceparent TRACEPARENT] [--] COMMAND [ARG...]
  leap0-supervisor install DEST
  leap0-supervisor version
`)
}

func main() {
	// A small process beside the app: two threads of Go code at most, and a heap collected early.
	runtime.GOMAXPROCS(2)
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(16 << 20)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr *os.File) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	case "install":
		if len(args) != 2 {
			usage(stderr)
			return 2
		}
		if err := Install(args[1]); err != nil {
			fmt.Fprintf(stderr, "leap0-supervisor: install: %v\n", err)
			return 1
		}
		return 0
	case "run", "exec":
		opts, err := parse(args[0], args[1:])
		if err != nil {
			fmt.Fprintf(stderr, "leap0-supervisor: %v\n", err)
			usage(stderr)
			return 2
		}
		return Supervise(opts, ReadSettings(os.Getenv), stdout, stderr)
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	fmt.Fprintf(stderr, "leap0-supervisor: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func parse(mode string, args []string) (Options, error) {
	flags := flag.NewFlagSet(mode, flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	container := flags.String("container", "", "k8s.container.name of the records")
	traceparent := ""
	if mode == "exec" {
		flags.StringVar(&traceparent, "traceparent", "", "W3C traceparent of the caller's span")
	}
	opts := Options{DrainTimeout: DefaultDrainTimeout, FlushTimeout: DefaultRunFlushTimeout, Version: version}
	if mode == "exec" {
		opts.FlushTimeout = DefaultExecFlushTimeout
	}
	flags.DurationVar(&opts.DrainTimeout, "drain-timeout", opts.DrainTimeout, "")
	flags.DurationVar(&opts.FlushTimeout, "flush-timeout", opts.FlushTimeout, "")
	if err := flags.Parse(args); err != nil {
		return opts, err
	}
	if flags.NArg() == 0 {
		return opts, fmt.Errorf("%s: no command given", mode)
	}
	if opts.DrainTimeout < 0 || opts.FlushTimeout < 0 {
		return opts, fmt.Errorf("%s: timeouts must not be negative", mode)
	}
	opts.Container = *container
	opts.Args = flags.Args()
	if tc, ok := ParseTraceparent(traceparent); ok {
		opts.Trace = &tc
	}
	return opts, nil
}
