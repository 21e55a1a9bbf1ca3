package main

// The names the supervisor writes: the same values as in leap0_contract (the Python package every other part
// reads them from); tests/unit/supervisor/test_supervisor_names.py holds the two together.
const (
	// Log record attributes of each line, as the OpenTelemetry Collector's container parser writes them.
	AttrLogIostream = "log.iostream" // "stdout" or "stderr"
	AttrLogtag      = "logtag"       // "F": a whole line; "P": a piece of a longer line that goes on

	// Resource attributes: the process the records are about.
	AttrContainerName  = "k8s.container.name"
	AttrProcessPID     = "process.pid"
	AttrProcessExeName = "process.executable.name"
	AttrProcessArgs    = "process.command_args"
	AttrServiceName    = "service.name"
	// One run of one command: a random id (32 hex digits) on every record of the run.
	AttrRunID = "process.run.id"

	// Attributes of the exit record.
	AttrExitCode    = "process.exit.code"    // the exit code, 128+N for a process killed by signal N
	AttrRunDuration = "process.run.duration" // seconds from start to exit (a double)
	// On the drop record: lines lost since the previous one; on the exit record: lines lost in the run.
	AttrDropped = "process.run.dropped"

	// Event names of the records that are not a line of output.
	EventStart   = "leap0.process.start"
	EventExit    = "leap0.process.exit"
	EventDropped = "leap0.process.dropped"

	// The counter of lines lost (a cumulative Sum on /v1/metrics, sent when there were some).
	MetricDropped            = "leap0.supervisor.lines.dropped"
	MetricDroppedUnit        = "{line}"
	MetricDroppedDescription = "Lines of output (or 64 KiB pieces of longer lines) not delivered as log records"

	// Instrumentation scope of every record.
	ScopeName = "leap0-supervisor"

	// The first words of what the supervisor writes on stderr when the command cannot be started (exit code 127
	// or 126): the SDKs turn it into the error an exec of a missing program gives without the supervisor.
	ExecErrorPrefix = "leap0-supervisor: exec: "
)
