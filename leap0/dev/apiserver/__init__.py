"""`leap0 dev apiserver`: the embedded Kubernetes API used for development and tests."""
