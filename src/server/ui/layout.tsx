/**
 * The page shell every view shares: navigation, who is logged in, the scripts (htmx and its SSE
 * extension, served from the package) and small display helpers. JSX escapes every string it is
 * given, so run names, errors, log lines and records (all untrusted) can never become markup.
 */
import type { Child } from "hono/jsx";
import { formatDuration } from "../../spec/duration.js";
import type { Principal } from "../auth.js";

export const UI = "/ui";

export interface PageProps {
  title: string;
  who: Principal;
  /** Whether this server asks for tokens (then a log-out button is shown). */
  authOn: boolean;
  csrf: string;
  children?: Child;
}

export function Page(p: PageProps) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="csrf-token" content={p.csrf} />
        <title>{`${p.title} · Sluice`}</title>
        <link rel="stylesheet" href={`${UI}/assets/sluice.css`} />
        <script src={`${UI}/assets/htmx.min.js`} defer></script>
        <script src={`${UI}/assets/sse.js`} defer></script>
      </head>
      {/* htmx requests carry the CSRF token as a header; plain forms carry it as a hidden field. */}
      <body hx-headers={JSON.stringify({ "X-CSRF-Token": p.csrf })}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <a href={`${UI}/runs`} data-testid="nav-runs">
            Sluice · Runs
          </a>
          <a href={`${UI}/workflows`} data-testid="nav-workflows">
            Workflows
          </a>
          <a href={`${UI}/events`} data-testid="nav-events">
            Events
          </a>
          <span class="who" data-testid="who">
            {p.who.name} ({p.who.role})
          </span>
          {p.authOn && (
            <form method="post" action={`${UI}/logout`}>
              <input type="hidden" name="_csrf" value={p.csrf} />
              <button type="submit" data-testid="logout">
                Log out
              </button>
            </form>
          )}
        </header>
        <main id="main">{p.children}</main>
      </body>
    </html>
  );
}

export function Badge(p: { status: string }) {
  return (
    <span class={`badge s-${p.status}`} data-status={p.status}>
      {p.status}
    </span>
  );
}

export function CsrfField(p: { csrf: string }) {
  return <input type="hidden" name="_csrf" value={p.csrf} />;
}

export function took(start: string | null, end: string | null, now = Date.now()): string {
  if (!start) return "";
  return formatDuration(Math.max(0, (end ? Date.parse(end) : now) - Date.parse(start)));
}

export const shortTime = (iso: string | null) => (iso ? iso.replace("T", " ").slice(0, 19) : "");

export const count = (n: number | null | undefined) => (n === null || n === undefined ? "" : n.toLocaleString("en-US"));

/** A path segment of a UI URL (run ids and step names go into paths). */
export const seg = encodeURIComponent;
