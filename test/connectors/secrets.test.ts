import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isSecretRef, redact, resolveSecret, safeUrl } from "../../src/connectors/secrets.js";
import { failure } from "../helpers.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "sluice-secrets-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("resolveSecret", () => {
  it("reads env: references", async () => {
    expect(await resolveSecret("env:SLUICE_T_TOKEN", "token", { env: { SLUICE_T_TOKEN: "s3cr3t" } })).toBe("s3cr3t");
  });

  it("names a missing variable, never a value", async () => {
    const err = await failure(resolveSecret("env:SLUICE_T_MISSING", "password", { env: { OTHER: "hunter2" } }));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("SLUICE_T_MISSING");
    expect(err.message).toContain("password");
    expect(err.message).not.toContain("hunter2");
  });

  it("reads file: references and trims the trailing newline only", async () => {
    const path = join(dir, "token.txt");
    await writeFile(path, "  spaced value \n");
    expect(await resolveSecret(`file:${path}`, "token")).toBe("  spaced value ");
    await writeFile(path, "crlf\r\n");
    expect(await resolveSecret(`file:${path}`, "token")).toBe("crlf");
  });

  it("resolves relative file: paths against baseDir", async () => {
    await writeFile(join(dir, "rel.txt"), "relative\n");
    expect(await resolveSecret("file:rel.txt", "token", { baseDir: dir })).toBe("relative");
  });

  it("fails with BAD_CONFIG naming a missing secret file", async () => {
    const err = await failure(resolveSecret(`file:${join(dir, "nope.txt")}`, "token"));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toContain(join(dir, "nope.txt"));
    expect(err.message).toContain("does not exist");
  });

  it("rejects literal values for secret fields", async () => {
    const err = await failure(resolveSecret("hunter2", "password"));
    expect(err.code).toBe("BAD_CONFIG");
    expect(err.message).toBe("password must be a secret reference (env:NAME or file:PATH), not a literal value");
    expect(isSecretRef("env:")).toBe(false);
    expect(isSecretRef("env:X")).toBe(true);
  });
});

describe("redact and safeUrl", () => {
  it("masks every occurrence, including URL-encoded forms, longest first", () => {
    const text = "token=ab/c+d&again ab/c+d; url ab%2Fc%2Bd; short ab";
    expect(redact(text, ["ab/c+d", "ab", undefined, ""])).toBe("token=***&again ***; url ***; short ***");
  });

  it("strips credentials and masks sensitive query values", () => {
    expect(safeUrl("https://user:pw@api.example.com/x?page=2&api_key=abc")).toBe("https://api.example.com/x?page=2&api_key=***");
    expect(safeUrl("postgres://bob:pw@db:5432/app")).toBe("postgres://db:5432/app");
    expect(safeUrl("not a url //u:p@host")).toBe("not a url //host");
    expect(safeUrl("https://h/x?access_token=a&X-Amz-Signature=b&apiKey=c&key=d&monkey=e&author=f")).toBe(
      "https://h/x?access_token=***&X-Amz-Signature=***&apiKey=***&key=***&monkey=e&author=f",
    );
  });
});
