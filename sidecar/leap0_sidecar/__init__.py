"""The leap0 telemetry sidecar: sandbox metrics from cgroups plus the app's OTLP, forwarded with identity."""
