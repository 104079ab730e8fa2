/**
 * A browser-like client for the web UI tests: a cookie jar, forms posted as a browser posts them
 * (urlencoded, with Origin), redirects not followed (tests look at them), and SSE frames read
 * from a real stream until a given event.
 */
export interface Page {
  status: number;
  headers: Headers;
  text: string;
}

export function uiClient(base: string) {
  const jar = new Map<string, string>();
  const remember = (res: Response) => {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(";");
      const [k, v] = pair!.split("=");
      if (/Max-Age=0/i.test(c) || v === "") jar.delete(k!);
      else jar.set(k!, v!);
    }
  };
  const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
  return {
    jar,
    async get(path: string, headers: Record<string, string> = {}): Promise<Page> {
      const res = await fetch(base + path, { redirect: "manual", headers: { cookie: cookie(), ...headers } });
      remember(res);
      return { status: res.status, headers: res.headers, text: await res.text() };
    },
    async post(path: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Page> {
      const res = await fetch(base + path, {
        method: "POST",
        redirect: "manual",
        headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded", origin: base, ...headers },
        body: new URLSearchParams(form).toString(),
      });
      remember(res);
      return { status: res.status, headers: res.headers, text: await res.text() };
    },
    /** Frames of an event stream until one named `until` (or the stream ends, or `ms` pass). */
    async sse(path: string, until: string, opts: { headers?: Record<string, string>; ms?: number; onOpen?: () => unknown } = {}) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), opts.ms ?? 15_000);
      const res = await fetch(base + path, { headers: { cookie: cookie(), accept: "text/event-stream", ...opts.headers }, signal: ctl.signal });
      const frames: { event?: string; id?: string; data: string }[] = [];
      void opts.onOpen?.();
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf("\n\n")) !== -1) {
            const raw = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const f: { event?: string; id?: string; data: string } = { data: "" };
            const data: string[] = [];
            for (const line of raw.split("\n")) {
              if (line.startsWith("event: ")) f.event = line.slice(7);
              else if (line.startsWith("id: ")) f.id = line.slice(4);
              else if (line.startsWith("data: ")) data.push(line.slice(6));
              else if (line === "data:") data.push("");
            }
            f.data = data.join("\n");
            frames.push(f);
            if (f.event === until) {
              ctl.abort();
              return { status: res.status, type: res.headers.get("content-type"), frames };
            }
          }
        }
      } catch (err) {
        if ((err as Error).name !== "AbortError") throw err;
      } finally {
        clearTimeout(timer);
      }
      return { status: res.status, type: res.headers.get("content-type"), frames };
    },
  };
}

/** The CSRF token a page carries (its meta tag; forms carry the same in a hidden field). */
export function csrfOf(html: string): string {
  const m = /<meta name="csrf-token" content="([^"]*)"/.exec(html);
  if (!m) throw new Error("the page has no CSRF token");
  return m[1]!;
}
