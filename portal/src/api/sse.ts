// Server-sent events over fetch (EventSource cannot send the Authorization header): calls onEvent for
// each `data:` line's JSON until the stream ends or the signal aborts. Resolves when the server closes
// the stream (a finished job), rejects on a network error.
import { currentToken, problemOf } from "./client.ts";

export async function readEvents(
  url: string,
  onEvent: (ev: unknown) => void,
  signal: AbortSignal,
): Promise<void> {
  const t = currentToken();
  const res = await fetch(url, {
    headers: { accept: "text/event-stream", ...(t !== null ? { authorization: `Bearer ${t}` } : {}) },
    signal,
  });
  if (!res.ok || res.body === null) throw problemOf(res.status, await res.json().catch(() => null));
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    for (let cut = buf.indexOf("\n\n"); cut >= 0; cut = buf.indexOf("\n\n")) {
      const frame = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const data = frame
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trimStart())
        .join("\n");
      if (data !== "") onEvent(JSON.parse(data));
    }
  }
}
