#!/usr/bin/env python3
"""S3 end-to-end checks with boto3, the official AWS SDK for Python.

Run by the Rust end-to-end tests (tests/tests/e2e/s3.rs) against real
Hangar agents. Usage: client.py SCENARIO [ARGS]; connection settings come
from the environment: HANGAR_S3_ENDPOINT, HANGAR_KEY_ID, HANGAR_KEY_SECRET,
HANGAR_BUCKET, and for the permission check HANGAR_OTHER_KEY_ID /
HANGAR_OTHER_KEY_SECRET. Exits non-zero with a message on the first
failed check.
"""
import concurrent.futures
import hashlib
import os
import sys

import boto3
import botocore
from botocore.config import Config

ENDPOINT = os.environ["HANGAR_S3_ENDPOINT"]
BUCKET = os.environ.get("HANGAR_BUCKET", "test")


def client(key_id=None, secret=None, region="us-east-1"):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=key_id or os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=secret or os.environ["HANGAR_KEY_SECRET"],
        # SDKs default to us-east-1; Hangar serves whatever region a client
        # signs for.
        region_name=region,
        # SigV4: boto3 still presigns with the deprecated SigV2 unless told.
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def check(cond, msg):
    if not cond:
        print("FAILED:", msg, file=sys.stderr)
        sys.exit(1)


def error_code(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    return None


def data_for(name, size):
    """Deterministic content, different per object."""
    seed = hashlib.sha256(name.encode()).digest()
    out = bytearray()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:size])


SIZES = [0, 1, 3 * 1024, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 64 << 20]


def put_get_sizes():
    s3 = client()
    for size in SIZES:
        key = f"sizes/object-{size}"
        data = data_for(key, size)
        put = s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="application/x-test",
                            Metadata={"origin": "e2e"})
        md5 = '"%s"' % hashlib.md5(data).hexdigest()
        check(put["ETag"] == md5, f"PUT ETag of {size} B: {put['ETag']} != {md5}")
        got = s3.get_object(Bucket=BUCKET, Key=key)
        body = got["Body"].read()
        check(body == data, f"content of the {size} B object differs ({len(body)} B read)")
        check(got["ETag"] == md5, f"GET ETag of {size} B")
        check(got["ContentLength"] == size, f"Content-Length of {size} B")
        check(got["ContentType"] == "application/x-test", "Content-Type kept")
        check(got["Metadata"].get("origin") == "e2e", f"user metadata kept: {got['Metadata']}")
        head = s3.head_object(Bucket=BUCKET, Key=key)
        check(head["ContentLength"] == size and head["ETag"] == md5, f"HEAD of {size} B")
        print("ok", size, "bytes")


def ranges():
    s3 = client()
    key = "ranges/object"
    data = data_for(key, 3 * (1 << 20) + 123)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    for spec, (a, b) in [
        ("bytes=0-9", (0, 10)),
        ("bytes=1048570-1048580", (1048570, 1048581)),  # across a block boundary
        ("bytes=3145000-", (3145000, len(data))),
        ("bytes=-100", (len(data) - 100, len(data))),
        ("bytes=2097152-2097152", (2097152, 2097153)),
    ]:
        got = s3.get_object(Bucket=BUCKET, Key=key, Range=spec)
        body = got["Body"].read()
        check(body == data[a:b], f"range {spec}: got {len(body)} bytes")
        check(got["ContentRange"] == f"bytes {a}-{b - 1}/{len(data)}", f"Content-Range of {spec}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={len(data)}-"))
    check(code == "InvalidRange", f"range past the end: {code}")
    print("ok ranges")


def listing():
    s3 = client()
    keys = [f"list/dir{d}/file{f:04}" for d in range(5) for f in range(500)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode()), keys))
    # Paginated listing of all 2,500 keys, 1,000 per page.
    seen = []
    pages = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="list/"):
        pages += 1
        seen += [o["Key"] for o in page.get("Contents", [])]
    check(seen == sorted(keys), f"listing returned {len(seen)} keys, in order: {seen[:3]}...")
    check(pages == 3, f"2,500 keys come in 3 pages of at most 1,000, got {pages}")
    # Small pages.
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix="list/dir3/", PaginationConfig={"PageSize": 77}):
        seen += [o["Key"] for o in page.get("Contents", [])]
    check(seen == [k for k in keys if k.startswith("list/dir3/")], "pages of 77")
    # Delimiter: directories.
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/")
    prefixes = [p["Prefix"] for p in r.get("CommonPrefixes", [])]
    check(prefixes == [f"list/dir{d}/" for d in range(5)], f"common prefixes: {prefixes}")
    check("Contents" not in r, "no object directly under list/")
    # Delimiter with pagination over prefixes.
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/", MaxKeys=2)
    check([p["Prefix"] for p in r["CommonPrefixes"]] == ["list/dir0/", "list/dir1/"], "first 2 prefixes")
    check(r["IsTruncated"], "truncated after 2 prefixes")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="list/", Delimiter="/", MaxKeys=2,
                           ContinuationToken=r["NextContinuationToken"])
    check([p["Prefix"] for p in r["CommonPrefixes"]] == ["list/dir2/", "list/dir3/"], "next 2 prefixes")
    # v1 with marker.
    r = s3.list_objects(Bucket=BUCKET, Prefix="list/dir1/", Marker="list/dir1/file0497")
    check([o["Key"] for o in r["Contents"]] == ["list/dir1/file0498", "list/dir1/file0499"], "v1 marker")
    # Files and folders interleaved, deleted objects (a folder whose only
    # object is deleted is gone), several page sizes: the pages, read to
    # the end, give exactly what S3's rules make of the live keys.
    mixed = ["mix/a", "mix/b/1", "mix/b/2", "mix/c", "mix/d/x/1", "mix/e", "mix/f/1",
             "mix/g", "mix/h/1", "mix/h/2"]
    mixed += [f"mix/z{i:03}/k" for i in range(60)] + [f"mix/y{i:03}" for i in range(40)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=BUCKET, Key=k, Body=b"m"), mixed))
    deleted = {"mix/f/1", "mix/c", "mix/z007/k", "mix/y013"}
    for k in deleted:
        s3.delete_object(Bucket=BUCKET, Key=k)
    live = sorted(set(mixed) - deleted)

    def expected(prefix, delim):
        out = []
        for k in live:
            if not k.startswith(prefix):
                continue
            rest = k[len(prefix):]
            if delim and delim in rest:
                cp = prefix + rest[:rest.index(delim) + len(delim)]
                if not out or out[-1] != ("P", cp):
                    out.append(("P", cp))
            else:
                out.append(("K", k))
        return out

    for prefix, delim in [("mix/", "/"), ("mix/", None), ("mix/z0", "/"), ("mix/", "/1")]:
        for size in [1, 3, 7, 1000]:
            got = []
            kw = dict(Bucket=BUCKET, Prefix=prefix, MaxKeys=size)
            if delim:
                kw["Delimiter"] = delim
            while True:
                r = s3.list_objects_v2(**kw)
                page = [("K", o["Key"]) for o in r.get("Contents", [])]
                page += [("P", p["Prefix"]) for p in r.get("CommonPrefixes", [])]
                check(len(page) <= size, f"page of {len(page)} entries for MaxKeys={size}")
                got += sorted(page, key=lambda e: e[1])
                if not r["IsTruncated"]:
                    break
                kw["ContinuationToken"] = r["NextContinuationToken"]
            want = expected(prefix, delim)
            check(got == want, f"prefix {prefix!r} delimiter {delim!r} pages of {size}: "
                  f"{len(got)} entries, expected {len(want)}; first difference "
                  f"{next(((g, w) for g, w in zip(got, want) if g != w), None)}")
    print("ok listing")


def auth_and_permissions():
    s3 = client()
    bad = client(secret="0" * 64)
    code = error_code(lambda: bad.get_object(Bucket=BUCKET, Key="sizes/object-1"))
    check(code == "SignatureDoesNotMatch", f"wrong secret: {code}")
    unknown = client(key_id="GK000000000000000000000000")
    code = error_code(lambda: unknown.list_buckets())
    check(code == "InvalidAccessKeyId", f"unknown key: {code}")
    other = client(os.environ["HANGAR_OTHER_KEY_ID"], os.environ["HANGAR_OTHER_KEY_SECRET"])
    code = error_code(lambda: other.get_object(Bucket=BUCKET, Key="sizes/object-1"))
    check(code == "AccessDenied", f"key without permission reading: {code}")
    code = error_code(lambda: other.put_object(Bucket=BUCKET, Key="intruder", Body=b"x"))
    check(code == "AccessDenied", f"key without permission writing: {code}")
    code = error_code(lambda: s3.head_object(Bucket=BUCKET, Key="intruder"))
    check(code == "404", f"nothing was stored by the refused PUT: {code}")
    code = error_code(lambda: s3.get_object(Bucket="no-such-bucket", Key="x"))
    check(code == "NoSuchBucket", f"missing bucket: {code}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="no/such/key"))
    check(code == "NoSuchKey", f"missing key: {code}")
    print("ok auth")


def buckets():
    s3 = client()
    s3.create_bucket(Bucket="made-by-s3")
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    check("made-by-s3" in names and BUCKET in names, f"list_buckets: {names}")
    s3.head_bucket(Bucket="made-by-s3")
    loc = s3.get_bucket_location(Bucket="made-by-s3")
    check("LocationConstraint" in loc, "location answered")
    s3.put_object(Bucket="made-by-s3", Key="k", Body=b"v")
    code = error_code(lambda: s3.delete_bucket(Bucket="made-by-s3"))
    check(code == "BucketNotEmpty", f"deleting a non-empty bucket: {code}")
    s3.delete_object(Bucket="made-by-s3", Key="k")
    code = error_code(lambda: s3.get_object(Bucket="made-by-s3", Key="k"))
    check(code == "NoSuchKey", f"deleted object: {code}")
    s3.delete_bucket(Bucket="made-by-s3")
    code = error_code(lambda: s3.head_bucket(Bucket="made-by-s3"))
    check(code == "404", f"deleted bucket: {code}")
    code = error_code(lambda: s3.create_bucket(Bucket="Bad_Name"))
    check(code == "InvalidBucketName", f"invalid name: {code}")
    print("ok buckets")


def copy_and_batch_delete():
    s3 = client()
    small = data_for("copy/small", 1000)
    big = data_for("copy/big", (2 << 20) + 12345)
    s3.put_object(Bucket=BUCKET, Key="copy/small", Body=small, ContentType="text/plain",
                  Metadata={"colour": "blue"})
    s3.put_object(Bucket=BUCKET, Key="copy/big", Body=big, Metadata={"colour": "red"})
    # COPY keeps the metadata; blocks are shared, not uploaded again.
    r = s3.copy_object(Bucket=BUCKET, Key="copy/big-copy", CopySource={"Bucket": BUCKET, "Key": "copy/big"})
    check(r["CopyObjectResult"]["ETag"] == '"%s"' % hashlib.md5(big).hexdigest(), "copy ETag")
    got = s3.get_object(Bucket=BUCKET, Key="copy/big-copy")
    check(got["Body"].read() == big, "copied content")
    check(got["Metadata"] == {"colour": "red"}, f"COPY keeps metadata: {got['Metadata']}")
    # REPLACE takes the request's metadata and content type.
    s3.copy_object(Bucket=BUCKET, Key="copy/small-copy", CopySource=f"{BUCKET}/copy/small",
                   MetadataDirective="REPLACE", ContentType="application/json", Metadata={"colour": "green"})
    got = s3.get_object(Bucket=BUCKET, Key="copy/small-copy")
    check(got["Body"].read() == small, "copied inline content")
    check(got["ContentType"] == "application/json" and got["Metadata"] == {"colour": "green"},
          f"REPLACE: {got['ContentType']} {got['Metadata']}")
    # Deleting the source leaves the copy intact.
    s3.delete_object(Bucket=BUCKET, Key="copy/big")
    check(s3.get_object(Bucket=BUCKET, Key="copy/big-copy")["Body"].read() == big, "copy outlives its source")
    code = error_code(lambda: s3.copy_object(Bucket=BUCKET, Key="x", CopySource=f"{BUCKET}/copy/nothing"))
    check(code == "NoSuchKey", f"copy of a missing object: {code}")
    # Batch delete, verbose then quiet.
    for k in ["batch/a", "batch/b", "batch/c"]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "batch/a"}, {"Key": "batch/b"},
                                                             {"Key": "batch/missing"}]})
    deleted = sorted(d["Key"] for d in r.get("Deleted", []))
    check(deleted == ["batch/a", "batch/b", "batch/missing"], f"deleted: {deleted}")
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "batch/c"}], "Quiet": True})
    check("Deleted" not in r and "Errors" not in r, f"quiet mode: {r}")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="batch/").get("Contents", [])]
    check(left == [], f"left after batch delete: {left}")
    print("ok copy and batch delete")


def write_many(prefix, count):
    s3 = client()
    def one(i):
        key = f"{prefix}/{i:04}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data_for(key, 64 * 1024 + i * 997))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    print("ok wrote", count)


def read_many(prefix, count):
    s3 = client()
    def one(i):
        key = f"{prefix}/{i:04}"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        check(body == data_for(key, 64 * 1024 + i * 997), f"content of {key}")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))
    print("ok read", count)


def slow_get(key, size):
    """Upload an object, start reading it, wait for the test to disturb
    the cluster (a line on stdin), then read the rest, which must arrive
    intact within the client's 20 s read timeout."""
    import time
    s3 = client()
    data = data_for(key, size)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    reader = boto3.client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"], region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, read_timeout=20, s3={"addressing_style": "path"}))
    body = reader.get_object(Bucket=BUCKET, Key=key)["Body"]
    head = body.read(2 << 20)
    print("started", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    rest = body.read()
    elapsed = time.monotonic() - start
    check(head + rest == data, f"content after the disturbance ({len(head) + len(rest)} of {size} bytes)")
    print(f"ok finished {elapsed:.1f}s after the disturbance", flush=True)


def interrupted(key):
    """Send a PUT (presigned URL) announcing 5 MiB, stop after 3 MiB and
    close the connection: no object may appear."""
    import http.client
    import urllib.parse
    s3 = client()
    url = urllib.parse.urlparse(s3.generate_presigned_url(
        "put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600))
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.putrequest("PUT", url.path + "?" + url.query, skip_accept_encoding=True)
    conn.putheader("Content-Length", str(5 << 20))
    conn.endheaders()
    conn.send(data_for(key, 3 << 20))
    conn.sock.close()
    code = error_code(lambda: s3.head_object(Bucket=BUCKET, Key=key))
    check(code == "404", f"an interrupted upload left an object: {code}")
    print("ok interrupted upload left no object")


def presigned_get(key):
    """A presigned GET works without any credentials on the client side."""
    import urllib.request
    s3 = client()
    data = data_for(key, 5000)
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    with urllib.request.urlopen(url) as r:
        check(r.read() == data, "presigned GET content")
    print("ok presigned get")


def endpoint_clients(n):
    """n boto3 clients spread over the endpoints of $HANGAR_S3_ENDPOINTS."""
    endpoints = os.environ["HANGAR_S3_ENDPOINTS"].split(",")
    return endpoints, [boto3.client(
        "s3", endpoint_url=endpoints[i % len(endpoints)], region_name="us-east-1",
        aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                      signature_version="s3v4")) for i in range(n)]


def soon(what, fn):
    """fn(), retried for up to 10 s on an S3 error: a node reuses a looked-up
    key or bucket for up to 2 s (README), so another node's change may take
    that long to apply there."""
    import time
    deadline = time.monotonic() + 10
    while True:
        try:
            return fn()
        except botocore.exceptions.ClientError as e:
            if time.monotonic() > deadline:
                check(False, f"{what}: still {e.response['Error']['Code']} after 10 s")
            time.sleep(0.2)


def sequential_order(rounds):
    """Writes one after the other through different nodes: the later
    acknowledged one wins everywhere, whatever the nodes' clocks (the test
    runs the nodes with clocks minutes apart). HANGAR_S3_ENDPOINTS lists
    every node's endpoint; rounds go through every ordered pair of them."""
    endpoints = os.environ["HANGAR_S3_ENDPOINTS"].split(",")
    _, clients = endpoint_clients(len(endpoints))
    n = len(clients)
    pairs = [(a, b) for a in range(n) for b in range(n) if a != b]
    lost = []

    def everywhere(key):
        """What each node serves for key: its bytes, or None if absent."""
        out = []
        for c in clients:
            code = error_code(lambda: c.head_object(Bucket=BUCKET, Key=key))
            if code == "404":
                out.append(None)
            else:
                out.append(c.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        return out

    def expect(case, key, want, first, second):
        got = everywhere(key)
        if any(g != want for g in got):
            shown = ["absent" if g is None else ("expected" if g == want else "an earlier value") for g in got]
            lost.append(f"{case} {key} (first via node {first}, then via node {second}): nodes serve {shown}")

    def multipart(c, key, data):
        up = c.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        parts = []
        for i, chunk in enumerate([data[:big], data[big:]], start=1):
            etag = c.upload_part(Bucket=BUCKET, Key=key, UploadId=up, PartNumber=i, Body=chunk)["ETag"]
            parts.append({"PartNumber": i, "ETag": etag})
        c.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=up,
                                    MultipartUpload={"Parts": parts})

    big = 5 << 20  # multipart parts other than the last need 5 MiB
    for r in range(rounds):
        a, b = pairs[r % len(pairs)]
        ca, cb = clients[a], clients[b]
        v1, v2 = f"first {r}".encode(), f"second {r}".encode()
        # PUT then PUT.
        k = f"order/putput-{r}"
        ca.put_object(Bucket=BUCKET, Key=k, Body=v1)
        cb.put_object(Bucket=BUCKET, Key=k, Body=v2)
        expect("PUT/PUT", k, v2, a, b)
        # PUT then DELETE.
        k = f"order/putdel-{r}"
        ca.put_object(Bucket=BUCKET, Key=k, Body=v1)
        cb.delete_object(Bucket=BUCKET, Key=k)
        expect("PUT/DELETE", k, None, a, b)
        # DELETE then PUT (of a key that existed, written through the other).
        k = f"order/delput-{r}"
        cb.put_object(Bucket=BUCKET, Key=k, Body=v1)
        ca.delete_object(Bucket=BUCKET, Key=k)
        cb.put_object(Bucket=BUCKET, Key=k, Body=v2)
        expect("DELETE/PUT", k, v2, a, b)
        # PUT then CopyObject onto it; then a PUT onto the copy.
        k, src = f"order/copy-{r}", f"order/copy-src-{r}"
        cb.put_object(Bucket=BUCKET, Key=src, Body=v2)
        ca.put_object(Bucket=BUCKET, Key=k, Body=v1)
        cb.copy_object(Bucket=BUCKET, Key=k, CopySource={"Bucket": BUCKET, "Key": src})
        expect("PUT/CopyObject", k, v2, a, b)
        ca.put_object(Bucket=BUCKET, Key=k, Body=v1)
        expect("CopyObject/PUT", k, v1, b, a)
        # PUT then CompleteMultipartUpload; then a PUT onto it.
        k = f"order/mpu-{r}"
        mpu = data_for(k, big + 1000)
        ca.put_object(Bucket=BUCKET, Key=k, Body=v1)
        multipart(cb, k, mpu)
        expect("PUT/CompleteMultipartUpload", k, mpu, a, b)
        cb.put_object(Bucket=BUCKET, Key=k, Body=v2)
        multipart(ca, k, mpu)
        expect("PUT/CompleteMultipartUpload", k, mpu, b, a)
    if lost:
        print("FAILED: later writes lost:", file=sys.stderr)
        for line in lost:
            print("  " + line, file=sys.stderr)
        sys.exit(1)
    print(f"ok {rounds} rounds of sequential writes through alternating nodes")


def bucket_recreate(rounds):
    """A bucket deleted through one node and created again through another
    is there, whatever the nodes' clocks."""
    endpoints = os.environ["HANGAR_S3_ENDPOINTS"].split(",")
    _, clients = endpoint_clients(len(endpoints))
    n = len(clients)
    for r in range(rounds):
        a, b, c = r % n, (r + 1) % n, (r + 2) % n
        name = f"recreated-{r}"
        clients[a].create_bucket(Bucket=name)
        soon(f"delete {name} through node {b}", lambda: clients[b].delete_bucket(Bucket=name))
        soon(f"create {name} again through node {c}", lambda: clients[c].create_bucket(Bucket=name))
        clients[c].put_object(Bucket=name, Key="k", Body=b"v")
        for i, cl in enumerate(clients):
            got = soon(f"read {name}/k through node {i}",
                       lambda: cl.get_object(Bucket=name, Key="k")["Body"].read())
            check(got == b"v", f"bucket {name} recreated through node {c}: node {i} serves {got!r}")
    print(f"ok {rounds} buckets deleted and created again through alternating nodes")


def race(n, fn, outcome=lambda f: error_code(f) or "ok"):
    """Run fn(0)..fn(n-1) at once (released together by a barrier), each
    in its own thread; returns what `outcome` makes of each call."""
    import threading
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        barrier.wait()
        results[i] = outcome(lambda: fn(i))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def bucket_race(rounds, clients_n):
    """Several clients create the same bucket name at once through every
    node: exactly one succeeds, the others are told the name is taken (or,
    at worst, to try again), and every node then serves the winner's
    bucket."""
    endpoints, clients = endpoint_clients(clients_n)
    retries = 0
    for r in range(rounds):
        name = f"race-{r}"
        results = race(clients_n, lambda i: clients[i].create_bucket(Bucket=name))
        winners = [i for i, c in enumerate(results) if c == "ok"]
        others = set(c for c in results if c != "ok")
        retries += sum(1 for c in results if c == "ServiceUnavailable")
        check(len(winners) == 1, f"round {r}: {len(winners)} creators of {name} were told 200: {results}")
        # Every client here uses the same key: S3 says the bucket is
        # already theirs.
        check(others <= {"BucketAlreadyOwnedByYou", "BucketAlreadyExists", "ServiceUnavailable"},
              f"round {r}: {results}")
        w = clients[winners[0]]
        w.put_object(Bucket=name, Key="k", Body=name.encode())
        for i, c in enumerate(clients[:len(endpoints)]):
            got = soon(f"round {r}: read {name}/k through node {i}",
                       lambda: c.get_object(Bucket=name, Key="k")["Body"].read())
            check(got == name.encode(), f"round {r}: node {i} serves another bucket {name}")
    print(f"ok {rounds} rounds of {clients_n} racing creators: one winner each ({retries} told to retry)")


def conditional_race(rounds, clients_n):
    """Clients spread over every node race, each round, to create one
    fresh key with If-None-Match: * and then to replace it with If-Match:
    the ETag each read. Exactly one create and exactly one swap succeed,
    the others get 412 (or 503: try again), and every node serves the
    swap winner's value.

    With $HANGAR_FAULTS set (a nemesis kills or cuts off a node meanwhile),
    timeouts and refused connections are allowed, so a round may have no
    writer told 200; never two. The value read afterwards is the one told
    200, or one whose outcome was unknown, never one told 412. Each round
    done is appended to $HANGAR_PROGRESS, if set, for the nemesis to pace
    itself by."""
    faults = bool(os.environ.get("HANGAR_FAULTS"))
    progress = os.environ.get("HANGAR_PROGRESS")
    endpoints = os.environ["HANGAR_S3_ENDPOINTS"].split(",")
    cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                 signature_version="s3v4", connect_timeout=2, read_timeout=8)
    clients = [boto3.client(
        "s3", endpoint_url=endpoints[i % len(endpoints)], region_name="us-east-1",
        aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        config=cfg) for i in range(clients_n)]
    readers = clients[:len(endpoints)]
    counts = {"ServiceUnavailable": 0, "unknown": 0}
    told = {}  # body -> what its writer was told, over the whole run

    def outcome(fn):
        try:
            fn()
            return "ok"
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"]
        except Exception:  # a timeout or a refused connection
            return "unknown"

    def racing(fn):
        results = race(clients_n, fn, outcome)
        for c in results:
            if c in counts:
                counts[c] += 1
        return results

    def read(key):
        """(body, etag) through the first node that answers; None: absent."""
        import time
        deadline = time.monotonic() + 30
        while True:
            for c in readers:
                try:
                    o = c.get_object(Bucket=BUCKET, Key=key)
                    return o["Body"].read(), o["ETag"]
                except botocore.exceptions.ClientError as e:
                    if e.response["Error"]["Code"] == "NoSuchKey":
                        return None
                except Exception:
                    pass
            check(time.monotonic() < deadline, f"{key}: no node answers for 30 s")
            time.sleep(0.2)

    def settle(r, what, results, bodies, before):
        """Check one race; returns the value now held (None: absent)."""
        winners = [i for i, c in enumerate(results) if c == "ok"]
        allowed = {"ok", "PreconditionFailed", "ServiceUnavailable"} | ({"unknown"} if faults else set())
        check(set(results) <= allowed, f"round {r}, {what}: {results}")
        if faults:
            check(len(winners) <= 1, f"round {r}, {what}: {len(winners)} writers told 200: {results}")
        else:
            check(len(winners) == 1, f"round {r}, {what}: {len(winners)} writers told 200: {results}")
        for i, c in enumerate(results):
            if c != "skipped":
                told[bodies[i]] = c
        held = read(key_of(r))
        if winners:
            want = bodies[winners[0]]
            check(held is not None and held[0] == want,
                  f"round {r}, {what}: {held and held[0]!r} is held, client {winners[0]} was told 200 for {want!r}")
        elif held is not None and held[0] != before:
            check(told.get(held[0]) in ("ServiceUnavailable", "unknown"),
                  f"round {r}, {what}: {held[0]!r} is held, its writer was told {told.get(held[0])}")
        return held

    def key_of(r):
        return f"cond/lock-{r}"

    for r in range(rounds):
        key = key_of(r)
        created_bodies = [f"created by client {i} in round {r}".encode() for i in range(clients_n)]
        created = racing(lambda i: clients[i].put_object(
            Bucket=BUCKET, Key=key, Body=created_bodies[i], IfNoneMatch="*"))
        held = settle(r, "create", created, created_bodies, None)
        if held is not None:
            etags = [None] * clients_n
            for i in range(clients_n):
                try:
                    etags[i] = clients[i].head_object(Bucket=BUCKET, Key=key)["ETag"]
                except Exception:
                    check(faults, f"round {r}: client {i} cannot read the created object")
            swapped_bodies = [f"swapped by client {i} in round {r}".encode() for i in range(clients_n)]
            swapped = racing(lambda i: clients[i].put_object(
                Bucket=BUCKET, Key=key, Body=swapped_bodies[i],
                IfMatch=etags[i] or "\"unread\""))
            held = settle(r, "swap", swapped, swapped_bodies, held[0])
            if not faults:
                for i, c in enumerate(readers):
                    got = c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
                    check(got == held[0], f"round {r}: node {i} serves {got!r}, not {held[0]!r}")
        if progress:
            with open(progress, "a") as f:
                f.write(f"{r}\n")
    # No value told 412 may ever be read: check every key once more.
    for r in range(rounds):
        held = read(key_of(r))
        if held is not None:
            check(told.get(held[0]) in ("ok", "ServiceUnavailable", "unknown"),
                  f"{key_of(r)} holds {held[0]!r}, whose writer was told {told.get(held[0])}")
    print(f"ok {rounds} rounds of {clients_n} racing conditional writers: at most one create and one "
          f"swap each, {'none missing' if not faults else 'some may time out'} "
          f"({counts['ServiceUnavailable']} told to retry, {counts['unknown']} timed out or refused)")


def conditional_copy_complete(rounds, clients_n):
    """CopyObject and CompleteMultipartUpload with If-None-Match: * (and
    then If-Match) race like PUTs: exactly one writer per round wins, the
    destination holds the winner's data, and a refused upload stays open
    (its parts can be listed, then it is aborted)."""
    endpoints, clients = endpoint_clients(clients_n)

    def one_winner(r, what, results):
        winners = [i for i, c in enumerate(results) if c == "ok"]
        check(len(winners) == 1, f"round {r}, {what}: {len(winners)} told 200: {results}")
        check(set(results) - {"ok"} <= {"PreconditionFailed", "ServiceUnavailable"},
              f"round {r}, {what}: {results}")
        return winners[0]

    def held(key):
        return clients[0].get_object(Bucket=BUCKET, Key=key)["Body"].read()

    # Sources of the creating copies and of the swapping ones differ: an
    # If-Match compares ETags, and a copy of the same data again would have
    # the one it names.
    sources = [f"cond-copy/src-{i}" for i in range(clients_n)]
    swaps = [f"cond-copy/swap-{i}" for i in range(clients_n)]
    for i in range(clients_n):
        clients[0].put_object(Bucket=BUCKET, Key=sources[i], Body=f"source {i}".encode())
        clients[0].put_object(Bucket=BUCKET, Key=swaps[i], Body=f"swap {i}".encode())
    for r in range(rounds):
        # CopyObject: create only if absent, then replace that version.
        dest = f"cond-copy/dest-{r}"
        w = one_winner(r, "copy If-None-Match", race(clients_n, lambda i: clients[i].copy_object(
            Bucket=BUCKET, Key=dest, CopySource={"Bucket": BUCKET, "Key": sources[i]},
            IfNoneMatch="*")))
        check(held(dest) == f"source {w}".encode(), f"round {r}: copy winner {w}, held {held(dest)!r}")
        etag = clients[0].head_object(Bucket=BUCKET, Key=dest)["ETag"]
        w = one_winner(r, "copy If-Match", race(clients_n, lambda i: clients[i].copy_object(
            Bucket=BUCKET, Key=dest, CopySource={"Bucket": BUCKET, "Key": swaps[i]},
            IfMatch=etag, MetadataDirective="REPLACE", Metadata={"by": str(i)})))
        got = clients[0].get_object(Bucket=BUCKET, Key=dest)
        check((got["Body"].read(), got["Metadata"].get("by")) == (f"swap {w}".encode(), str(w)),
              f"round {r}: swap winner {w}, held {got['Metadata']}")

        # CompleteMultipartUpload: each client has its own upload of the key.
        key = f"cond-mpu/obj-{r}"
        uploads = []
        for i, c in enumerate(clients):
            u = c.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            p = c.upload_part(Bucket=BUCKET, Key=key, UploadId=u, PartNumber=1,
                              Body=f"upload {i}".encode())
            uploads.append((u, p["ETag"]))

        def complete(i, **cond):
            u, e = uploads[i]
            clients[i].complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=u,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]}, **cond)

        w = one_winner(r, "complete If-None-Match", race(clients_n, lambda i: complete(i, IfNoneMatch="*")))
        check(held(key) == f"upload {w}".encode(), f"round {r}: upload winner {w}, held {held(key)!r}")
        etag = clients[0].head_object(Bucket=BUCKET, Key=key)["ETag"]
        losers = [i for i in range(clients_n) if i != w]
        results = [error_code(lambda: complete(i, IfMatch=etag)) or "ok" for i in losers[:1]]
        check(results == ["ok"], f"round {r}: a refused upload completed later with If-Match: {results}")
        for i in losers[1:]:
            u, _ = uploads[i]
            parts = clients[i].list_parts(Bucket=BUCKET, Key=key, UploadId=u)["Parts"]
            check(len(parts) == 1, f"round {r}: refused upload {i} lost its part")
            clients[i].abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=u)
        check(held(key) == f"upload {losers[0]}".encode(), f"round {r}: held {held(key)!r}")
    print(f"ok {rounds} rounds of {clients_n} racing conditional copies and multipart completions: one winner each")


if __name__ == "__main__":
    scenario = sys.argv[1]
    args = sys.argv[2:]
    {
        "sizes": put_get_sizes,
        "ranges": ranges,
        "listing": listing,
        "auth": auth_and_permissions,
        "buckets": buckets,
        "copy_delete": copy_and_batch_delete,
        "write": lambda: write_many(args[0], int(args[1])),
        "read": lambda: read_many(args[0], int(args[1])),
        "slowget": lambda: slow_get(args[0], int(args[1])),
        "interrupted": lambda: interrupted(args[0]),
        "presigned": lambda: presigned_get(args[0]),
        "sequential_order": lambda: sequential_order(int(args[0])),
        "bucket_recreate": lambda: bucket_recreate(int(args[0])),
        "bucket_race": lambda: bucket_race(int(args[0]), int(args[1])),
        "conditional_race": lambda: conditional_race(int(args[0]), int(args[1])),
        "conditional_copy_complete": lambda: conditional_copy_complete(int(args[0]), int(args[1])),
    }[scenario]()
