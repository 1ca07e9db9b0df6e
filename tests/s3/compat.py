#!/usr/bin/env python3
"""S3 compatibility scenarios (issue #5) with boto3, run by
tests/tests/e2e/compat.rs against real agents. Same conventions as
client.py: SCENARIO [ARGS], settings from the environment, non-zero exit
with a message on the first failed check.
"""
import base64
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

import boto3
import botocore
import botocore.auth
from botocore.config import Config

from client import BUCKET, ENDPOINT, check, client, data_for, error_code

MIB = 1 << 20


def block_hash(data):
    """The name of the block file holding `data` (a whole block)."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def multipart():
    s3 = client()
    key = "mpu/object"
    # Parts of different sizes; the last one small.
    sizes = [5 * MIB, 7 * MIB + 3, 1234]
    parts_data = [data_for(f"{key}-{i}", n) for i, n in enumerate(sizes)]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ContentType="video/x-test",
                                    Metadata={"kind": "mpu"})
    uid = up["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="mpu/")
    check([u["UploadId"] for u in listed.get("Uploads", [])] == [uid],
          f"ListMultipartUploads shows the upload: {listed.get('Uploads')}")
    etags = []
    # Upload out of order: part numbers, not arrival, decide the layout.
    for i in [2, 0, 1]:
        r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=i + 1, Body=parts_data[i])
        check(r["ETag"] == '"%s"' % hashlib.md5(parts_data[i]).hexdigest(), f"part {i + 1} ETag")
    for i in range(3):
        etags.append('"%s"' % hashlib.md5(parts_data[i]).hexdigest())
    # Replace part 2 with new content: the newest upload counts.
    parts_data[1] = data_for(f"{key}-1-again", sizes[1])
    r = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=uid, PartNumber=2, Body=parts_data[1])
    etags[1] = r["ETag"]
    lp = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid)
    check([(p["PartNumber"], p["ETag"], p["Size"]) for p in lp["Parts"]]
          == [(i + 1, etags[i], sizes[i]) for i in range(3)], f"ListParts: {lp['Parts']}")
    lp1 = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, MaxParts=2)
    check(lp1["IsTruncated"] and len(lp1["Parts"]) == 2, "ListParts pages")
    lp2 = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid, PartNumberMarker=lp1["NextPartNumberMarker"])
    check([p["PartNumber"] for p in lp2["Parts"]] == [3], "ListParts second page")

    def complete(parts):
        return lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]})

    # Error cases leave the upload in place.
    code = error_code(complete([(2, etags[1]), (1, etags[0]), (3, etags[2])]))
    check(code == "InvalidPartOrder", f"bad part order: {code}")
    code = error_code(complete([(1, etags[0]), (2, '"%s"' % ("0" * 32)), (3, etags[2])]))
    check(code == "InvalidPart", f"wrong ETag in Complete: {code}")
    old = '"%s"' % hashlib.md5(data_for(f"{key}-1", sizes[1])).hexdigest()
    code = error_code(complete([(1, etags[0]), (2, old), (3, etags[2])]))
    check(code == "InvalidPart", f"a replaced part's ETag is refused: {code}")
    code = error_code(complete([(1, etags[0]), (3, etags[2]), (4, etags[2])]))
    check(code == "InvalidPart", f"a part never uploaded: {code}")
    code = error_code(lambda: s3.head_object(Bucket=BUCKET, Key=key))
    check(code == "404", "no object before Complete")

    done = complete([(n + 1, etags[n]) for n in range(3)])()
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    expected = '"%s-3"' % hashlib.md5(md5s).hexdigest()
    check(done["ETag"] == expected, f"multipart ETag {done['ETag']} != {expected}")
    got = s3.get_object(Bucket=BUCKET, Key=key)
    body = got["Body"].read()
    check(body == b"".join(parts_data), f"completed object content ({len(body)} B)")
    check(got["ETag"] == expected, "GET ETag of a multipart object")
    check(got["ContentType"] == "video/x-test", "Content-Type from Create")
    check(got["Metadata"].get("kind") == "mpu", "metadata from Create")
    rng = s3.get_object(Bucket=BUCKET, Key=key, Range=f"bytes={5 * MIB - 10}-{5 * MIB + 9}")["Body"].read()
    check(rng == b"".join(parts_data)[5 * MIB - 10:5 * MIB + 10], "a range across parts")
    code = error_code(lambda: s3.list_parts(Bucket=BUCKET, Key=key, UploadId=uid))
    check(code == "NoSuchUpload", f"a completed upload is gone: {code}")
    listed = s3.list_multipart_uploads(Bucket=BUCKET, Prefix="mpu/")
    check(not listed.get("Uploads"), "no upload listed after Complete")

    # Too-small parts.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mpu/small")
    e1 = s3.upload_part(Bucket=BUCKET, Key="mpu/small", UploadId=up["UploadId"], PartNumber=1, Body=b"a" * 100)["ETag"]
    e2 = s3.upload_part(Bucket=BUCKET, Key="mpu/small", UploadId=up["UploadId"], PartNumber=2, Body=b"b" * 100)["ETag"]
    code = error_code(lambda: s3.complete_multipart_upload(
        Bucket=BUCKET, Key="mpu/small", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}))
    check(code == "EntityTooSmall", f"small part: {code}")
    # Abort.
    s3.abort_multipart_upload(Bucket=BUCKET, Key="mpu/small", UploadId=up["UploadId"])
    code = error_code(lambda: s3.upload_part(Bucket=BUCKET, Key="mpu/small", UploadId=up["UploadId"],
                                             PartNumber=3, Body=b"c"))
    check(code == "NoSuchUpload", f"upload to an aborted upload: {code}")
    code = error_code(lambda: s3.abort_multipart_upload(Bucket=BUCKET, Key="mpu/small", UploadId="00" * 16))
    check(code == "NoSuchUpload", f"abort of an unknown upload: {code}")
    code = error_code(lambda: s3.upload_part(Bucket=BUCKET, Key="mpu/x", UploadId="zz", PartNumber=1, Body=b"c"))
    check(code == "NoSuchUpload", f"malformed upload id: {code}")

    # UploadPartCopy: a whole object, then a range of one.
    src = data_for("mpu/src", 6 * MIB + 77)
    s3.put_object(Bucket=BUCKET, Key="mpu/src", Body=src)
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mpu/copied")
    u = up["UploadId"]
    c1 = s3.upload_part_copy(Bucket=BUCKET, Key="mpu/copied", UploadId=u, PartNumber=1,
                             CopySource={"Bucket": BUCKET, "Key": "mpu/src"})
    check(c1["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(src).hexdigest(), "copied part ETag")
    c2 = s3.upload_part_copy(Bucket=BUCKET, Key="mpu/copied", UploadId=u, PartNumber=2,
                             CopySource={"Bucket": BUCKET, "Key": "mpu/src"}, CopySourceRange="bytes=100-2000099")
    check(c2["CopyPartResult"]["ETag"] == '"%s"' % hashlib.md5(src[100:2000100]).hexdigest(), "range part ETag")
    code = error_code(lambda: s3.upload_part_copy(Bucket=BUCKET, Key="mpu/copied", UploadId=u, PartNumber=3,
                                                  CopySource={"Bucket": BUCKET, "Key": "mpu/src"},
                                                  CopySourceRange=f"bytes=0-{len(src)}"))
    check(code == "InvalidRange", f"copy range past the end (S3: InvalidRange): {code}")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="mpu/copied", UploadId=u, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": c1["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": c2["CopyPartResult"]["ETag"]}]})
    body = s3.get_object(Bucket=BUCKET, Key="mpu/copied")["Body"].read()
    check(body == src + src[100:2000100], "UploadPartCopy content")
    # For the test to check on disk: blocks only ended uploads referenced
    # must go, the objects' blocks stay.
    print("gone", block_hash(b"a" * 100))
    print("gone", block_hash(b"b" * 100))
    print("gone", block_hash(data_for(f"{key}-1", sizes[1])[:MIB]))
    print("kept", block_hash(parts_data[1][:MIB]))
    print("kept", block_hash(src[:MIB]))
    print("ok multipart")


def status_of(fn):
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def conditional():
    """If-* on GET, HEAD, PUT and copy; response header overrides; stored
    standard headers."""
    s3 = client()
    r = s3.put_object(Bucket=BUCKET, Key="cond/a", Body=b"version one", CacheControl="max-age=60",
                      ContentDisposition="attachment", ContentLanguage="fr")
    etag = r["ETag"]
    head = s3.head_object(Bucket=BUCKET, Key="cond/a")
    check(head["CacheControl"] == "max-age=60" and head["ContentDisposition"] == "attachment"
          and head["ContentLanguage"] == "fr", f"standard headers kept: {head}")
    lm = head["LastModified"]
    before = lm - datetime.timedelta(hours=1)
    after = lm + datetime.timedelta(hours=1)
    for op in ("get_object", "head_object"):
        f = getattr(s3, op)
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfMatch=etag)) == 200, f"{op} If-Match")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfMatch='"nope"')) == 412, f"{op} If-Match other")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfNoneMatch=etag)) == 304, f"{op} If-None-Match")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfNoneMatch='"nope"')) == 200, f"{op} INM other")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfModifiedSince=before)) == 200, f"{op} IMS before")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfModifiedSince=after)) == 304, f"{op} IMS after")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfUnmodifiedSince=before)) == 412, f"{op} IUS")
        check(status_of(lambda: f(Bucket=BUCKET, Key="cond/a", IfUnmodifiedSince=after)) == 200, f"{op} IUS ok")
    # PUT: create-only and compare-and-swap.
    code = status_of(lambda: s3.put_object(Bucket=BUCKET, Key="cond/a", Body=b"x", IfNoneMatch="*"))
    check(code == 412, f"PUT If-None-Match: * on an existing object: {code}")
    check(s3.get_object(Bucket=BUCKET, Key="cond/a")["Body"].read() == b"version one", "not overwritten")
    s3.put_object(Bucket=BUCKET, Key="cond/new", Body=b"fresh", IfNoneMatch="*")
    code = status_of(lambda: s3.put_object(Bucket=BUCKET, Key="cond/a", Body=b"x", IfMatch='"nope"'))
    check(code == 412, f"PUT If-Match with a stale ETag: {code}")
    r2 = s3.put_object(Bucket=BUCKET, Key="cond/a", Body=b"version two", IfMatch=etag)
    check(s3.get_object(Bucket=BUCKET, Key="cond/a")["Body"].read() == b"version two", "CAS write")
    # If-Match on a key that is not there: S3's 404, for PUT and for
    # CompleteMultipartUpload; If-None-Match: * on one that is: 412.
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="cond/none", Body=b"x", IfMatch=etag))
    check(code == "NoSuchKey", f"PUT If-Match on a missing key: {code}")
    check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key="cond/none")) == 404, "nothing stored")
    for key, cond, want in [("cond/none", {"IfMatch": etag}, "NoSuchKey"),
                            ("cond/a", {"IfNoneMatch": "*"}, "PreconditionFailed")]:
        up = s3.create_multipart_upload(Bucket=BUCKET, Key=key)
        p = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"part")
        code = error_code(lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]}, **cond))
        check(code == want, f"CompleteMultipartUpload {cond} on {key}: {code}")
    # A completion retried (its answer lost) answers as the first did, as
    # S3 does; with other parts, or after an abort: NoSuchUpload.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="cond/twice")
    p = s3.upload_part(Bucket=BUCKET, Key="cond/twice", UploadId=up["UploadId"], PartNumber=1, Body=b"once")
    done = {"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]}
    first = s3.complete_multipart_upload(Bucket=BUCKET, Key="cond/twice", UploadId=up["UploadId"], MultipartUpload=done)
    again = s3.complete_multipart_upload(Bucket=BUCKET, Key="cond/twice", UploadId=up["UploadId"],
                                         MultipartUpload=done, IfNoneMatch="*")
    check(again["ETag"] == first["ETag"], f"a retried CompleteMultipartUpload: {again['ETag']} vs {first['ETag']}")
    check(s3.get_object(Bucket=BUCKET, Key="cond/twice")["Body"].read() == b"once", "the object once")
    other = {"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]}
    code = error_code(lambda: s3.complete_multipart_upload(
        Bucket=BUCKET, Key="cond/twice", UploadId=up["UploadId"], MultipartUpload=other))
    check(code == "NoSuchUpload", f"a completed upload with other parts: {code}")
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="cond/aborted")
    p = s3.upload_part(Bucket=BUCKET, Key="cond/aborted", UploadId=up["UploadId"], PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=BUCKET, Key="cond/aborted", UploadId=up["UploadId"])
    code = error_code(lambda: s3.complete_multipart_upload(
        Bucket=BUCKET, Key="cond/aborted", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]}))
    check(code == "NoSuchUpload", f"an aborted upload: {code}")
    # Copy with source conditions.
    src = {"Bucket": BUCKET, "Key": "cond/a"}
    s3.copy_object(Bucket=BUCKET, Key="cond/b", CopySource=src, CopySourceIfMatch=r2["ETag"])
    code = status_of(lambda: s3.copy_object(Bucket=BUCKET, Key="cond/c", CopySource=src, CopySourceIfMatch=etag))
    check(code == 412, f"copy with a stale source ETag: {code}")
    code = status_of(lambda: s3.copy_object(Bucket=BUCKET, Key="cond/c", CopySource=src,
                                            CopySourceIfNoneMatch=r2["ETag"]))
    check(code == 412, f"copy If-None-Match on the source: {code}")
    code = status_of(lambda: s3.copy_object(Bucket=BUCKET, Key="cond/c", CopySource=src,
                                            CopySourceIfUnmodifiedSince=before))
    check(code == 412, f"copy If-Unmodified-Since: {code}")
    check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key="cond/c")) == 404, "no failed copy stored")
    # Response header overrides.
    got = s3.get_object(Bucket=BUCKET, Key="cond/a", ResponseContentType="text/x-override",
                        ResponseContentDisposition='inline; filename="x.txt"', ResponseCacheControl="no-store")
    check(got["ContentType"] == "text/x-override", f"response-content-type: {got['ContentType']}")
    check(got["ContentDisposition"] == 'inline; filename="x.txt"', "response-content-disposition")
    check(got["CacheControl"] == "no-store", "response-cache-control")
    print("ok conditional")


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


def checksums():
    """Content-MD5 and x-amz-checksum-* are verified: a wrong one stores
    nothing."""
    s3 = client()
    data = data_for("sums", 70_000)
    b64 = lambda b: base64.b64encode(b).decode()
    good = {
        "ChecksumCRC32": b64(zlib.crc32(data).to_bytes(4, "big")),
        "ChecksumCRC32C": b64(crc32c(data)),
        "ChecksumSHA1": b64(hashlib.sha1(data).digest()),
        "ChecksumSHA256": b64(hashlib.sha256(data).digest()),
    }
    for name, value in good.items():
        s3.put_object(Bucket=BUCKET, Key=f"sums/{name}", Body=data, **{name: value})
        check(s3.get_object(Bucket=BUCKET, Key=f"sums/{name}")["Body"].read() == data, f"{name} accepted")
        wrong = b64(b"\0" * len(base64.b64decode(value)))
        code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key=f"sums/bad-{name}", Body=data, **{name: wrong}))
        check(code == "BadDigest", f"a wrong {name} is refused: {code}")
        check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key=f"sums/bad-{name}")) == 404, "nothing stored")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="sums/md5", Body=data,
                                            ContentMD5=b64(hashlib.md5(b"other").digest())))
    check(code == "BadDigest", f"a wrong Content-MD5 is refused: {code}")
    s3.put_object(Bucket=BUCKET, Key="sums/md5", Body=data, ContentMD5=b64(hashlib.md5(data).digest()))
    for malformed in ["not base64!", b64(b"short")]:
        code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="sums/bad-md5", Body=data, ContentMD5=malformed))
        check(code == "InvalidDigest", f"a malformed Content-MD5 ({malformed!r}) is InvalidDigest: {code}")
    check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key="sums/bad-md5")) == 404, "nothing stored")
    print("ok checksums")


def regions_and_unsupported():
    """A client signing for another region is served; unsupported
    operations answer NotImplemented in XML."""
    for region in ("eu-west-3", "garage", "us-west-2"):
        s3 = client(region=region)
        s3.put_object(Bucket=BUCKET, Key=f"region/{region}", Body=region.encode())
        check(s3.get_object(Bucket=BUCKET, Key=f"region/{region}")["Body"].read() == region.encode(),
              f"served when signed for {region}")
    s3 = client()
    for name, fn in [
        ("GetBucketNotification", lambda: s3.get_bucket_notification_configuration(Bucket=BUCKET)),
        ("GetBucketLogging", lambda: s3.get_bucket_logging(Bucket=BUCKET)),
        ("GetBucketReplication", lambda: s3.get_bucket_replication(Bucket=BUCKET)),
    ]:
        try:
            fn()
            check(False, f"{name} should not succeed")
        except botocore.exceptions.ClientError as e:
            code = e.response["Error"]["Code"]
            st = e.response["ResponseMetadata"]["HTTPStatusCode"]
            check(code == "NotImplemented" and st == 501, f"{name}: {code} {st}")
    print("ok regions and unsupported operations")


def http(method, path, host, port, headers=None):
    """One plain HTTP request; returns (status, headers, body)."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    h = {"Host": host}
    h.update(headers or {})
    conn.request(method, path, headers=h)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


# A 1x1 PNG.
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def website():
    """A small site uploaded with boto3, served by the website endpoint."""
    s3 = client()
    port = int(os.environ["HANGAR_WEB_PORT"])
    site = {
        "index.html": (b"<h1>Home</h1>", "text/html"),
        "about/index.html": (b"<h1>About</h1>", "text/html"),
        "style.css": (b"h1 { color: red }", "text/css"),
        "img/logo.png": (PNG, "image/png"),
        "404.html": (b"<h1>Lost?</h1>", "text/html"),
        "new/page.html": (b"moved here", "text/html"),
    }
    for key, (body, ctype) in site.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, ContentType=ctype)
    host = BUCKET  # the whole Host name is the bucket name
    st, _, _ = http("GET", "/", host, port)
    check(st == 404, f"no website before configuration: {st}")
    s3.put_bucket_website(Bucket=BUCKET, WebsiteConfiguration={
        "IndexDocument": {"Suffix": "index.html"},
        "ErrorDocument": {"Key": "404.html"},
        "RoutingRules": [{"Condition": {"KeyPrefixEquals": "old/"},
                          "Redirect": {"ReplaceKeyPrefixWith": "new/", "HttpRedirectCode": "301"}}],
    })
    got = s3.get_bucket_website(Bucket=BUCKET)
    check(got["IndexDocument"]["Suffix"] == "index.html" and got["ErrorDocument"]["Key"] == "404.html",
          f"GetBucketWebsite: {got}")
    # The bucket under the website's root domain names it too.
    st, _, body = http("GET", "/", f"{BUCKET}.web.hangar.test:{port}", port)
    check(st == 200 and body == site["index.html"][0], f"bucket under root_domain: {st}")
    for path, key in [("/", "index.html"), ("/about/", "about/index.html"), ("/style.css", "style.css"),
                      ("/img/logo.png", "img/logo.png")]:
        st, h, body = http("GET", path, host, port)
        check(st == 200, f"GET {path}: {st}")
        check(body == site[key][0], f"content of {path}")
        check(h["content-type"] == site[key][1], f"content type of {path}: {h['content-type']}")
    st, h, _ = http("GET", "/about", host, port)
    check(st == 302 and h.get("location") == "/about/", f"a folder without its slash: {st} {h.get('location')}")
    st, h, body = http("GET", "/missing.html", host, port)
    check(st == 404 and body == site["404.html"][0] and h["content-type"] == "text/html",
          f"error document: {st} {body}")
    st, h, _ = http("GET", "/old/page.html", host, port)
    check(st == 301 and h.get("location") == "/new/page.html", f"routing rule: {st} {h.get('location')}")
    st, h, body = http("GET", "/style.css", host, port, {"Range": "bytes=0-1"})
    check(st == 206 and body == b"h1" and h["content-range"] == "bytes 0-1/17", f"range: {st} {body}")
    etag = http("HEAD", "/style.css", host, port)[1]["etag"]
    st, _, body = http("GET", "/style.css", host, port, {"If-None-Match": etag})
    check(st == 304 and body == b"", f"conditional GET: {st}")
    st, _, _ = http("PUT", "/style.css", host, port)
    check(st == 405, f"writes are refused: {st}")
    st, _, _ = http("GET", "/", "no-such-bucket", port)
    check(st == 404, f"unknown host: {st}")

    # CORS, on the website and on the S3 API.
    s3.put_bucket_cors(Bucket=BUCKET, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": ["https://app.example.org"], "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
    rules = s3.get_bucket_cors(Bucket=BUCKET)["CORSRules"]
    check(rules[0]["AllowedOrigins"] == ["https://app.example.org"], f"GetBucketCors: {rules}")
    pre = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "PUT",
           "Access-Control-Request-Headers": "content-type, x-amz-date"}
    st, h, _ = http("OPTIONS", "/style.css", host, port, pre)
    check(st == 200 and h.get("access-control-allow-origin") == "https://app.example.org"
          and h.get("access-control-max-age") == "600", f"website preflight: {st} {h}")
    st, h, _ = http("GET", "/style.css", host, port, {"Origin": "https://app.example.org"})
    check(h.get("access-control-allow-origin") == "https://app.example.org"
          and h.get("access-control-expose-headers") == "ETag", f"website CORS headers: {h}")
    api_port = int(ENDPOINT.rsplit(":", 1)[1])
    st, h, _ = http("OPTIONS", f"/{BUCKET}/style.css", "127.0.0.1", api_port, pre)
    check(st == 200 and "PUT" in h.get("access-control-allow-methods", ""), f"S3 API preflight: {st} {h}")
    st, _, _ = http("OPTIONS", f"/{BUCKET}/style.css", "127.0.0.1", api_port,
                    dict(pre, Origin="https://evil.example.com"))
    check(st == 403, f"preflight from another origin: {st}")
    s3.delete_bucket_cors(Bucket=BUCKET)
    check(error_code(lambda: s3.get_bucket_cors(Bucket=BUCKET)) == "NoSuchCORSConfiguration", "CORS deleted")
    st, _, _ = http("OPTIONS", "/style.css", host, port, pre)
    check(st == 403, f"no CORS rules, no preflight: {st}")

    s3.delete_bucket_website(Bucket=BUCKET)
    st, _, _ = http("GET", "/", host, port)
    check(st == 404, f"website deleted: {st}")
    print("ok website")


def wait_until(what, cond, deadline=60):
    """Poll `cond` until true, failing after `deadline` seconds."""
    import time
    end = time.monotonic() + deadline
    while not cond():
        check(time.monotonic() < end, f"timed out waiting for {what}")
        time.sleep(0.2)


def lifecycle():
    """Lifecycle rules, applied by the agent's worker (configured by the
    test with a 2-second "day" and a pass every second)."""
    s3 = client()
    for key in ["logs/a", "logs/b", "archive/a", "tmp/d", "keep/e"]:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    stale = s3.create_multipart_upload(Bucket=BUCKET, Key="uploads/stale")["UploadId"]
    rules = [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "archive", "Filter": {"Prefix": "archive/"}, "Status": "Enabled", "Expiration": {"Days": 1000}},
        {"ID": "tmp", "Filter": {"Prefix": "tmp/"}, "Status": "Enabled",
         "Expiration": {"Date": datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)}},
        {"ID": "keep", "Filter": {"Prefix": "keep/"}, "Status": "Disabled", "Expiration": {"Days": 1}},
        {"ID": "mpu", "Filter": {"Prefix": "uploads/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    check([r["ID"] for r in got] == [r["ID"] for r in rules], f"GetBucketLifecycleConfiguration: {got}")
    check(got[1]["Expiration"]["Days"] == 1000 and got[3]["Status"] == "Disabled", f"rules kept: {got}")

    def keys():
        return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}

    wait_until("expired objects to go", lambda: not keys() & {"logs/a", "logs/b", "tmp/d"})
    check({"archive/a", "keep/e"} <= keys(), f"young and disabled-rule objects stay: {keys()}")
    wait_until("the stale upload to be aborted",
               lambda: not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads"))
    code = error_code(lambda: s3.list_parts(Bucket=BUCKET, Key="uploads/stale", UploadId=stale))
    check(code == "NoSuchUpload", f"aborted by the lifecycle worker: {code}")
    s3.delete_bucket_lifecycle(Bucket=BUCKET)
    code = error_code(lambda: s3.get_bucket_lifecycle_configuration(Bucket=BUCKET))
    check(code == "NoSuchLifecycleConfiguration", f"lifecycle deleted: {code}")
    print("ok lifecycle")


def put_expect(key, size, expect):
    """PUT `size` bytes at `key`: `expect` is ok or the error code."""
    s3 = client()
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=data_for(key, int(size))))
    check((code or "ok") == expect, f"PUT {key} ({size} B): {code or 'ok'}, expected {expect}")
    print(f"ok put {key}: {expect}")


def put_many(prefix, count, size):
    """PUT `count` objects of `size` bytes under `prefix`: every one must
    succeed."""
    s3 = client()
    for i in range(int(count)):
        key = f"{prefix}{i:04}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=data_for(key, int(size)))
    print(f"ok put {count} objects of {size} B under {prefix}")


def get_many(prefix, count, size):
    """Every object `put_many` wrote reads back intact."""
    s3 = client()
    for i in range(int(count)):
        key = f"{prefix}{i:04}"
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        check(body == data_for(key, int(size)), f"{key} reads back intact")
    print(f"ok read {count} objects under {prefix}")


def burst(prefix, count, size, clients):
    """`clients` threads PUT `count` objects of `size` bytes at once, then
    GET them back at once: every body must come back intact."""
    import concurrent.futures

    count, size, clients = int(count), int(size), int(clients)
    s3 = boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        region_name="us-east-1",
        config=Config(
            retries={"max_attempts": 1},
            s3={"addressing_style": "path"},
            max_pool_connections=clients,
        ),
    )
    digests = {}

    def put(i):
        body = os.urandom(size)
        key = f"{prefix}{i:04}"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        digests[key] = hashlib.sha256(body).digest()

    def get(key):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        check(hashlib.sha256(body).digest() == digests[key], f"{key} reads back intact")

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(put, range(count)))
        list(pool.map(get, sorted(digests)))
    print(f"ok {clients} clients put and read back {count} objects of {size} B")


def delete(key):
    client().delete_object(Bucket=BUCKET, Key=key)
    print(f"ok deleted {key}")


# ---- authentication edge cases

def hmac256(key, msg):
    import hmac
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4(method, path, headers, payload_hash, amz_date, region="us-east-1"):
    """A SigV4 header signature, written out for the tests that need to
    control what the SDKs do not let us (chunk signatures)."""
    from urllib.parse import quote
    names = sorted(headers)
    canonical = "\n".join([
        method, quote(path, safe="/~"), "",
        "".join(f"{n}:{headers[n].strip()}\n" for n in names),
        ";".join(names), payload_hash])
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, sha(canonical.encode())])
    k = hmac256(("AWS4" + os.environ["HANGAR_KEY_SECRET"]).encode(), amz_date[:8])
    for part in (region, "s3", "aws4_request"):
        k = hmac256(k, part)
    sig = hmac256(k, sts).hex()
    auth = (f"AWS4-HMAC-SHA256 Credential={os.environ['HANGAR_KEY_ID']}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return auth, sig, scope, k


def signed_chunks_put(key, data, chunk, tamper_chunk=None):
    """PUT with STREAMING-AWS4-HMAC-SHA256-PAYLOAD (each chunk signed);
    optionally flip a byte of one chunk after signing. Returns the status."""
    import hmac
    import http.client
    amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    host = ENDPOINT.split("://", 1)[1]
    chunks = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]

    def enc_len(n):
        return len(f"{n:x};chunk-signature=") + 64 + 2 + n + 2
    headers = {
        "host": host,
        "x-amz-date": amz_date,
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": str(len(data)),
        "content-encoding": "aws-chunked",
        "content-length": str(sum(enc_len(len(c)) for c in chunks)),
    }
    path = f"/{BUCKET}/{key}"
    auth, prev, scope, k = sigv4("PUT", path, headers, headers["x-amz-content-sha256"], amz_date)
    body = b""
    for i, c in enumerate(chunks):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, sha(b""), sha(c)])
        prev = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if i == tamper_chunk:
            c = bytes([c[0] ^ 1]) + c[1:]
        body += f"{len(c):x};chunk-signature={prev}\r\n".encode() + c + b"\r\n"
    conn = http.client.HTTPConnection(host, timeout=30)
    conn.request("PUT", path, body=body, headers=dict(headers, authorization=auth))
    r = conn.getresponse()
    text = r.read()
    conn.close()
    return r.status, text


class TlsProxy:
    """TLS in front of the agent (which speaks plain HTTP, like behind a
    reverse proxy): over HTTPS, SDKs send streaming trailer checksums."""

    def __init__(self, target_port):
        import socket
        import ssl
        import threading
        self.dir = tempfile.mkdtemp()
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", cert, "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

        def pipe(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            for s_ in (a, b):
                try:
                    s_.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        def accept():
            while True:
                try:
                    c, _ = self.sock.accept()
                    t = ctx.wrap_socket(c, server_side=True)
                except OSError:
                    continue
                u = socket.create_connection(("127.0.0.1", target_port))
                threading.Thread(target=pipe, args=(t, u), daemon=True).start()
                threading.Thread(target=pipe, args=(u, t), daemon=True).start()
        threading.Thread(target=accept, daemon=True).start()


def streaming_and_auth():
    """Streaming uploads (signed chunks, unsigned trailer via a real SDK),
    presigned expiry, clock skew, virtual-host-style addressing."""
    s3 = client()
    data = data_for("chunked", 200_000)
    st, text = signed_chunks_put("auth/chunked", data, 65536)
    check(st == 200, f"signed chunks accepted: {st} {text}")
    check(s3.get_object(Bucket=BUCKET, Key="auth/chunked")["Body"].read() == data, "signed chunks content")
    st, text = signed_chunks_put("auth/tampered", data, 65536, tamper_chunk=1)
    check(st == 403 and b"SignatureDoesNotMatch" in text, f"tampered chunk: {st} {text}")
    check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key="auth/tampered")) == 404, "nothing stored")

    # A real SDK over HTTPS sends STREAMING-UNSIGNED-PAYLOAD-TRAILER with a
    # trailing CRC checksum (and CRC64NVME or CRC32 depending on version).
    import urllib3
    urllib3.disable_warnings()
    proxy = TlsProxy(int(ENDPOINT.rsplit(":", 1)[1]))
    seen = []
    tls = boto3.client(
        "s3", endpoint_url=f"https://localhost:{proxy.port}", verify=False,
        aws_access_key_id=os.environ["HANGAR_KEY_ID"], aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    tls.meta.events.register("before-send.s3.PutObject",
                             lambda request, **kw: seen.append(dict(request.headers)))
    body = data_for("trailer", 3 * MIB + 5)
    tls.put_object(Bucket=BUCKET, Key="auth/trailer", Body=body, ChecksumAlgorithm="CRC32")
    sent = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in seen[-1].items()}
    check(sent.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
          and sent.get("x-amz-trailer") == "x-amz-checksum-crc32", f"the SDK streamed with a trailer: {sent}")
    check(tls.get_object(Bucket=BUCKET, Key="auth/trailer")["Body"].read() == body, "trailer upload content")
    # A wrong trailing checksum is refused and stores nothing.
    tls.meta.events.register("before-send.s3.PutObject", corrupt_trailer)
    code = error_code(lambda: tls.put_object(Bucket=BUCKET, Key="auth/bad-trailer", Body=body,
                                             ChecksumAlgorithm="CRC32"))
    check(code == "BadDigest", f"a wrong trailing checksum: {code}")
    check(status_of(lambda: s3.head_object(Bucket=BUCKET, Key="auth/bad-trailer")) == 404, "nothing stored")

    # Presigned URL expiry, and clock skew, with the SDK's clock moved.
    import urllib.error
    import urllib.request
    real = botocore.auth.get_current_datetime
    try:
        botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(hours=2)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "auth/chunked"},
                                        ExpiresIn=3600)
        try:
            urllib.request.urlopen(url)
            check(False, "an expired presigned URL was served")
        except urllib.error.HTTPError as e:
            body = e.read()
            check(e.code == 403 and b"AccessDenied" in body and b"expired" in body, f"expired URL: {e.code} {body}")
        botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(minutes=20)
        code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="auth/chunked"))
        check(code == "RequestTimeTooSkewed", f"20 minutes of skew: {code}")
        botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(minutes=10)
        check(s3.get_object(Bucket=BUCKET, Key="auth/chunked")["Body"].read() == data, "10 minutes are tolerated")
    finally:
        botocore.auth.get_current_datetime = real

    # Virtual-host style: <bucket>.<root_domain>, the agent configured with
    # root_domain = ".s3.hangar.test" (resolved to loopback here).
    import socket
    real_gai = socket.getaddrinfo

    def gai(host, *a, **kw):
        if isinstance(host, str) and host.endswith(".hangar.test"):
            host = "127.0.0.1"
        return real_gai(host, *a, **kw)
    socket.getaddrinfo = gai
    port = ENDPOINT.rsplit(":", 1)[1]
    vh = boto3.client(
        "s3", endpoint_url=f"http://s3.hangar.test:{port}",
        aws_access_key_id=os.environ["HANGAR_KEY_ID"], aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        region_name="us-east-1", config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
    vseen = []
    vh.meta.events.register("before-send.s3.*", lambda request, **kw: vseen.append(request.url))
    vh.put_object(Bucket=BUCKET, Key="auth/virtual host", Body=b"vh")
    check(vseen[-1].startswith(f"http://{BUCKET}.s3.hangar.test:{port}/"), f"virtual-host URL: {vseen[-1]}")
    check(vh.get_object(Bucket=BUCKET, Key="auth/virtual host")["Body"].read() == b"vh", "virtual-host GET")
    keys = [o["Key"] for o in vh.list_objects_v2(Bucket=BUCKET, Prefix="auth/")["Contents"]]
    check("auth/virtual host" in keys, f"virtual-host listing: {keys}")
    socket.getaddrinfo = real_gai
    print("ok streaming and auth")


def corrupt_trailer(request, **kw):
    """Make the SDK send a wrong trailing checksum."""
    body = request.body
    if hasattr(body, "_checksum"):
        import botocore.httpchecksum as hc
        class Wrong(hc.Crc32Checksum):
            def b64digest(self):
                return base64.b64encode(b"\0\0\0\0").decode()
        body._checksum = Wrong()


def listing_options():
    """ListObjectsV2 start-after, fetch-owner, encoding-type=url; v1
    marker; versioning and ACL answers that tools ask for."""
    s3 = client()
    keys = ["opts/a", "opts/b", "opts/c d&e%.txt", "opts/z"]
    for k in keys:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="opts/", StartAfter="opts/b")
    check([o["Key"] for o in r["Contents"]] == ["opts/c d&e%.txt", "opts/z"], f"start-after: {r['Contents']}")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="opts/", FetchOwner=True)
    check(all(o.get("Owner", {}).get("ID") for o in r["Contents"]), f"fetch-owner: {r['Contents'][0]}")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="opts/")
    check("Owner" not in r["Contents"][0], "no owner unless asked")
    # Asked explicitly, the encoding is left to the caller to undo.
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="opts/c", EncodingType="url")
    check([o["Key"] for o in r["Contents"]] == ["opts/c%20d%26e%25.txt"], f"encoding-type=url: {r['Contents']}")
    r = s3.list_objects(Bucket=BUCKET, Prefix="opts/", Marker="opts/a", MaxKeys=2)
    check([o["Key"] for o in r["Contents"]] == ["opts/b", "opts/c d&e%.txt"] and r["IsTruncated"],
          f"v1 marker and max-keys: {r}")
    v = s3.get_bucket_versioning(Bucket=BUCKET)
    check("Status" not in v, f"buckets are not versioned: {v}")
    acl = s3.get_bucket_acl(Bucket=BUCKET)
    check(acl["Grants"][0]["Permission"] == "FULL_CONTROL", f"bucket ACL: {acl}")
    acl = s3.get_object_acl(Bucket=BUCKET, Key="opts/a")
    check(acl["Grants"][0]["Permission"] == "FULL_CONTROL", f"object ACL: {acl}")
    # Ranges: single, suffix, open-ended, out of range.
    s3.put_object(Bucket=BUCKET, Key="opts/range", Body=b"0123456789")
    for spec, want in [("bytes=2-4", b"234"), ("bytes=-3", b"789"), ("bytes=7-", b"789")]:
        got = s3.get_object(Bucket=BUCKET, Key="opts/range", Range=spec)
        check(got["Body"].read() == want and got["ResponseMetadata"]["HTTPStatusCode"] == 206, f"range {spec}")
    check(status_of(lambda: s3.get_object(Bucket=BUCKET, Key="opts/range", Range="bytes=10-")) == 416, "416")
    print("ok listing options")


def hostile():
    """Odd and hostile input: refused with the right error, nothing stored,
    the agent unaffected."""
    import http.client
    s3 = client()
    # `..` is just characters in a key: stored and listed as given.
    s3.put_object(Bucket=BUCKET, Key="odd/a/../b", Body=b"dots")
    check(s3.get_object(Bucket=BUCKET, Key="odd/a/../b")["Body"].read() == b"dots", "key with ..")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="odd/")["Contents"]]
    check(keys == ["odd/a/../b"], f"listed as given: {keys}")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="odd/nul\x00byte", Body=b"x"))
    check(code == "InvalidArgument", f"a NUL in a key: {code}")
    long_ok = "odd/" + "x" * 1020
    s3.put_object(Bucket=BUCKET, Key=long_ok, Body=b"long")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key=long_ok + "y", Body=b"x"))
    check(code == "KeyTooLongError", f"a 1025-byte key: {code}")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="odd/")["Contents"]]
    check(sorted(keys) == sorted(["odd/a/../b", long_ok]), f"nothing else stored: {len(keys)} keys")
    # Oversized and too many headers: refused by the HTTP layer.
    host = ENDPOINT.split("://", 1)[1]
    for headers in ({"X-Big": "a" * (1 << 20)}, {f"X-H{i}": "v" for i in range(300)}):
        conn = http.client.HTTPConnection(host, timeout=10)
        try:
            conn.request("GET", f"/{BUCKET}/odd/a/../b", headers=headers)
            st = conn.getresponse().status
        except (ConnectionError, http.client.HTTPException, OSError):
            st = "closed"
        conn.close()
        check(st == "closed" or 400 <= st < 500, f"oversized request head: {st}")
    # A request that is not HTTP at all.
    import socket
    sock = socket.create_connection(tuple([host.split(":")[0], int(host.split(":")[1])]), timeout=10)
    sock.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    try:
        sock.recv(1024)
    except OSError:
        pass
    sock.close()
    # Still serving.
    check(s3.get_object(Bucket=BUCKET, Key="odd/a/../b")["Body"].read() == b"dots", "still serving")
    print("ok hostile input")


def fill_disk():
    """Fill the agent's (small) data disk: writes are refused with a clear
    error, what was stored stays readable, and deleting makes room again."""
    import time
    s3 = client()
    stored = []
    err = None
    for i in range(200):
        key = f"fill/{i:03}"
        try:
            s3.put_object(Bucket=BUCKET, Key=key, Body=data_for(key, 512 * 1024))
            stored.append(key)
        except botocore.exceptions.ClientError as e:
            err = e.response
            break
    check(err is not None, "the small disk never filled")
    check(err["Error"]["Code"] == "ServiceUnavailable", f"full disk: {err['Error']}")
    check("No space left" in err["Error"]["Message"], f"the error says why: {err['Error']['Message']}")
    check(len(stored) >= 3, f"some objects fit first: {len(stored)}")
    for key in stored:
        check(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == data_for(key, 512 * 1024),
              f"{key} still readable")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="fill/")["Contents"]]
    check(listed == stored, f"nothing half-written is listed: {len(listed)} vs {len(stored)}")
    for key in stored[: len(stored) // 2]:
        s3.delete_object(Bucket=BUCKET, Key=key)
    # Blocks of deleted objects go after the grace delay (1 s here).
    end = time.monotonic() + 60
    while True:
        try:
            s3.put_object(Bucket=BUCKET, Key="fill/after", Body=data_for("after", 512 * 1024))
            break
        except botocore.exceptions.ClientError:
            check(time.monotonic() < end, "writes never worked again after deleting")
            time.sleep(0.3)
    check(s3.get_object(Bucket=BUCKET, Key="fill/after")["Body"].read() == data_for("after", 512 * 1024),
          "written after room was made")
    # A body bigger than the disk: its first blocks fit, a later one does
    # not. The upload is refused as a whole, saying why (not a hang nor a
    # reset connection), leaves nothing listed and harms nothing stored
    # (its blocks go with the unreferenced ones: the test checks).
    try:
        s3.put_object(Bucket=BUCKET, Key="fill/too-big", Body=data_for("too-big", 8 * MIB))
        check(False, "an 8 MiB object fitted on a 6 MiB disk")
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        check(err["Code"] == "ServiceUnavailable" and "No space left" in err["Message"],
              f"a body bigger than the disk: {err}")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="fill/too-big").get("Contents", [])]
    check(listed == [], f"nothing of it listed: {listed}")
    check(s3.get_object(Bucket=BUCKET, Key="fill/after")["Body"].read() == data_for("after", 512 * 1024),
          "what was stored still reads back")
    print(f"ok full disk: {len(stored)} objects fit, then a clear refusal, then room again, and a body bigger than the disk refused whole")


def delete_all(prefix):
    """Delete every object under `prefix`."""
    s3 = client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            s3.delete_object(Bucket=BUCKET, Key=o["Key"])
    print(f"ok deleted everything under {prefix}")


def metrics_load():
    """10 PUTs of 10,000 bytes, then 2 GETs of each: what /metrics must
    count."""
    s3 = client()
    for i in range(10):
        s3.put_object(Bucket=BUCKET, Key=f"m/{i}", Body=data_for(f"m/{i}", 10_000))
    for _ in range(2):
        for i in range(10):
            check(len(s3.get_object(Bucket=BUCKET, Key=f"m/{i}")["Body"].read()) == 10_000, "GET")
    print("ok metrics load")


def metrics_delete():
    """Delete the objects of metrics_load."""
    s3 = client()
    for i in range(10):
        s3.delete_object(Bucket=BUCKET, Key=f"m/{i}")
    print("ok metrics delete")


def run(cmd, env=None):
    """Run a client tool; its output is shown when it fails."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, env=full_env, capture_output=True, text=True)
    check(p.returncode == 0, f"{' '.join(cmd)} exited with {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p.stdout


def make_tree(root):
    """A small directory tree: nested folders, an empty file, odd names."""
    files = {
        "index.html": b"<h1>hello</h1>",
        "empty.txt": b"",
        "docs/a b.txt": b"with a space",
        "docs/caf\u00e9.md": "unicode name".encode(),
        "docs/deep/er/file.bin": data_for("deep", 300_000),
        "big.bin": data_for("tree-big", 12 * MIB + 5),
    }
    for rel, data in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return files


def read_tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def bucket_tree(s3, prefix):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"][len(prefix):]] = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def sha(data):
    return hashlib.sha256(data).hexdigest()


def aws_cli():
    """The aws CLI: cp of a 100 MiB file (multipart, checksums), then sync
    of a directory tree up and down."""
    env = {
        "AWS_ACCESS_KEY_ID": os.environ["HANGAR_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["HANGAR_KEY_SECRET"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    aws = ["aws", "--endpoint-url", ENDPOINT, "s3"]
    s3 = client()
    tmp = tempfile.mkdtemp()
    try:
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            for i in range(100):
                f.write(data_for(f"aws-big-{i}", MIB))
        run(aws + ["cp", big, f"s3://{BUCKET}/aws/big.bin"], env)
        head = s3.head_object(Bucket=BUCKET, Key="aws/big.bin")
        check(head["ContentLength"] == 100 * MIB, f"size of the uploaded file: {head['ContentLength']}")
        check(head["ETag"].strip('"').endswith("-13"), f"the aws CLI used multipart (8 MiB parts): {head['ETag']}")
        back = os.path.join(tmp, "back.bin")
        run(aws + ["cp", f"s3://{BUCKET}/aws/big.bin", back], env)
        with open(big, "rb") as f1, open(back, "rb") as f2:
            check(sha(f1.read()) == sha(f2.read()), "100 MiB file downloaded identical")

        up = os.path.join(tmp, "up")
        files = make_tree(up)
        run(aws + ["sync", up, f"s3://{BUCKET}/aws/tree/"], env)
        check(bucket_tree(s3, "aws/tree/") == files, "sync up: the bucket holds the tree")
        # Change the bucket side, then sync down into a fresh directory
        # and into the first one with --delete.
        s3.put_object(Bucket=BUCKET, Key="aws/tree/docs/new.txt", Body=b"made remotely")
        s3.delete_object(Bucket=BUCKET, Key="aws/tree/empty.txt")
        expected = dict(files)
        expected["docs/new.txt"] = b"made remotely"
        del expected["empty.txt"]
        down = os.path.join(tmp, "down")
        run(aws + ["sync", f"s3://{BUCKET}/aws/tree/", down], env)
        check(read_tree(down) == expected, f"sync down: {sorted(read_tree(down))}")
        run(aws + ["sync", "--delete", f"s3://{BUCKET}/aws/tree/", up], env)
        check(read_tree(up) == expected, "sync down --delete mirrors the bucket")
        out = run(aws + ["sync", up, f"s3://{BUCKET}/aws/tree/"], env)
        check(out.strip() == "", f"nothing left to sync: {out}")
        out = run(aws + ["ls", "--recursive", f"s3://{BUCKET}/aws/tree/"], env)
        check(len(out.strip().splitlines()) == len(expected), f"aws s3 ls: {out}")
    finally:
        shutil.rmtree(tmp)
    print("ok aws cli")


def sigv2():
    """Signature Version 2, the default of boto3's presigned URLs and of
    aws CLI v1's `s3 presign`: presigned GET and PUT, header-signed
    requests with sub-resources, refusals of a wrong secret and an
    expired URL."""
    import time
    import urllib.error
    import urllib.request
    env_id, env_secret = os.environ["HANGAR_KEY_ID"], os.environ["HANGAR_KEY_SECRET"]

    def v2(secret=env_secret):
        return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                            aws_access_key_id=env_id, aws_secret_access_key=secret,
                            config=Config(signature_version="s3", retries={"max_attempts": 1},
                                          s3={"addressing_style": "path"}))

    s3 = v2()
    data = data_for("v2/object", 5000)
    s3.put_object(Bucket=BUCKET, Key="v2/a b+c.bin", Body=data, ContentType="application/x-test",
                  Metadata={"who": "sigv2"})
    got = s3.get_object(Bucket=BUCKET, Key="v2/a b+c.bin")
    check(got["Body"].read() == data and got["Metadata"] == {"who": "sigv2"}, "header-signed PUT and GET")
    keys = [o["Key"] for o in s3.list_objects(Bucket=BUCKET, Prefix="v2/")["Contents"]]
    check(keys == ["v2/a b+c.bin"], f"header-signed listing: {keys}")
    s3.get_bucket_acl(Bucket=BUCKET)  # a signed sub-resource
    s3.get_object(Bucket=BUCKET, Key="v2/a b+c.bin", ResponseContentType="text/plain")

    # boto3's default presigned URL (no signature_version given).
    default = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                           aws_access_key_id=env_id, aws_secret_access_key=env_secret,
                           config=Config(s3={"addressing_style": "path"}))
    url = default.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "v2/a b+c.bin"},
                                         ExpiresIn=600)
    check("AWSAccessKeyId=" in url, f"boto3 presigns with SigV2 by default: {url}")
    with urllib.request.urlopen(url) as r:
        check(r.read() == data, "presigned GET (SigV2)")
    # What a user does with a shared link: curl it.
    got = subprocess.run(["curl", "-sSf", url], capture_output=True, check=True).stdout
    check(got == data, "boto3's default presigned URL fetched with curl")
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "v2/put"}, ExpiresIn=600)
    # (SigV2 signs Content-Type: send none, as the URL was signed; urllib
    # would add a form type of its own.)
    req = urllib.request.Request(put_url, data=b"put through a link", method="PUT",
                                 headers={"Content-Type": ""})
    with urllib.request.urlopen(req) as r:
        check(r.status == 200, "presigned PUT (SigV2)")
    check(s3.get_object(Bucket=BUCKET, Key="v2/put")["Body"].read() == b"put through a link", "presigned PUT stored")

    # aws CLI v1's `s3 presign`.
    env = {
        "AWS_ACCESS_KEY_ID": env_id,
        "AWS_SECRET_ACCESS_KEY": env_secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    cli_url = run(["aws", "--endpoint-url", ENDPOINT, "s3", "presign", f"s3://{BUCKET}/v2/put"], env).strip()
    with urllib.request.urlopen(cli_url) as r:
        check(r.read() == b"put through a link", f"aws s3 presign: {cli_url}")
    got = subprocess.run(["curl", "-sSf", cli_url], capture_output=True, check=True).stdout
    check(got == b"put through a link", "aws s3 presign's URL fetched with curl")

    # Refusals: a wrong secret, a tampered URL, an expired one.
    code = error_code(lambda: v2("not the secret").get_object(Bucket=BUCKET, Key="v2/put"))
    check(code == "SignatureDoesNotMatch", f"wrong secret: {code}")

    def status(u):
        try:
            with urllib.request.urlopen(u) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    check(status(url.replace("v2/a%20b%2Bc.bin", "v2/put")) == 403, "a URL signed for another key")
    # Signed correctly, but expired a minute ago.
    expired = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "v2/put"}, ExpiresIn=-60)
    check(int(expired.split("Expires=")[1].split("&")[0]) < time.time(), f"an expired URL: {expired}")
    check(status(expired) == 403, "an expired SigV2 URL")
    print("ok sigv2")


def rclone():
    """rclone: copy, check, sync (with multipart for the big file)."""
    env = {
        "RCLONE_CONFIG": "/dev/null",
        "RCLONE_CONFIG_HANGAR_TYPE": "s3",
        "RCLONE_CONFIG_HANGAR_PROVIDER": "Other",
        "RCLONE_CONFIG_HANGAR_ACCESS_KEY_ID": os.environ["HANGAR_KEY_ID"],
        "RCLONE_CONFIG_HANGAR_SECRET_ACCESS_KEY": os.environ["HANGAR_KEY_SECRET"],
        "RCLONE_CONFIG_HANGAR_ENDPOINT": ENDPOINT,
        "RCLONE_CONFIG_HANGAR_REGION": "us-east-1",
    }
    rc = ["rclone", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M", "--retries", "1"]
    remote = f"hangar:{BUCKET}/rclone"
    s3 = client()
    tmp = tempfile.mkdtemp()
    try:
        up = os.path.join(tmp, "up")
        files = make_tree(up)
        run(rc + ["copy", up, remote], env)
        run(rc + ["check", up, remote], env)
        check(bucket_tree(s3, "rclone/") == files, "rclone copy: the bucket holds the tree")
        head = s3.head_object(Bucket=BUCKET, Key="rclone/big.bin")
        check(head["ContentLength"] == len(files["big.bin"]), "big file size")
        # A local change and deletion, then sync: the bucket mirrors it.
        with open(os.path.join(up, "index.html"), "wb") as f:
            f.write(b"<h1>changed</h1>")
        os.remove(os.path.join(up, "docs", "a b.txt"))
        run(rc + ["sync", up, remote], env)
        run(rc + ["check", up, remote], env)
        check(bucket_tree(s3, "rclone/") == read_tree(up), "rclone sync: the bucket mirrors the folder")
        # Corrupt nothing, but make the check fail on purpose: it must see it.
        with open(os.path.join(up, "docs", "deep", "er", "file.bin"), "ab") as f:
            f.write(b"!")
        p = subprocess.run(rc + ["check", up, remote], env={**os.environ, **env}, capture_output=True)
        check(p.returncode != 0, "rclone check notices a difference")
        down = os.path.join(tmp, "down")
        run(rc + ["copy", remote, down], env)
        expected = read_tree(up)
        expected["docs/deep/er/file.bin"] = expected["docs/deep/er/file.bin"][:-1]
        check(read_tree(down) == expected, "rclone copy down")
    finally:
        shutil.rmtree(tmp)
    print("ok rclone")


def one_block():
    """Objects of one block, which travel and live with their items: a body
    of exactly one block and one byte more, ranges, partNumber, a copy that
    outlives its replaced source, a part copied from one, and a conditional
    create raced by four clients (one wins, its body is what is held)."""
    import threading
    s3 = client()
    one = data_for("one/exact", MIB)
    more = data_for("one/more", MIB + 1)
    s3.put_object(Bucket=BUCKET, Key="one/exact", Body=one)
    s3.put_object(Bucket=BUCKET, Key="one/more", Body=more)

    def get(key, **kw):
        return s3.get_object(Bucket=BUCKET, Key=key, **kw)["Body"].read()

    check(get("one/exact") == one, "a body of exactly one block reads back")
    check(get("one/more") == more, "one byte more (two blocks) reads back")
    check(get("one/exact", Range="bytes=1000-1999") == one[1000:2000], "a range of it")
    check(get("one/exact", Range="bytes=-10") == one[-10:], "a suffix range of it")
    check(get("one/exact", PartNumber=1) == one, "its part 1 is all of it")
    # A copy keeps its own data when the source is replaced.
    s3.copy_object(Bucket=BUCKET, Key="one/copy", CopySource={"Bucket": BUCKET, "Key": "one/exact"})
    s3.put_object(Bucket=BUCKET, Key="one/exact", Body=b"replaced")
    check(get("one/copy") == one, "the copy outlives its source's data")
    check(get("one/exact") == b"replaced", "the source was replaced")
    # A part copied from a one-block object.
    src = data_for("one/src", 300 * 1024)
    s3.put_object(Bucket=BUCKET, Key="one/src", Body=src)
    first = data_for("one/first", 5 * MIB)
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="one/mpu")["UploadId"]
    p1 = s3.upload_part(Bucket=BUCKET, Key="one/mpu", UploadId=up, PartNumber=1, Body=first)
    p2 = s3.upload_part_copy(Bucket=BUCKET, Key="one/mpu", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": BUCKET, "Key": "one/src"})
    s3.complete_multipart_upload(Bucket=BUCKET, Key="one/mpu", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["ETag"]},
        {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    check(get("one/mpu") == first + src, "a part copied from a one-block object")
    # Create only if absent, four writers at once.
    bodies = [data_for(f"one/race-{i}", 200 * 1024) for i in range(4)]
    results = [None] * 4

    def put(i):
        try:
            client().put_object(Bucket=BUCKET, Key="one/race", Body=bodies[i], IfNoneMatch="*")
            results[i] = "ok"
        except botocore.exceptions.ClientError as e:
            results[i] = e.response["Error"]["Code"]

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in enumerate(results) if r == "ok"]
    check(len(winners) == 1, f"one conditional create wins: {results}")
    check(set(results) - {"ok"} <= {"PreconditionFailed", "ServiceUnavailable"}, f"the others: {results}")
    check(get("one/race") == bodies[winners[0]], "the winner's body is held")
    print("ok one block")


if __name__ == "__main__":
    scenario = sys.argv[1]
    args = sys.argv[2:]
    {
        "multipart": multipart,
        "burst": lambda: burst(*args),
        "one_block": one_block,
        "aws_cli": aws_cli,
        "rclone": rclone,
        "sigv2": sigv2,
        "conditional": conditional,
        "checksums": checksums,
        "regions": regions_and_unsupported,
        "website": website,
        "lifecycle": lifecycle,
        "streaming": streaming_and_auth,
        "hostile": hostile,
        "fill_disk": fill_disk,
        "delete_all": lambda: delete_all(args[0]),
        "metrics_load": metrics_load,
        "metrics_delete": metrics_delete,
        "listing_options": listing_options,
        "put": lambda: put_expect(*args),
        "delete": lambda: delete(args[0]),
        "put_many": lambda: put_many(*args),
        "get_many": lambda: get_many(*args),
    }[scenario]()
