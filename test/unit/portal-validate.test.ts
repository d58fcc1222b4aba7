// The portal's own checks before it sends target settings or a policy (portal/src/lib/validate.ts):
// each mistake is named on its field, and what the vault accepts passes.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  parseDurationSeconds,
  parseIpv4,
  type TargetSettingsDraft,
  validatePolicy,
  validateTargetSettings,
} from "../../portal/src/lib/validate.ts";
import { parseDuration } from "../../src/domain/duration.ts";

const EMPTY: TargetSettingsDraft = {
  targetName: "",
  cpus: "",
  memoryMiB: "",
  network: "",
  subnet: "",
  ip: "",
  testNetwork: "",
  publicPort: "",
  servicePort: "",
};

describe("target settings", () => {
  it("accepts an empty form and a complete, consistent one", () => {
    assert.deepEqual(validateTargetSettings(EMPTY), {});
    assert.deepEqual(
      validateTargetSettings({
        targetName: "web1-dr",
        cpus: "4",
        memoryMiB: "8192",
        network: "prod",
        subnet: "10.1.2.0/24",
        ip: "10.1.2.15",
        testNetwork: "drill",
        publicPort: "8443",
        servicePort: "443",
      }),
      {},
    );
  });

  it("names each mistake on its field", () => {
    const e = (patch: Partial<TargetSettingsDraft>) => validateTargetSettings({ ...EMPTY, ...patch });
    assert.match(e({ targetName: "web 1" }).targetName ?? "", /letters, digits/);
    assert.match(e({ cpus: "0" }).cpus ?? "", /1 to 1024/);
    assert.match(e({ cpus: "2.5" }).cpus ?? "", /whole number/);
    assert.match(e({ memoryMiB: "8" }).memoryMiB ?? "", /at least 16/);
    assert.match(e({ subnet: "10.1.2.0" }).subnet ?? "", /network and prefix/);
    assert.match(e({ subnet: "10.1.2.7/24" }).subnet ?? "", /did you mean 10\.1\.2\.0\/24/);
    assert.match(e({ ip: "10.1.2.300" }).ip ?? "", /IPv4 address/);
    assert.match(e({ subnet: "10.1.2.0/24", ip: "10.1.3.5" }).ip ?? "", /not inside 10\.1\.2\.0\/24/);
    assert.match(e({ subnet: "10.1.2.0/24", ip: "10.1.2.0" }).ip ?? "", /network address/);
    assert.match(e({ subnet: "10.1.2.0/24", ip: "10.1.2.255" }).ip ?? "", /broadcast address/);
    assert.match(
      e({ network: "prod", testNetwork: "prod" }).testNetwork ?? "",
      /clash with the running machine/,
    );
    assert.match(e({ publicPort: "70000" }).publicPort ?? "", /1 to 65535/);
    assert.match(e({ servicePort: "443" }).servicePort ?? "", /needs a public port/);
  });

  it("reads IPv4 addresses as numbers and refuses octets over 255", () => {
    assert.equal(parseIpv4("10.1.2.3"), 0x0a010203);
    assert.equal(parseIpv4("255.255.255.255"), 0xffffffff);
    assert.equal(parseIpv4("1.2.3.256"), null);
    assert.equal(parseIpv4("1.2.3"), null);
  });
});

describe("policy", () => {
  const ok = {
    name: "gold",
    rpoThreshold: "5m",
    retention: "72h",
    crashConsistentEvery: "30s",
    appConsistentEvery: "4h",
  };

  it("accepts what the vault accepts", () => {
    assert.deepEqual(validatePolicy(ok), {});
    assert.deepEqual(validatePolicy({ ...ok, appConsistentEvery: "0" }), {});
    assert.deepEqual(validatePolicy({ ...ok, appConsistentEvery: "none" }), {});
  });

  it("names the vault's rules before the request is sent", () => {
    assert.match(validatePolicy({ ...ok, name: "gold plan" }).name ?? "", /letters/);
    assert.match(validatePolicy({ ...ok, retention: "72 hours" }).retention ?? "", /write a duration/);
    assert.match(validatePolicy({ ...ok, retention: "10s" }).retention ?? "", /at least as long/);
    assert.match(validatePolicy({ ...ok, appConsistentEvery: "10s" }).appConsistentEvery ?? "", /more often/);
    assert.match(
      validatePolicy({ ...ok, crashConsistentEvery: "10m" }).crashConsistentEvery ?? "",
      /breach the RPO/,
    );
    assert.match(validatePolicy({ ...ok, rpoThreshold: "500ms" }).rpoThreshold ?? "", /at least 1s/);
  });

  it("reads durations as the vault does", () => {
    for (const s of ["500ms", "30s", "90m", "1h30m", "7d", "2w", "1.5h"]) {
      assert.equal(parseDurationSeconds(s), parseDuration(s) / 1000, s);
    }
    for (const s of ["", "1 h", "h", "1x", "-1s"]) assert.equal(parseDurationSeconds(s), null, s);
  });
});
