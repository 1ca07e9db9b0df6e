#!/usr/bin/env python3
"""Compare-and-swap through the object_store crate (Python `obstore`), as
lock files, Delta Lake and Iceberg commits use it: `mode="create"` sends
If-None-Match: *, `mode={"e_tag": ...}` sends If-Match.

  obstore_locks.py locks ROUNDS CLIENTS
      Each round, CLIENTS stores spread over the endpoints race to create
      one lock file: exactly one succeeds, the others get AlreadyExistsError
      (or, under contention, an error telling them to try again).
  obstore_locks.py counter CLIENTS INCREMENTS
      Every client appends its own ids, one at a time, to one shared
      object by read, modify, conditional update, retrying on
      PreconditionError: at the end the object lists every id exactly
      once (no update lost, none applied twice).

Environment: HANGAR_S3_ENDPOINTS (comma-separated), HANGAR_KEY_ID,
HANGAR_KEY_SECRET, HANGAR_BUCKET.
"""
import json
import os
import sys
import threading

import client as scenarios  # tests/s3/client.py: the shared race helper
from datetime import timedelta

import obstore
from obstore.exceptions import AlreadyExistsError, NotFoundError, PreconditionError
from obstore.store import S3Store


def stores(n):
    endpoints = os.environ["HANGAR_S3_ENDPOINTS"].split(",")
    return [S3Store(
        os.environ["HANGAR_BUCKET"],
        endpoint=endpoints[i % len(endpoints)],
        access_key_id=os.environ["HANGAR_KEY_ID"],
        secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "30s"},
        retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=1),
                      "backoff": {"init_backoff": timedelta(milliseconds=10),
                                  "max_backoff": timedelta(milliseconds=10), "base": 2}},
    ) for i in range(n)]


def fail(msg):
    """Stop the whole run (from any thread)."""
    print("FAILED:", msg, file=sys.stderr, flush=True)
    os._exit(1)


def outcome(call):
    """What one conditional put came to."""
    try:
        call()
        return "ok"
    except AlreadyExistsError:
        return "exists"
    except PreconditionError:
        return "precondition"
    except Exception as e:  # 503: try again
        return f"other: {type(e).__name__}"


def race(n, fn):
    return scenarios.race(n, fn, outcome)


def locks(rounds, n):
    ss = stores(n)
    retry = 0
    for r in range(rounds):
        path = f"locks/round-{r}.lock"
        results = race(n, lambda i: obstore.put(ss[i], path, f"held by {i}".encode(), mode="create"))
        winners = [i for i, c in enumerate(results) if c == "ok"]
        retry += sum(1 for c in results if c.startswith("other"))
        if len(winners) != 1:
            fail(f"round {r}: {len(winners)} clients hold the lock: {results}")
        held = bytes(obstore.get(ss[0], path).bytes())
        if held != f"held by {winners[0]}".encode():
            fail(f"round {r}: the lock says {held!r}, client {winners[0]} was told it holds it")
    print(f"ok {rounds} rounds of {n} obstore clients racing for a lock file: one holder each "
          f"({retry} told to try again)")


def counter(n, increments):
    ss = stores(n)
    path = "counter.json"
    obstore.put(ss[0], path, b"[]", mode="overwrite")
    conflicts = [0] * n

    def client(i):
        s = ss[i]
        for k in range(increments):
            me = f"{i}-{k}"
            errors = 0
            while True:
                try:
                    got = obstore.get(s, path)
                    ids = json.loads(bytes(got.bytes()))
                    if me in ids:  # an earlier try took effect after all
                        break
                    obstore.put(s, path, json.dumps(ids + [me]).encode(),
                                mode={"e_tag": got.meta["e_tag"]})
                    break
                except PreconditionError:
                    conflicts[i] += 1
                except NotFoundError:
                    fail("the counter disappeared")
                except Exception as e:  # 503 or a timeout: read again and see
                    conflicts[i] += 1
                    errors += 1
                    if errors > 50:
                        fail(f"client {i}: 50 errors in a row updating the counter, the last: {e!r}")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = json.loads(bytes(obstore.get(ss[0], path).bytes()))
    want = sorted(f"{i}-{k}" for i in range(n) for k in range(increments))
    if sorted(ids) != want:
        missing = sorted(set(want) - set(ids))
        twice = sorted(x for x in set(ids) if ids.count(x) > 1)
        fail(f"{len(ids)} ids for {len(want)} updates: missing {missing[:10]}, twice {twice[:10]}")
    print(f"ok {n} obstore clients made {len(want)} conditional updates of one object: none lost, "
          f"none twice ({sum(conflicts)} retried after a conflict)")


if __name__ == "__main__":
    cmd, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    {"locks": locks, "counter": counter}[cmd](*args)
