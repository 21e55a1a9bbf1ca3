/** Pause and resume, the pure parts: the new spec fields, the verdicts of a watched pause or resume, the
 * refusal judged before asking, and the activity annotation. */

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  activityPatch,
  buildSandboxBody,
  pauseRefusal,
  pauseRefused,
  pauseVerdict,
  recordsActivity,
  resumeVerdict,
  sandboxFields,
} from "../dist/models.js";

function sandbox(status: Record<string, unknown>, spec: Record<string, unknown> = {}): Record<string, unknown> {
  return { metadata: { name: "s", namespace: "n", generation: 3 }, spec, status };
}

test("workspace, idleTimeout and onTimeout go to the spec as given", () => {
  const body = buildSandboxBody({
    name: "s",
    namespace: "n",
    workspace: { persistent: true, storageClassName: "fast" },
    idleTimeout: 600,
    onTimeout: "Pause",
  });
  assert.deepEqual(body.spec, {
    workspace: { persistent: true, storageClassName: "fast" },
    idleTimeout: 600,
    onTimeout: "Pause",
  });
});

test("the sandbox's pause fields, spec and status", () => {
  const data = sandboxFields(
    sandbox(
      {
        phase: "Paused",
        pausedAt: "2026-01-01T00:01:00Z",
        resumedAt: "2026-01-01T00:00:30Z",
        workspace: { persistent: true, claimName: "s-workspace" },
        idleTimeout: 60,
      },
      { paused: true, idleTimeout: 60, onTimeout: "Pause", workspace: { persistent: true } },
    ),
  );
  assert.equal(data.paused, true);
  assert.equal(data.idleTimeout, 60);
  assert.equal(data.onTimeout, "Pause");
  assert.deepEqual(data.workspace, { persistent: true });
  assert.equal(data.pausedAt, "2026-01-01T00:01:00Z");
  assert.equal(data.resumedAt, "2026-01-01T00:00:30Z");
  assert.deepEqual(data.effectiveWorkspace, { persistent: true, claimName: "s-workspace" });
  assert.equal(data.effectiveIdleTimeout, 60);
});

test("a pause is done once Paused, failed when refused or ended, judged from the generation that asked", () => {
  assert.equal(pauseVerdict(sandbox({ phase: "Paused", observedGeneration: 3 }), 3), "done");
  assert.equal(pauseVerdict(sandbox({ phase: "Paused", observedGeneration: 2 }), 3), "pending");
  assert.equal(pauseVerdict(sandbox({ phase: "Running", observedGeneration: 3 }), 3), "pending");
  assert.equal(pauseVerdict(sandbox({ phase: "Expired" }), 3), "failed");
  const refused = {
    phase: "Running",
    observedGeneration: 3,
    conditions: [{ type: "Paused", status: "False", reason: "PauseRefused", message: "no persistent workspace" }],
  };
  assert.equal(pauseVerdict(sandbox(refused), 3), "failed");
  assert.equal(pauseVerdict(sandbox({ ...refused, observedGeneration: 2 }), 3), "pending");
  assert.equal(pauseRefused(sandboxFields(sandbox(refused))), "no persistent workspace");
});

test("a resume is done once Running again after the asking generation, never on the old status", () => {
  assert.equal(resumeVerdict(sandbox({ phase: "Running", observedGeneration: 2 }), 3), "pending");
  assert.equal(resumeVerdict(sandbox({ phase: "Pending", observedGeneration: 3 }), 3), "pending");
  assert.equal(resumeVerdict(sandbox({ phase: "Running", observedGeneration: 3 }), 3), "done");
  assert.equal(resumeVerdict(sandbox({ phase: "Failed", observedGeneration: 3 }), 3), "failed");
});

test("a pause is refused before asking when the workspace is known not persistent, or the sandbox ended", () => {
  assert.match(pauseRefusal(sandbox({ phase: "Running", workspace: { persistent: false } })) ?? "", /emptyDir/);
  assert.match(pauseRefusal(sandbox({ phase: "Expired" })) ?? "", /only a Pending or Running/);
  assert.equal(pauseRefusal(sandbox({ phase: "Running", workspace: { persistent: true } })), undefined);
  assert.equal(pauseRefusal(sandbox({})), undefined); // not known yet: the operator decides
});

test("use is recorded as RFC 3339 seconds, only for sandboxes that can go idle", () => {
  assert.deepEqual(activityPatch(new Date("2026-03-04T05:06:07.891Z")), {
    metadata: { annotations: { "leap0.dev/last-activity": "2026-03-04T05:06:07Z" } },
  });
  assert.equal(recordsActivity(sandboxFields(sandbox({}))), false);
  assert.equal(recordsActivity(sandboxFields(sandbox({}, { idleTimeout: 5 }))), true);
  assert.equal(recordsActivity(sandboxFields(sandbox({ idleTimeout: 5 }))), true);
});
