/**
 * The `sh` holder that lets an exec step be measured (actions/exec-usage.ts) must change nothing
 * the program or the user sees: the program itself runs (never a shell builtin of its name),
 * with no extra descriptors, its exit status and signal reported as before, its stderr in the
 * log and none of the holder's own notices, and programs that cannot run named as before.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { attemptLogFile } from "../../src/engine/attempt-log.js";
import { resolveProgram } from "../../src/actions/exec-usage.js";
import { runDetail } from "../../src/engine/index.js";
import { runWorkflow, testEnv, workflow, type TestEnv } from "../helpers.js";

let env: TestEnv;
afterEach(async () => env?.cleanup());

async function runOne(exec: Record<string, unknown>) {
  env ??= testEnv();
  const run = await runWorkflow(env, workflow({ steps: [{ name: "x", exec, retry: { limit: 0 } }] }));
  const d = await runDetail(env.store, run.id);
  return { run, step: d.steps[0]!, log: () => readFileSync(attemptLogFile(env.home, run.id, "x", 1), "utf8") };
}

describe("exec under the usage holder", () => {
  it("runs the program, not a shell builtin of the same name", async () => {
    env = testEnv();
    // dash's builtin echo would turn the backslash-n into a newline; /bin/echo prints it as is.
    const { step } = await runOne({ command: ["echo", "a\\nb"] });
    expect(step.outputs).toMatchObject({ exitCode: 0, stdout: "a\\nb" });
  });

  it("hands the program no descriptor beyond stdin, stdout and stderr", async () => {
    env = testEnv();
    const { step } = await runOne({ command: ["sh", "-c", "for f in 3 4 5; do [ -e /proc/$$/fd/$f ] && echo open $f; done; true"] });
    expect(step.outputs).toMatchObject({ exitCode: 0, stdout: "" });
  });

  it("reports a signal as a signal, with the program's stderr and none of the holder's notices", async () => {
    env = testEnv();
    const { step, log } = await runOne({ command: ["sh", "-c", "echo about to die >&2; kill -9 $$"] });
    expect(step.status).toBe("failed");
    expect(step.attempts[0]!.error).toMatchObject({ code: "EXEC_FAILED", message: 'command "sh" was killed by SIGKILL: about to die' });
    expect(log()).toMatch(/^about to die\n\{/); // the program's line, then the attempt's error line
    expect(log()).not.toContain("Killed"); // the holder's notice of the signal
  });

  it("reports an exit code as before, and the attempt's figures with it", async () => {
    env = testEnv();
    const { step } = await runOne({ command: ["sh", "-c", "exit 7"] });
    expect(step.attempts[0]!.error!.message).toBe('command "sh" exited with code 7');
    expect(step.attempts[0]!.usage).toMatchObject({ scope: "process-tree" });
  });

  it("names a missing program and a file that is not executable, relative to the working directory", async () => {
    env = testEnv();
    const dir = join(env.home, "work");
    mkdirSync(dir);
    writeFileSync(join(dir, "script.sh"), "#!/bin/sh\necho from script\n");
    expect((await runOne({ command: ["./script.sh"], workingDir: dir })).step.attempts[0]!.error).toEqual({
      code: "BAD_CONFIG",
      message: `command "./script.sh" is not executable (working directory ${dir})`,
    });
    chmodSync(join(dir, "script.sh"), 0o755);
    expect((await runOne({ command: ["./script.sh"], workingDir: dir })).step.outputs).toMatchObject({ stdout: "from script" });
    expect((await runOne({ command: ["./nope.sh"], workingDir: dir })).step.attempts[0]!.error!.message).toBe(
      `command "./nope.sh" was not found (working directory ${dir})`,
    );
    // A working directory that does not exist: spawn's own error, named as before.
    const gone = join(env.home, "gone");
    expect((await runOne({ command: ["true"], workingDir: gone })).step.attempts[0]!.error!.message).toBe(
      `command "true" was not found (working directory ${gone})`,
    );
  });

  it("finds programs on PATH as execvp does", () => {
    expect(resolveProgram("sh", "/", "/nonexistent:/bin")).toEqual({ path: "/bin/sh" });
    expect(resolveProgram("sh", "/bin", "")).toEqual({ path: "/bin/sh" }); // an empty entry is the working directory
    expect(resolveProgram("no-such-program-xyz", "/", process.env.PATH)).toEqual({ problem: "missing" });
    expect(resolveProgram("/bin", "/", undefined)).toEqual({ problem: "missing" }); // a directory is not a program
  });
});
