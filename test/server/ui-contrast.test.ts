/**
 * Text contrast of the UI's palette (style.ts): every text colour against each background it is
 * drawn on reaches WCAG AA, 4.5:1 (relative luminance as WCAG 2.x defines it). The colours are
 * read from the stylesheet itself, so changing one there is checked here.
 */
import { describe, expect, test } from "vitest";
import { CSS } from "../../src/server/ui/style.js";

const vars = new Map([...CSS.matchAll(/--([a-z-]+):\s*(#[0-9a-fA-F]{6})/g)].map((m) => [m[1]!, m[2]!]));
const colour = (c: string) => (c.startsWith("#") ? c : vars.get(c)!);

function luminance(hex: string): number {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r! + 0.7152 * g! + 0.0722 * b!;
}

function contrast(a: string, b: string): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi! + 0.05) / (lo! + 0.05);
}

// [text, background, where]: variables by name, literals as they appear in the stylesheet.
const PAIRS: [string, string, string][] = [
  ["fg", "bg", "body text"],
  ["fg", "panel", "table headers, step panel"],
  ["muted", "bg", "secondary text"],
  ["muted", "panel", "secondary text in a panel"],
  ["muted", "#f6f8fa", "chart captions, code blocks"],
  ["link", "bg", "links"],
  ["link", "panel", "links in a panel"],
  ["ok", "ok-bg", "succeeded badge, added diff lines"],
  ["bad", "bad-bg", "failed badge, notices, removed diff lines"],
  ["bad", "bg", "error text"],
  ["bad", "panel", "error text in a panel"],
  ["run", "run-bg", "running badge"],
  ["run", "#f6f8fa", "diff hunk headers"],
  ["warn", "warn-bg", "cancelled badge"],
  ["idle", "idle-bg", "pending badge"],
  ["#ffffff", "#1b1f24", "top bar links"],
  ["#d0d7de", "#1b1f24", "who is logged in"],
  ["#ffffff", "#0b57d0", "primary buttons"],
  ["#e6edf3", "#0d1117", "log lines"],
  ["#f0b72f", "#0d1117", "cut-line marks in logs"],
  ["#e6edf3", "#30363d", "log buttons"],
  ["#1b1f24", "#f6f8fa", "graph node labels, pre"],
  ["fg", "ok-bg", "labels of succeeded graph nodes"],
  ["fg", "bad-bg", "labels of failed graph nodes"],
  ["fg", "run-bg", "labels of running graph nodes"],
  ["fg", "warn-bg", "labels of cancelled graph nodes"],
];

describe("contrast", () => {
  test("the stylesheet defines the palette's variables", () => {
    for (const v of ["fg", "muted", "bg", "panel", "link", "ok", "ok-bg", "bad", "bad-bg", "run", "run-bg", "warn", "warn-bg", "idle", "idle-bg"])
      expect(vars.get(v), v).toMatch(/^#[0-9a-fA-F]{6}$/);
    for (const [fg, bg] of PAIRS) for (const c of [fg, bg]) if (c.startsWith("#")) expect(CSS.toLowerCase()).toContain(c.toLowerCase());
  });

  test.each(PAIRS)("%s on %s (%s) is at least 4.5:1", (fg, bg) => {
    expect(contrast(colour(fg), colour(bg))).toBeGreaterThanOrEqual(4.5);
  });

  test("the formula: black on white is 21:1, a colour on itself 1:1", () => {
    expect(contrast("#000000", "#ffffff")).toBeCloseTo(21, 5);
    expect(contrast("#777777", "#777777")).toBe(1);
  });
});
