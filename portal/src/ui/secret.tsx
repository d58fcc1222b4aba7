// A secret shown once (a token, or the command that carries it), with a copy button.
import { useState } from "preact/hooks";

export function Secret(p: { label: string; text: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="secret">
      <div class="secret-label">{p.label}</div>
      <pre class="logs">{p.text}</pre>
      <button
        type="button"
        onClick={() =>
          navigator.clipboard?.writeText(p.text).then(
            () => setCopied(true),
            () => {},
          )
        }
      >
        {copied ? "Copied" : "Copy"}
      </button>
    </div>
  );
}
