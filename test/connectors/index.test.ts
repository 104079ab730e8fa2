import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { SluiceError } from "../../src/errors.js";
import { parseSourceUrl } from "../../src/connectors/index.js";

describe("parseSourceUrl", () => {
  it("classifies http and https URLs, with a display form free of credentials", () => {
    expect(parseSourceUrl("https://api.example.com/v1/items?page=1")).toEqual({
      kind: "http",
      url: "https://api.example.com/v1/items?page=1",
      tls: true,
      display: "https://api.example.com/v1/items?page=1",
    });
    expect(parseSourceUrl("HTTP://u:secret@example.com/x")).toMatchObject({ kind: "http", tls: false, display: "http://example.com/x" });
  });

  it("classifies postgres and postgresql URLs", () => {
    expect(parseSourceUrl("postgres://app@db:5432/sales")).toEqual({
      kind: "postgres",
      url: "postgres://app@db:5432/sales",
      display: "postgres://db:5432/sales",
    });
    expect(parseSourceUrl("postgresql://db/sales?sslmode=require").kind).toBe("postgres");
  });

  it("treats everything else as a local file, directory or glob", () => {
    expect(parseSourceUrl("data/in/*.csv")).toEqual({ kind: "file", path: resolve("data/in/*.csv"), glob: true, display: resolve("data/in/*.csv") });
    expect(parseSourceUrl("/var/data/file.csv")).toMatchObject({ kind: "file", path: "/var/data/file.csv", glob: false });
    expect(parseSourceUrl("file:///var/data/a%20b.csv")).toMatchObject({ kind: "file", path: "/var/data/a b.csv" });
  });

  it("refuses empty sources, unknown schemes and secret references", () => {
    for (const bad of ["", "  ", "s3://bucket/key", "ftp://host/file", "env:SOURCE_URL", "file:secret.txt"]) {
      expect(() => parseSourceUrl(bad), bad).toThrow(SluiceError);
    }
    try {
      parseSourceUrl("s3://bucket/key");
    } catch (err) {
      expect((err as SluiceError).code).toBe("BAD_CONFIG");
      expect((err as SluiceError).message).toContain("s3://");
    }
  });
});
