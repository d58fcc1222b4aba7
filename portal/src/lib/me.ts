// Who is signed in: the token's name and role (GET /v1/whoami), read once per sign-in. A viewer token
// may only read, so pages offer no operation to it (the vault would refuse them anyway).
import { useEffect, useState } from "preact/hooks";
import { type Answer, client, ok, onSignedOut } from "../api/client.ts";

export type Me = Answer<"/v1/whoami", "get">;

let cached: Promise<Me> | null = null;
onSignedOut(() => {
  cached = null;
});

export function useMe(): Me | undefined {
  const [me, setMe] = useState<Me | undefined>(undefined);
  useEffect(() => {
    cached ??= ok(client.GET("/v1/whoami"));
    let live = true;
    cached.then(
      (m) => live && setMe(m),
      () => {
        cached = null;
      },
    );
    return () => {
      live = false;
    };
  }, []);
  return me;
}

/** True once the vault said the token may only read. */
export function useReadOnly(): boolean {
  return useMe()?.role === "viewer";
}
