import { describe, expect, test } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { scratch } from "../helpers.js";
import { SluiceError } from "../../src/errors.js";
import { loadServerConfig, parseServerConfig } from "../../src/server/config.js";

const dir = scratch()("sluice-config-");

const failure = (text: string): SluiceError => {
  try {
    parseServerConfig(text, "serve.yaml");
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    return err as SluiceError;
  }
  throw new Error("expected the config to be refused");
};

describe("server config", () => {
  test("no file: loopback defaults, no tokens, no alerts", async () => {
    expect(await loadServerConfig(undefined)).toEqual({ server: {}, auth: { tokens: [] }, alerts: [] });
  });

  test("the documented shape, with alert defaults filled in", async () => {
    const file = join(dir, "serve.yaml");
    writeFileSync(
      file,
      `server:
  host: 0.0.0.0
  port: 8080
auth:
  tokens:
    - name: ci
      token: env:SLUICE_TOKEN_CI
      role: operator
alerts:
  - name: ops
    url: http://127.0.0.1:9999/hook
    format: json
    on: [run_failed, sla_breach, quality_breach]
    workflows: [standard-ingestion]
  - name: chat
    url: env:SLACK_WEBHOOK
    format: slack
  - name: plain
    url: https://example.com/alerts
    on: [sla_breach]
`,
    );
    const cfg = await loadServerConfig(file);
    expect(cfg.server).toEqual({ host: "0.0.0.0", port: 8080 });
    expect(cfg.auth.tokens).toEqual([{ name: "ci", token: "env:SLUICE_TOKEN_CI", role: "operator" }]);
    expect(cfg.alerts).toEqual([
      { name: "ops", url: "http://127.0.0.1:9999/hook", format: "json", on: ["run_failed", "sla_breach", "quality_breach"], workflows: ["standard-ingestion"] },
      { name: "chat", url: "env:SLACK_WEBHOOK", format: "slack", on: ["run_failed", "sla_breach", "quality_breach"] },
      { name: "plain", url: "https://example.com/alerts", format: "json", on: ["sla_breach"] },
    ]);
  });

  test("a literal token is refused at its FILE:LINE:COL, with every other problem", () => {
    const err = failure(`server:
  port: 99999
auth:
  tokens:
    - name: ci
      token: hunter2
      role: root
alerts:
  - name: ops
    url: ftp://x
    on: [run_failed, disk_full]
    colour: red
`);
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message.split("\n")).toEqual([
      "invalid server config:",
      "serve.yaml:2:9: server.port: must be ≤ 65535",
      "serve.yaml:6:14: auth.tokens[0].token: must be a secret reference (env:NAME or file:PATH), never the value itself",
      'serve.yaml:7:13: auth.tokens[0].role: must be one of "viewer", "operator", "admin"',
      "serve.yaml:10:10: alerts[0].url: must be an http(s):// URL or a secret reference (env:NAME or file:PATH)",
      'serve.yaml:11:22: alerts[0].on[1]: must be one of "run_failed", "sla_breach", "quality_breach"',
      'serve.yaml:12:5: alerts[0]: unknown field "colour"',
    ]);
    expect(err.message).not.toContain("hunter2");
    expect((err.details?.problems as unknown[]).length).toBe(6);
  });

  test("missing fields, duplicate names, YAML errors and missing files", async () => {
    expect(failure("auth:\n  tokens:\n    - name: a\n      role: admin\n").message).toContain("serve.yaml:3:7: auth.tokens[0].token: is required");
    expect(failure("alerts:\n  - { name: a, url: env:A }\n  - { name: a, url: env:B }\n").message).toContain(
      'serve.yaml:3:13: alerts[1].name: duplicate name "a"',
    );
    expect(failure("server: [\n").message).toMatch(/serve\.yaml:\d+:\d+: YAML syntax error/);
    expect(failure("servr: {}\n").message).toContain('serve.yaml:1:1: the file: unknown field "servr"');
    await expect(loadServerConfig(join(dir, "nope.yaml"))).rejects.toThrow(/server config file .*nope\.yaml does not exist/);
    expect(parseServerConfig("", "empty.yaml")).toEqual({ server: {}, auth: { tokens: [] }, alerts: [] });
  });
});
