"""Development tools: the embedded Kubernetes API and the local runner. Product code never imports this."""
