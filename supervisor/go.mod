module github.com/leap0-dev/leap0/supervisor

go 1.26.0

require (
	go.opentelemetry.io/proto/otlp v1.11.1
	golang.org/x/sys v0.49.0
	google.golang.org/protobuf v1.36.12
)
