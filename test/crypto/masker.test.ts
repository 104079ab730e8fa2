/**
 * The secret masker on every form a secret takes in logs, URLs, headers and JSON.
 */
import { describe, expect, it } from "vitest";
import { createMasker } from "../../src/crypto/masker.js";

describe("secret masker", () => {
  const secret = 's3cr3t/P@ss word+"é"';
  const m = createMasker();
  m.add(secret, undefined, "", "ab");

  it("registers real values only (empty and too-short ones are left out)", () => {
    expect(m.size).toBe(1);
  });

  const bytes = Buffer.from(secret, "utf8");
  const forms: [string, string][] = [
    ["raw", secret],
    ["base64", bytes.toString("base64")],
    ["base64 without padding", bytes.toString("base64").replace(/=+$/, "")],
    ["base64url", bytes.toString("base64url")],
    ["hex", bytes.toString("hex")],
    ["HEX", bytes.toString("hex").toUpperCase()],
    ["URL-encoded", encodeURIComponent(secret)],
    ["form-encoded", new URLSearchParams({ p: secret }).toString().slice(2)],
    ["JSON-escaped", JSON.stringify(secret).slice(1, -1)],
    ["JSON in JSON", JSON.stringify(JSON.stringify({ password: secret }))],
  ];
  it.each(forms)("masks the %s form inside a log line", (_name, form) => {
    const line = `level=info msg="connecting" detail=${form} end`;
    const out = m.mask(line);
    expect(out).toContain("***");
    expect(out).not.toContain(form);
    expect(out.startsWith("level=info")).toBe(true);
  });

  it("masks the password inside HTTP Basic credentials at every alignment", () => {
    for (const user of ["a", "ab", "abc", "user"]) {
      const header = `Authorization: Basic ${Buffer.from(`${user}:${secret}`).toString("base64")}`;
      const out = m.mask(header);
      expect(out).toContain("***");
      // What is left of the base64 is too short to carry the password: at most two characters on each side.
      const rest = out.slice("Authorization: Basic ".length).split("***");
      expect(rest.every((r) => r.length <= Math.ceil(((user.length + 1) * 8) / 6) + 3)).toBe(true);
    }
  });

  it("masks a secret that contains another whole, and leaves other text alone", () => {
    const k = createMasker();
    k.add("token-123", "token-123-extended");
    expect(k.mask("a token-123-extended b token-123 c")).toBe("a *** b *** c");
    expect(k.mask("nothing to see")).toBe("nothing to see");
    expect(createMasker().mask("no secrets registered")).toBe("no secrets registered");
  });
});
