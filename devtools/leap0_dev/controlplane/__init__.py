"""The real Kubernetes control plane, built from source (``devtools/k8s``) and run on this machine.

- :func:`ensure_binaries` gives the folder holding kube-apiserver, kube-controller-manager, kube-scheduler,
  etcd and helm (``KUBEBUILDER_ASSETS``, or the build cache, building what is missing);
- :class:`ControlPlane` runs etcd, the API server, the controller-manager and the scheduler, and stops them.

See docs/control-plane.md.
"""

from __future__ import annotations

from .build import BINARIES, BuildError, ensure_binaries
from .plane import ControlPlane, ControlPlaneError

__all__ = ["BINARIES", "BuildError", "ControlPlane", "ControlPlaneError", "ensure_binaries"]
