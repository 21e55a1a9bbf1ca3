"""The local pod runner: plays the kubelet for ``leap0 dev up`` against the embedded API server.

It watches pods and, for each one:

- starts the native sidecars (init containers with ``restartPolicy: Always``) first: the ``telemetry``
  container as a local ``leap0-sidecar`` process; then the main containers: a Python command runs with this
  machine's interpreter, another command when its executable exists here, and a container relying on its
  image's entrypoint gets an idle stand-in process (the image is not available here);
- gives each container the environment its spec gives it (values, ``$(VAR)``, downward-API ``fieldRef``
  and ``resourceFieldRef``, ``secretKeyRef``/``configMapKeyRef``), with local stand-ins for what pods do not
  share here: each pod's sidecar gets receiver and health ports of its own (4317/4318/13133 when free), the
  sandbox's ``127.0.0.1:4317/4318`` endpoints follow them, volume mount paths become a directory per pod,
  and the sidecar learns the sandbox's pid (``LEAP0_SANDBOX_PID``) instead of scanning a shared process
  namespace;
- when running as root, puts each main container in a real cgroup (v1: cpu, cpuacct, memory; v2: cpu,
  memory) with the container's CPU and memory limits, so an allocation past the limit is OOM-killed and
  reported as such;
- reports the pod's status (phase, conditions, container states with exit codes and reasons, podIP
  127.0.0.1);
- when the pod goes, stops the main containers, then the sidecars (SIGTERM, then SIGKILL after the grace
  period).


The decisions are pure functions in :mod:`leap0_dev.podspec`; this package does the processes and API calls,
one concern a module:

- :mod:`.config`: :class:`RunnerConfig`;
- :mod:`.cgroups`: a container's cgroup and its limits;
- :mod:`.processes`: one container as a local process (start, hold, restart, probe, stop);
- :mod:`.pod`: one pod's containers and the pod status they make;
- :mod:`.watch`: :class:`Runner`, the pod watch, the loop running pods and the status writes;
- :mod:`.podexec`: :class:`PodExecRunner`, ``kubectl exec`` in a container.

Every process it starts ends with the process running the runner (:mod:`leap0_dev.children`).
"""

from .config import RunnerConfig
from .pod import LocalPod
from .podexec import PodExecRunner
from .processes import Container
from .watch import Runner

__all__ = ["Container", "LocalPod", "PodExecRunner", "Runner", "RunnerConfig"]
