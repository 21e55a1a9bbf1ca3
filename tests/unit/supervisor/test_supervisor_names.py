"""The supervisor (Go, supervisor/names.go) writes the names leap0_contract gives, letter for letter."""

from __future__ import annotations

import re

from support import REPO

import leap0_contract as c

NAMES_GO = REPO / "supervisor" / "names.go"
LINES_GO = REPO / "supervisor" / "lines.go"
_CONST = re.compile(r'^\s+(\w+)\s*=\s*"([^"]*)"', re.MULTILINE)

# Go constant -> the contract's name for it.
GO_TO_CONTRACT = {
    "AttrLogIostream": "ATTR_LOG_IOSTREAM",
    "AttrLogtag": "ATTR_LOGTAG",
    "AttrContainerName": "ATTR_K8S_CONTAINER",
    "AttrProcessPID": "ATTR_PROCESS_PID",
    "AttrProcessExeName": "ATTR_PROCESS_EXECUTABLE_NAME",
    "AttrProcessArgs": "ATTR_PROCESS_COMMAND_ARGS",
    "AttrServiceName": "ATTR_SERVICE_NAME",
    "AttrRunID": "ATTR_PROCESS_RUN_ID",
    "AttrExitCode": "ATTR_PROCESS_EXIT_CODE",
    "AttrRunDuration": "ATTR_PROCESS_RUN_DURATION",
    "AttrDropped": "ATTR_PROCESS_RUN_DROPPED",
    "EventStart": "EVENT_PROCESS_START",
    "EventExit": "EVENT_PROCESS_EXIT",
    "EventDropped": "EVENT_PROCESS_DROPPED",
    "MetricDropped": "METRIC_SUPERVISOR_DROPPED",
    "MetricDroppedUnit": "UNIT_LINES",
    "ScopeName": "SUPERVISOR_SCOPE_NAME",
    "ExecErrorPrefix": "SUPERVISOR_EXEC_ERROR_PREFIX",
}
# Go string constants that are not contract names (descriptions).
NOT_NAMES = {"MetricDroppedDescription"}


def go_names() -> dict[str, str]:
    return dict(_CONST.findall(NAMES_GO.read_text()))


def test_every_go_name_is_the_contracts() -> None:
    names = go_names()
    assert set(names) - NOT_NAMES == set(GO_TO_CONTRACT), "a name of names.go is not mapped to the contract"
    for go, contract_name in GO_TO_CONTRACT.items():
        assert names[go] == getattr(c, contract_name), f"{go} = {names[go]!r}, contract {contract_name}"


def test_line_limit_and_env_are_the_contracts() -> None:
    assert re.search(r"const MaxLineBytes = 64 \* 1024\n", LINES_GO.read_text())
    assert c.SUPERVISOR_MAX_LINE_BYTES == 64 * 1024
    config = (REPO / "supervisor" / "config.go").read_text()
    assert f'EnvBufferBytes = "{c.ENV_SUPERVISOR_BUFFER_BYTES}"' in config
    main = (REPO / "supervisor" / "main.go").read_text()
    for word in (c.SUPERVISOR_RUN, c.SUPERVISOR_EXEC, c.SUPERVISOR_INSTALL):
        assert f'"{word}"' in main
    for flag in (c.SUPERVISOR_FLAG_CONTAINER, c.SUPERVISOR_FLAG_TRACEPARENT):
        assert f'"{flag.removeprefix("--")}"' in main
