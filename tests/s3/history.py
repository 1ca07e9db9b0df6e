#!/usr/bin/env python3
"""A workload that records its history, and a checker for it.

  history.py run --endpoints URL,URL,... --clients N --keys K --seconds S --out FILE
                 [--until-file F] [--swaps WEIGHT]
      Concurrent boto3 clients (spread over the endpoints) PUT, GET, DELETE
      and LIST keys k000..k<K-1> of $HANGAR_BUCKET for S seconds; every
      written value is unique. Each operation is recorded as one JSON line:
      client, op, key, value written, start and end (monotonic seconds),
      status (ok, fail, unknown) and result (value read, keys listed).
  history.py check --endpoint URL --history FILE [--plant-lost-write]
      After the faults have healed: reads every key and lists the bucket,
      then checks the history (see `check`) and prints a JSON report;
      exits 1 on any anomaly. --plant-lost-write drops one acknowledged
      write from the final state first, to prove the checker sees it.
  history.py selftest
      The checker against small histories with known anomalies.

The rules, for one key (a delete writes "absent"; before any write the key
is absent):
  - a value X can be read by a read R if X was written by an operation that
    started before R ended, and no write acknowledged before R started
    began after X's write had ended (it would have superseded X);
  - after the faults heal, the final value must be possible for a read that
    starts after everything: no acknowledged write may be lost;
  - LIST after healing names exactly the keys whose final GET finds them.
Writes that failed or timed out may or may not have taken effect: they
make their value possible, never required.

Conditional writes: a "swap" PUTs with If-Match the ETag of the value its
client last read of the key; a "create" PUTs with If-None-Match: * one of
the lock keys l000.. (which nothing else writes). One told 200 is a write,
and its condition must have held: the value it replaced must be one a read
spanning the swap could see (absent, for a create), and no two swaps told
200 replaced the same value (no two creates of one lock key succeeded).
One told 412 is no write at all: its value must never be read.
"""
import argparse
import json
import os
import random
import sys
import threading
import time

ABSENT = None
INF = float("inf")


def s3_client(endpoint):
    import boto3
    from botocore.config import Config
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        # One attempt, no retry: botocore's `max_attempts` counts retries,
        # and a conditional PUT retried after a 503 (its outcome not known)
        # is refused by its own first attempt's value, which then looks
        # like a 412 whose value was written.
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1},
                      connect_timeout=2, read_timeout=6, signature_version="s3v4"))


def run(args):
    import botocore
    bucket = os.environ["HANGAR_BUCKET"]
    endpoints = args.endpoints.split(",")
    deadline = time.monotonic() + args.seconds
    out = open(args.out, "w")
    lock = threading.Lock()

    def record(entry):
        with lock:
            out.write(json.dumps(entry) + "\n")
            out.flush()

    def client(c):
        s3 = s3_client(endpoints[c % len(endpoints)])
        rng = random.Random(c)
        seq = 0
        last_read = {}  # key -> (value, etag) this client last read
        while time.monotonic() < deadline and not (args.until_file and os.path.exists(args.until_file)):
            op = rng.choices(["put", "get", "delete", "list", "swap", "create"],
                             [40, 32, 8, 8, args.swaps, 4])[0]
            key = f"k{rng.randrange(args.keys):03}"
            if op == "swap" and key not in last_read:
                op = "get"
            if op == "create":
                key = f"l{rng.randrange(args.keys):03}"
            seq += 1
            value = f"c{c}-{seq}" if op in ("put", "swap", "create") else None
            entry = {"c": c, "op": op, "key": key, "value": value, "start": time.monotonic()}
            try:
                if op == "put":
                    s3.put_object(Bucket=bucket, Key=key, Body=value.encode())
                elif op == "swap":
                    entry["expects"], etag = last_read.pop(key)
                    s3.put_object(Bucket=bucket, Key=key, Body=value.encode(), IfMatch=etag)
                elif op == "create":
                    entry["expects"] = ABSENT
                    s3.put_object(Bucket=bucket, Key=key, Body=value.encode(), IfNoneMatch="*")
                elif op == "delete":
                    s3.delete_object(Bucket=bucket, Key=key)
                elif op == "get":
                    try:
                        got = s3.get_object(Bucket=bucket, Key=key)
                        entry["result"] = got["Body"].read().decode()
                        last_read[key] = (entry["result"], got["ETag"])
                    except botocore.exceptions.ClientError as e:
                        if e.response["Error"]["Code"] != "NoSuchKey":
                            raise
                        entry["result"] = ABSENT
                else:
                    entry["key"] = None
                    r = s3.list_objects_v2(Bucket=bucket)
                    entry["result"] = [o["Key"] for o in r.get("Contents", [])]
                entry["status"] = "ok"
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                # A swap of a key that is gone is S3's 404: refused too.
                refused = code == "PreconditionFailed" or (op == "swap" and code == "NoSuchKey")
                entry["status"] = "refused" if refused else "fail"
            except Exception:  # timeouts, refused connections: outcome unknown
                entry["status"] = "unknown"
            entry["end"] = time.monotonic()
            record(entry)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    ops = [json.loads(line) for line in open(args.out)]
    ok = sum(1 for o in ops if o["status"] == "ok")
    print(f"ran {len(ops)} operations, {ok} acknowledged")


def check(history, final, listed):
    """Check a history against the final state. `final`: key -> value or
    ABSENT after healing; `listed`: keys LIST returned after healing.
    Returns the report (anomalies listed under "anomalies")."""
    writes = {}  # key -> [(start, end, value, acked, since)]
    ended = {}  # (key, value) -> when its write ended, if acknowledged
    for o in history:
        if o["op"] in ("put", "swap", "create") and o["status"] == "ok":
            ended[(o["key"], o["value"])] = o["end"]
    for o in history:
        # A conditional write refused with 412 wrote nothing.
        if o["op"] in ("put", "delete", "swap", "create") and o["status"] != "refused":
            # From when a later write supersedes this one: the end of this
            # write; for a conditional write told 200, the end of the write
            # it replaced, if earlier (an acknowledged write that began
            # after that cannot come between the two, so comes after); for
            # a write that failed, never (a copy it left on one replica may
            # be taken up later, as if it were still going on).
            since = o["end"] if o["status"] == "ok" else INF
            if o["op"] in ("swap", "create") and o["status"] == "ok":
                since = min(since, -INF if o["expects"] is ABSENT
                            else ended.get((o["key"], o["expects"]), since))
            writes.setdefault(o["key"], []).append(
                (o["start"], o["end"], o["value"], o["status"] == "ok", since))
    anomalies = []

    def possible(key, value, r_start, r_end):
        ws = writes.get(key, [])
        sources = [since for (s, _, v, _, since) in ws if v == value and s < r_end]
        if value is ABSENT:
            sources.append(-INF)  # the initial state
        for since in sources:
            superseded = any(acked and w_start > since and w_end < r_start
                             and (v != value or v is ABSENT)
                             for (w_start, w_end, v, acked, _) in ws)
            if not superseded:
                return True
        return False

    reads = 0
    for o in history:
        if o["op"] == "get" and o["status"] == "ok":
            reads += 1
            if not possible(o["key"], o["result"], o["start"], o["end"]):
                # The writes of that key around it, to see why at once
                # (times relative to the read's start).
                context = [
                    f'{w["start"] - o["start"]:+.4f} {w["end"] - o["start"]:+.4f} '
                    f'c{w["c"]} {w["op"]} {w.get("value")} '
                    f'expects={w.get("expects", "")} {w["status"]}'
                    for w in history
                    if w.get("key") == o["key"] and w["op"] != "get"
                    and (abs(w["start"] - o["start"]) < 0.1
                         or (w.get("value") == o["result"] and w.get("value") is not None))
                ]
                anomalies.append({"kind": "impossible read", "op": o, "writes around": context})
    conditional = 0
    replaced = {}  # (key, value replaced) -> the write that replaced it
    for o in history:
        if o["op"] in ("swap", "create") and o["status"] == "ok":
            conditional += 1
            if not possible(o["key"], o["expects"], o["start"], o["end"]):
                anomalies.append({"kind": "condition did not hold", "op": o})
            other = replaced.setdefault((o["key"], o["expects"]), o)
            if other is not o:
                anomalies.append({"kind": "two conditional writers won", "ops": [other, o]})
    for key in sorted(set(writes) | set(final)):
        if not possible(key, final.get(key, ABSENT), INF, INF):
            acked = [w for w in writes.get(key, []) if w[3]]
            last = max(acked, key=lambda w: w[1]) if acked else None
            anomalies.append({"kind": "lost write", "key": key, "final": final.get(key),
                              "last acknowledged": last and last[2]})
    found = sorted(k for k, v in final.items() if v is not ABSENT)
    if sorted(listed) != found:
        anomalies.append({"kind": "list disagrees with gets", "listed": sorted(listed), "found": found})
    return {
        "operations": len(history),
        "acknowledged": sum(1 for o in history if o["status"] == "ok"),
        "failed cleanly": sum(1 for o in history if o["status"] == "fail"),
        "unknown outcome": sum(1 for o in history if o["status"] == "unknown"),
        "reads checked": reads,
        "conditional writes acknowledged": conditional,
        "conditional writes refused": sum(1 for o in history if o["status"] == "refused"),
        "keys": len(set(writes) | set(final)),
        "anomalies": anomalies,
    }


def final_state(endpoint, keys):
    import botocore
    bucket = os.environ["HANGAR_BUCKET"]
    s3 = s3_client(endpoint)
    final = {}
    for key in keys:
        try:
            final[key] = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
        except botocore.exceptions.ClientError as e:
            if e.response["Error"]["Code"] != "NoSuchKey":
                raise
            final[key] = ABSENT
    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed += [o["Key"] for o in page.get("Contents", [])]
    return final, listed


def check_cmd(args):
    history = [json.loads(line) for line in open(args.history)]
    keys = sorted({o["key"] for o in history if o["key"]})
    final, listed = final_state(args.endpoint, keys)
    if args.plant_lost_write:
        # Pretend the newest acknowledged PUT of some key was lost.
        puts = [o for o in history if o["op"] == "put" and o["status"] == "ok"
                and final.get(o["key"]) == o["value"]]
        victim = puts[0]
        final[victim["key"]] = ABSENT
        listed = [k for k in listed if k != victim["key"]]
        print(f"planted: the write of {victim['value']} to {victim['key']} is lost")
    report = check(history, final, listed)
    report["faults"] = args.faults
    print(json.dumps(report, indent=1))
    sys.exit(1 if report["anomalies"] else 0)


def selftest():
    def op(kind, key, value, start, end, status="ok", result=None):
        return {"c": 0, "op": kind, "key": key, "value": value, "start": start, "end": end,
                "status": status, "result": result}

    def kinds(report):
        return sorted(a["kind"] for a in report["anomalies"])

    # A clean history: concurrent writes, either may win.
    h = [op("put", "a", "1", 0, 2), op("put", "a", "2", 1, 3), op("get", "a", None, 4, 5, result="1")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == [], "concurrent writes: either may win"
    assert kinds(check(h, {"a": "1"}, ["a"])) == []
    # A lost write: acknowledged, then gone.
    h = [op("put", "a", "1", 0, 1)]
    assert kinds(check(h, {"a": ABSENT}, [])) == ["lost write"]
    # An older value overwriting a newer acknowledged one is a lost write too.
    h = [op("put", "a", "1", 0, 1), op("put", "a", "2", 2, 3)]
    assert kinds(check(h, {"a": "1"}, ["a"])) == ["lost write"]
    # A failed write may or may not have taken effect, even later.
    h = [op("put", "a", "1", 0, 1), op("put", "a", "2", 2, 3, status="unknown")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == []
    assert kinds(check(h, {"a": "1"}, ["a"])) == []
    h = [op("put", "a", "1", 0, 1, status="fail"), op("put", "a", "2", 2, 3),
         op("get", "a", None, 4, 5, result="1")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == []
    # A stale read: older than a write acknowledged before the read began.
    h = [op("put", "a", "1", 0, 1), op("put", "a", "2", 2, 3), op("get", "a", None, 4, 5, result="1")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == ["impossible read"]
    # A phantom: a value nobody wrote.
    h = [op("get", "a", None, 0, 1, result="zzz")]
    assert kinds(check(h, {}, [])) == ["impossible read"]
    # Deletes: absent after an acknowledged delete, not before any write.
    h = [op("put", "a", "1", 0, 1), op("delete", "a", None, 2, 3), op("get", "a", None, 4, 5, result=ABSENT)]
    assert kinds(check(h, {"a": ABSENT}, [])) == []
    assert kinds(check(h, {"a": "1"}, ["a"])) == ["lost write"]
    # LIST must agree with the final GETs.
    h = [op("put", "a", "1", 0, 1)]
    assert kinds(check(h, {"a": "1"}, [])) == ["list disagrees with gets"]
    # Conditional writes: a swap replaces what it read, once.
    h = [op("put", "a", "1", 0, 1), dict(op("swap", "a", "2", 2, 3), expects="1"),
         dict(op("swap", "a", "3", 2, 3), expects="1", status="refused")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == []
    h[2]["status"] = "ok"
    assert "two conditional writers won" in kinds(check(h, {"a": "3"}, ["a"]))
    # A swap of a value an acknowledged write had replaced: a lost update.
    h = [op("put", "a", "1", 0, 1), op("put", "a", "2", 2, 3), dict(op("swap", "a", "3", 4, 5), expects="1")]
    assert "condition did not hold" in kinds(check(h, {"a": "3"}, ["a"]))
    # An acknowledged write that began after the value a swap replaced
    # comes after the swap: the swap's value cannot be read after it ends.
    h = [op("put", "a", "1", 0, 1), op("put", "a", "2", 2, 4), dict(op("swap", "a", "3", 3, 5), expects="1"),
         op("get", "a", None, 6, 7, result="3")]
    assert kinds(check(h, {"a": "2"}, ["a"])) == ["impossible read"]
    assert kinds(check(h[:3], {"a": "3"}, ["a"])) == ["lost write"]
    assert kinds(check(h[:3], {"a": "2"}, ["a"])) == []
    # A refused write's value is never read.
    h = [dict(op("create", "l", "1", 0, 1), expects=ABSENT, status="refused"),
         op("get", "l", None, 2, 3, result="1")]
    assert kinds(check(h, {"l": ABSENT}, [])) == ["impossible read"]
    # Two creates of one lock key.
    h = [dict(op("create", "l", "1", 0, 1), expects=ABSENT), dict(op("create", "l", "2", 0, 1), expects=ABSENT)]
    assert "two conditional writers won" in kinds(check(h, {"l": "2"}, ["l"]))
    print("ok: the checker finds lost writes, stale and phantom reads, list disagreements, "
          "conditional writes that both won or whose condition did not hold")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--endpoints", required=True)
    r.add_argument("--clients", type=int, default=6)
    r.add_argument("--keys", type=int, default=200)
    r.add_argument("--seconds", type=float, default=30)
    r.add_argument("--swaps", type=int, default=8,
                   help="weight of swaps (plain PUTs 40, GETs 32, the rest 24)")
    r.add_argument("--out", required=True)
    r.add_argument("--until-file", help="stop as soon as this file exists")
    c = sub.add_parser("check")
    c.add_argument("--endpoint", required=True)
    c.add_argument("--history", required=True)
    c.add_argument("--faults", type=int, default=0)
    c.add_argument("--plant-lost-write", action="store_true")
    sub.add_parser("selftest")
    a = p.parse_args()
    {"run": run, "check": check_cmd, "selftest": lambda _: selftest()}[a.cmd](a)
