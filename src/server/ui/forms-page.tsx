/**
 * The two forms: log in with an API token, and start a run of a workflow, its fields built from
 * the workflow's parameter schema (type, default, required, description).
 */
import type { ParamSpec } from "../../spec/schema.js";
import { CsrfField, seg, UI } from "./layout.js";

export function LoginPage(p: { next: string; error?: string }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>Log in · Sluice</title>
        <link rel="stylesheet" href={`${UI}/assets/sluice.css`} />
      </head>
      <body>
        <main id="main" style="max-width:28rem">
          <h1>Sluice</h1>
          <p>Log in with an API token from the server's config (auth.tokens).</p>
          {p.error && (
            <p class="notice" role="alert" data-testid="login-error">
              {p.error}
            </p>
          )}
          <form method="post" action={`${UI}/login`} data-testid="login-form">
            <input type="hidden" name="next" value={p.next} />
            <label>
              Token
              <input type="password" name="token" autocomplete="current-password" required autofocus data-testid="login-token" />
            </label>
            <p>
              <button type="submit" class="primary" data-testid="login-submit">
                Log in
              </button>
            </p>
          </form>
        </main>
      </body>
    </html>
  );
}

export function StartForm(p: {
  workflow: string;
  version: number;
  params: Record<string, ParamSpec>;
  csrf: string;
  error?: string;
  given?: Record<string, string>;
}) {
  const entries = Object.entries(p.params);
  return (
    <>
      <h1>
        Start a run of {p.workflow} <span class="muted">v{p.version}</span>
      </h1>
      {p.error && (
        <p class="notice" role="alert" data-testid="start-error">
          {p.error}
        </p>
      )}
      <form method="post" action={`${UI}/workflows/${seg(p.workflow)}/runs`} data-testid="start-form">
        <CsrfField csrf={p.csrf} />
        <input type="hidden" name="_version" value={String(p.version)} />
        {entries.length === 0 && <p class="muted">This workflow takes no parameters.</p>}
        {entries.map(([name, spec]) => {
          const value = p.given?.[name] ?? (spec.default === undefined ? "" : String(spec.default));
          const required = spec.required !== false && spec.default === undefined;
          const help = `${spec.type}${required ? ", required" : spec.default !== undefined ? `, default ${String(spec.default)}` : ", optional"}`;
          return (
            <p>
              <label>
                {name} <span class="muted">({help})</span>
                {spec.type === "boolean" ? (
                  <select name={name} data-testid={`param-${name}`}>
                    <option value="true" selected={value === "true"}>
                      true
                    </option>
                    <option value="false" selected={value !== "true"}>
                      false
                    </option>
                  </select>
                ) : (
                  <input
                    type={spec.type === "string" ? "text" : "number"}
                    {...(spec.type === "integer" && { step: "1" })}
                    {...(spec.type === "number" && { step: "any" })}
                    name={name}
                    value={value}
                    required={required}
                    data-testid={`param-${name}`}
                  />
                )}
                {spec.description && <span class="muted">{spec.description}</span>}
              </label>
            </p>
          );
        })}
        <button type="submit" class="primary" data-testid="start-submit">
          Start the run
        </button>
      </form>
    </>
  );
}
