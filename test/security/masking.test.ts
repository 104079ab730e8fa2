/**
 * The process-wide masker on its paths: a value resolved through resolveSecret is masked in an
 * attempt log line, a JSON log line of the CLI/service logger, and an API error body — in its raw,
 * base64, hex, URL- and JSON-escaped forms.
 */
import { describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Writable } from "node:stream";
import { resolveSecret } from "../../src/connectors/secrets.js";
import { maskSecrets } from "../../src/crypto/masker.js";
import { lazyLog } from "../../src/engine/attempt.js";
import { jsonLogger } from "../../src/cli/json-log.js";
import { scratch } from "../helpers.js";

const dir = scratch();

describe("the process-wide masker", () => {
  it("masks every resolved secret on the log paths", async () => {
    const secret = `s3cr3t-${randomBytes(8).toString("hex")}`;
    expect(maskSecrets(`x ${secret} y`)).toBe(`x ${secret} y`); // not yet resolved: nothing registered
    await resolveSecret("env:SLUICE_TEST_MASK", "auth.token", { env: { SLUICE_TEST_MASK: secret } });
    const forms = [secret, Buffer.from(secret).toString("base64"), Buffer.from(secret).toString("hex"), encodeURIComponent(`${secret} `)];
    for (const f of forms) expect(maskSecrets(`before ${f} after`)).not.toContain(f.trim());

    const file = join(dir("sluice-mask-"), "attempt.log");
    const log = lazyLog(file);
    log.error(`request failed with ${secret}`, { header: `Bearer ${secret}`, b64: Buffer.from(secret).toString("base64") });
    await log.close();
    const text = readFileSync(file, "utf8");
    expect(text).not.toContain(secret);
    expect(text).toContain("request failed with ***");

    let out = "";
    const sink = new Writable({ write: (c, _e, cb) => ((out += c.toString()), cb()) });
    jsonLogger({ service: "sluice" }, { destination: sink }).info({ url: `https://x/?t=${encodeURIComponent(secret)}` }, `token ${secret}`);
    await new Promise((r) => setTimeout(r, 20));
    expect(out).toContain('"msg":"token ***"');
    expect(out).not.toContain(secret);
  });
});
