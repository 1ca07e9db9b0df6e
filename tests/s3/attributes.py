#!/usr/bin/env python3
"""Tagging, checksums, partNumber reads and GetObjectAttributes with boto3
(issue 19), run by tests/tests/e2e/attributes.rs against real agents.
Same conventions as client.py: SCENARIO [ARGS], settings from the
environment, non-zero exit with a message on the first failed check.
"""
import base64
import hashlib
import sys
import zlib

import botocore

from client import BUCKET, check, client, data_for, error_code
from compat import MIB, crc32c

b64 = lambda b: base64.b64encode(b).decode()


def status(fn):
    try:
        r = fn()
        return r["ResponseMetadata"]["HTTPStatusCode"]
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"]


def tags_of(s3, key, **kw):
    r = s3.get_object_tagging(Bucket=BUCKET, Key=key, **kw)
    return {t["Key"]: t["Value"] for t in r["TagSet"]}


def tag_set(d):
    return {"TagSet": [{"Key": k, "Value": v} for k, v in d.items()]}


def tagging():
    s3 = client()
    # Tags given with the write, counted on reads.
    s3.put_object(Bucket=BUCKET, Key="t/a", Body=b"a", Tagging="project=blue&note=two%20words&empty=")
    check(tags_of(s3, "t/a") == {"project": "blue", "note": "two words", "empty": ""},
          f"tags of a PUT: {tags_of(s3, 't/a')}")
    check(s3.get_object(Bucket=BUCKET, Key="t/a")["TagCount"] == 3, "x-amz-tagging-count on GET")
    check(s3.head_object(Bucket=BUCKET, Key="t/a")["ResponseMetadata"]["HTTPHeaders"]
          .get("x-amz-tagging-count") == "3", "x-amz-tagging-count on HEAD")
    # Replaced in place: the data and the ETag stay.
    etag = s3.head_object(Bucket=BUCKET, Key="t/a")["ETag"]
    s3.put_object_tagging(Bucket=BUCKET, Key="t/a", Tagging=tag_set({"k": "v"}))
    check(tags_of(s3, "t/a") == {"k": "v"}, "PutObjectTagging replaces the set")
    check(s3.head_object(Bucket=BUCKET, Key="t/a")["ETag"] == etag, "tagging leaves the object")
    check(s3.get_object(Bucket=BUCKET, Key="t/a")["Body"].read() == b"a", "and its data")
    s3.delete_object_tagging(Bucket=BUCKET, Key="t/a")
    check(tags_of(s3, "t/a") == {}, "DeleteObjectTagging empties the set")
    check("TagCount" not in s3.get_object(Bucket=BUCKET, Key="t/a"), "no count without tags")

    # S3's limits, and nothing stored by a refused write.
    eleven = "&".join(f"k{i}=v" for i in range(11))
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="t/bad", Body=b"x", Tagging=eleven))
    check(code == "BadRequest", f"11 tags refused: {code}")
    check(status(lambda: s3.head_object(Bucket=BUCKET, Key="t/bad")) == 404, "nothing stored")
    for bad in [tag_set({"aws:x": "1"}), tag_set({"k" * 129: "1"}), tag_set({"k": "v" * 257}),
                {"TagSet": [{"Key": "d", "Value": "1"}, {"Key": "d", "Value": "2"}]}]:
        code = error_code(lambda: s3.put_object_tagging(Bucket=BUCKET, Key="t/a", Tagging=bad))
        check(code == "InvalidTag", f"invalid tag refused: {code} for {bad}")
    check(tags_of(s3, "t/a") == {}, "a refused tagging changes nothing")
    code = error_code(lambda: s3.put_object_tagging(Bucket=BUCKET, Key="t/none", Tagging=tag_set({"a": "1"})))
    check(code == "NoSuchKey", f"tagging a missing key: {code}")

    # Copies: COPY (the default) takes the source's, REPLACE the request's.
    s3.put_object(Bucket=BUCKET, Key="t/src", Body=b"src", Tagging="from=source")
    s3.copy_object(Bucket=BUCKET, Key="t/copy", CopySource={"Bucket": BUCKET, "Key": "t/src"})
    check(tags_of(s3, "t/copy") == {"from": "source"}, f"COPY directive: {tags_of(s3, 't/copy')}")
    s3.copy_object(Bucket=BUCKET, Key="t/replaced", CopySource={"Bucket": BUCKET, "Key": "t/src"},
                   TaggingDirective="REPLACE", Tagging="from=request")
    check(tags_of(s3, "t/replaced") == {"from": "request"}, "REPLACE directive")
    s3.copy_object(Bucket=BUCKET, Key="t/bare", CopySource={"Bucket": BUCKET, "Key": "t/src"},
                   TaggingDirective="REPLACE")
    check(tags_of(s3, "t/bare") == {}, "REPLACE without tags: none")

    # Multipart: tags given at creation.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="t/mp", Tagging="kind=multipart")
    p = s3.upload_part(Bucket=BUCKET, Key="t/mp", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="t/mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    check(tags_of(s3, "t/mp") == {"kind": "multipart"}, "tags of a multipart upload")

    # Per version: tagging one version leaves the others.
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=BUCKET, Key="t/v", Body=b"1", Tagging="n=1")["VersionId"]
    v2 = s3.put_object(Bucket=BUCKET, Key="t/v", Body=b"2")["VersionId"]
    check(tags_of(s3, "t/v") == {}, "the latest version has its own (none)")
    check(tags_of(s3, "t/v", VersionId=v1) == {"n": "1"}, "the older keeps its tags")
    r = s3.put_object_tagging(Bucket=BUCKET, Key="t/v", VersionId=v1, Tagging=tag_set({"n": "one"}))
    check(r.get("VersionId") == v1, f"the version id answered: {r.get('VersionId')}")
    check(tags_of(s3, "t/v", VersionId=v1) == {"n": "one"}, "a version tagged by id")
    check(tags_of(s3, "t/v", VersionId=v2) == {}, "the other version untouched")
    s3.delete_object(Bucket=BUCKET, Key="t/v")
    marker = s3.list_object_versions(Bucket=BUCKET, Prefix="t/v")["DeleteMarkers"][0]["VersionId"]
    code = error_code(lambda: s3.get_object_tagging(Bucket=BUCKET, Key="t/v", VersionId=marker))
    check(code == "MethodNotAllowed", f"a delete marker has no tags: {code}")

    # Bucket tags.
    code = error_code(lambda: s3.get_bucket_tagging(Bucket=BUCKET))
    check(code == "NoSuchTagSet", f"a bucket without tags: {code}")
    s3.put_bucket_tagging(Bucket=BUCKET, Tagging=tag_set({"team": "media", "cost": "low"}))
    got = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=BUCKET)["TagSet"]}
    check(got == {"team": "media", "cost": "low"}, f"bucket tags: {got}")
    s3.delete_bucket_tagging(Bucket=BUCKET)
    code = error_code(lambda: s3.get_bucket_tagging(Bucket=BUCKET))
    check(code == "NoSuchTagSet", f"bucket tags deleted: {code}")
    print("ok tagging")


def crc64nvme(data):
    """CRC-64/NVME, bit by bit: an implementation independent of Hangar's."""
    crc = 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 & -(crc & 1))
    return (crc ^ 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


SUMS = {
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "CRC32C": crc32c,
    "CRC64NVME": crc64nvme,
    "SHA1": lambda d: hashlib.sha1(d).digest(),
    "SHA256": lambda d: hashlib.sha256(d).digest(),
}


def checksums():
    s3 = client()
    data = data_for("kept", 20_000)
    for alg, fn in SUMS.items():
        key = f"c/{alg}"
        value = b64(fn(data))
        r = s3.put_object(Bucket=BUCKET, Key=key, Body=data, **{f"Checksum{alg}": value})
        check(r.get(f"Checksum{alg}") == value, f"PutObject answers the {alg}: {r.get(f'Checksum{alg}')}")
        h = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        check(h.get(f"Checksum{alg}") == value, f"HEAD returns the stored {alg}: {h.get(f'Checksum{alg}')} vs {value}")
        check(h.get("ChecksumType") == "FULL_OBJECT", f"type: {h.get('ChecksumType')}")
        g = s3.get_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
        check(g.get(f"Checksum{alg}") == value and g["Body"].read() == data, f"GET returns the {alg}")
        plain = s3.head_object(Bucket=BUCKET, Key=key)["ResponseMetadata"]["HTTPHeaders"]
        check(not any(k.startswith("x-amz-checksum-") for k in plain), f"only when asked: {plain}")
        attrs = s3.get_object_attributes(Bucket=BUCKET, Key=key, ObjectAttributes=["Checksum", "ObjectSize"])
        check(attrs["Checksum"].get(f"Checksum{alg}") == value, f"GetObjectAttributes {alg}: {attrs}")
        check(attrs["ObjectSize"] == len(data), "ObjectSize")
    # boto3's own default (a CRC32 it computes, sent in the trailer of an
    # aws-chunked body, or as a header) is kept as well.
    s3.put_object(Bucket=BUCKET, Key="c/default", Body=data)
    h = s3.head_object(Bucket=BUCKET, Key="c/default", ChecksumMode="ENABLED")
    check(h.get("ChecksumCRC32") == b64(SUMS["CRC32"](data)), f"boto3's default CRC32: {h}")
    # A wrong value: refused, nothing stored.
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="c/bad", Body=data,
                                            ChecksumCRC64NVME=b64(crc64nvme(b"other"))))
    check(code == "BadDigest", f"a wrong CRC64NVME: {code}")
    check(status(lambda: s3.head_object(Bucket=BUCKET, Key="c/bad")) == 404, "nothing stored")

    # Multipart, COMPOSITE (SHA256): the checksum of the parts' checksums.
    parts_data = [data_for("p1", 5 * MIB), data_for("p2", 5 * MIB), data_for("p3", 1000)]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="c/composite", ChecksumAlgorithm="SHA256")
    check(up.get("ChecksumAlgorithm") == "SHA256", f"Create answers the algorithm: {up.get('ChecksumAlgorithm')}")
    parts = []
    for i, d in enumerate(parts_data, 1):
        r = s3.upload_part(Bucket=BUCKET, Key="c/composite", UploadId=up["UploadId"], PartNumber=i, Body=d,
                           ChecksumAlgorithm="SHA256")
        check(r.get("ChecksumSHA256") == b64(hashlib.sha256(d).digest()), f"part {i}'s checksum answered")
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    listed = s3.list_parts(Bucket=BUCKET, Key="c/composite", UploadId=up["UploadId"])
    check(listed.get("ChecksumAlgorithm") == "SHA256", f"ListParts algorithm: {listed.get('ChecksumAlgorithm')}")
    check([p.get("ChecksumSHA256") for p in listed["Parts"]] == [p["ChecksumSHA256"] for p in parts],
          "ListParts shows each part's checksum")
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key="c/composite", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    composite = b64(hashlib.sha256(b"".join(hashlib.sha256(d).digest() for d in parts_data)).digest()) + "-3"
    check(done.get("ChecksumSHA256") == composite, f"composite: {done.get('ChecksumSHA256')} vs {composite}")
    h = s3.head_object(Bucket=BUCKET, Key="c/composite", ChecksumMode="ENABLED")
    check(h.get("ChecksumSHA256") == composite and h.get("ChecksumType") == "COMPOSITE", f"HEAD: {h}")
    p2 = s3.head_object(Bucket=BUCKET, Key="c/composite", ChecksumMode="ENABLED", PartNumber=2)
    check(p2.get("ChecksumSHA256") == parts[1]["ChecksumSHA256"], "a part read answers the part's checksum")

    # Multipart, FULL_OBJECT (CRC32): the CRC of the whole object, from
    # the parts' CRCs; a whole-object value given at completion is checked.
    whole = b"".join(parts_data)
    full = b64(zlib.crc32(whole).to_bytes(4, "big"))
    for given, outcome in [(b64(b"\0\0\0\0"), "BadDigest"), (full, None)]:
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="c/full", ChecksumAlgorithm="CRC32",
                                        ChecksumType="FULL_OBJECT")
        check(up.get("ChecksumType") == "FULL_OBJECT", f"Create answers the type: {up.get('ChecksumType')}")
        parts = []
        for i, d in enumerate(parts_data, 1):
            # No checksum sent with the part: Hangar computes it.
            r = s3.upload_part(Bucket=BUCKET, Key="c/full", UploadId=up["UploadId"], PartNumber=i, Body=d)
            parts.append({"PartNumber": i, "ETag": r["ETag"]})
        done = lambda: s3.complete_multipart_upload(
            Bucket=BUCKET, Key="c/full", UploadId=up["UploadId"], MultipartUpload={"Parts": parts},
            ChecksumCRC32=given, ChecksumType="FULL_OBJECT")
        if outcome:
            code = error_code(done)
            check(code == outcome, f"a wrong full-object CRC32 at completion: {code}")
            check(status(lambda: s3.head_object(Bucket=BUCKET, Key="c/full")) == 404, "no object")
        else:
            r = done()
            check(r.get("ChecksumCRC32") == full and r.get("ChecksumType") == "FULL_OBJECT", f"full: {r}")
    h = s3.head_object(Bucket=BUCKET, Key="c/full", ChecksumMode="ENABLED")
    check(h.get("ChecksumCRC32") == full and h.get("ChecksumType") == "FULL_OBJECT", f"HEAD full: {h}")
    # A part listed with a checksum that is not the part's.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="c/liar", ChecksumAlgorithm="SHA1")
    r = s3.upload_part(Bucket=BUCKET, Key="c/liar", UploadId=up["UploadId"], PartNumber=1, Body=b"x",
                       ChecksumAlgorithm="SHA1")
    code = error_code(lambda: s3.complete_multipart_upload(
        Bucket=BUCKET, Key="c/liar", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"],
                                    "ChecksumSHA1": b64(hashlib.sha1(b"y").digest())}]}))
    check(code == "InvalidPart", f"a part's wrong checksum at completion: {code}")
    print("ok checksums")


def parts():
    s3 = client()
    parts_data = [data_for("q1", 5 * MIB), data_for("q2", 5 * MIB + 7), data_for("q3", 1024)]
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="p/mp")
    etags = []
    for i, d in enumerate(parts_data, 1):
        etags.append(s3.upload_part(Bucket=BUCKET, Key="p/mp", UploadId=up["UploadId"], PartNumber=i, Body=d)["ETag"])
    s3.complete_multipart_upload(Bucket=BUCKET, Key="p/mp", UploadId=up["UploadId"], MultipartUpload={
        "Parts": [{"PartNumber": i, "ETag": e} for i, e in enumerate(etags, 1)]})
    total = sum(len(d) for d in parts_data)
    for i, d in enumerate(parts_data, 1):
        g = s3.get_object(Bucket=BUCKET, Key="p/mp", PartNumber=i)
        check(g["Body"].read() == d, f"part {i}'s bytes")
        check(g["PartsCount"] == 3, f"x-amz-mp-parts-count: {g.get('PartsCount')}")
        start = sum(len(x) for x in parts_data[:i - 1])
        check(g["ContentRange"] == f"bytes {start}-{start + len(d) - 1}/{total}", f"range: {g['ContentRange']}")
        check(g["ResponseMetadata"]["HTTPStatusCode"] == 206, "206")
    h = s3.head_object(Bucket=BUCKET, Key="p/mp", PartNumber=3)
    check(h["ContentLength"] == 1024 and h["PartsCount"] == 3, f"HEAD of part 3: {h}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="p/mp", PartNumber=4))
    check(code == "InvalidPartNumber", f"a part past the last: {code}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="p/mp", PartNumber=1, Range="bytes=0-1"))
    check(code == "InvalidRequest", f"partNumber and Range together: {code}")
    # An object not uploaded in parts has one part: itself.
    s3.put_object(Bucket=BUCKET, Key="p/one", Body=b"single")
    g = s3.get_object(Bucket=BUCKET, Key="p/one", PartNumber=1)
    check(g["Body"].read() == b"single" and "PartsCount" not in g, f"part 1 of a plain object: {g}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="p/one", PartNumber=2))
    check(code == "InvalidPartNumber", f"part 2 of a plain object: {code}")

    # GetObjectAttributes: parts in pages.
    head = s3.head_object(Bucket=BUCKET, Key="p/mp")
    a = s3.get_object_attributes(Bucket=BUCKET, Key="p/mp", MaxParts=2,
                                 ObjectAttributes=["ETag", "ObjectParts", "StorageClass", "ObjectSize"])
    check(a["ETag"] == head["ETag"].strip('"'), f"ETag: {a['ETag']} vs {head['ETag']}")
    check(a["ObjectSize"] == total and a["StorageClass"] == "STANDARD", f"size, class: {a}")
    op = a["ObjectParts"]
    check(op["TotalPartsCount"] == 3 and op["IsTruncated"] and op["NextPartNumberMarker"] == 2,
          f"first page of parts: {op}")
    check([(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(1, 5 * MIB), (2, 5 * MIB + 7)], f"parts: {op}")
    a = s3.get_object_attributes(Bucket=BUCKET, Key="p/mp", MaxParts=2, PartNumberMarker=2,
                                 ObjectAttributes=["ObjectParts"])
    op = a["ObjectParts"]
    check(not op["IsTruncated"] and [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(3, 1024)],
          f"second page: {op}")
    check("ETag" not in a and "ObjectSize" not in a, "only what was asked")
    a = s3.get_object_attributes(Bucket=BUCKET, Key="p/one", ObjectAttributes=["ObjectParts", "ObjectSize"])
    check("ObjectParts" not in a and a["ObjectSize"] == 6, f"a plain object has no parts listed: {a}")
    code = error_code(lambda: s3.get_object_attributes(Bucket=BUCKET, Key="p/none", ObjectAttributes=["ETag"]))
    check(code == "NoSuchKey", f"attributes of a missing key: {code}")
    print("ok parts")


def behaviours():
    """S3's small behaviours: bucket name conflicts, ListBuckets pages,
    the region, empty listings, presigned expiry bounds, copy ranges."""
    import os
    import time
    import urllib.error
    import urllib.request
    from client import ENDPOINT
    s3 = client()
    them = client(os.environ["HANGAR_OTHER_KEY_ID"], os.environ["HANGAR_OTHER_KEY_SECRET"])
    for i in range(5):
        s3.create_bucket(Bucket=f"page-{i}")
    code = error_code(lambda: s3.create_bucket(Bucket="page-0"))
    check(code == "BucketAlreadyOwnedByYou", f"creating one's own bucket again: {code}")
    code = error_code(lambda: them.create_bucket(Bucket="page-0"))
    check(code == "BucketAlreadyExists", f"creating someone else's: {code}")
    names, token, pages = [], None, 0
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = s3.list_buckets(MaxBuckets=2, Prefix="page-", **kw)
        names += [b["Name"] for b in r["Buckets"]]
        pages += 1
        token = r.get("ContinuationToken")
        if not token:
            break
    check(names == [f"page-{i}" for i in range(5)] and pages == 3, f"ListBuckets in pages of 2: {names} in {pages}")
    check(r.get("Prefix") == "page-", f"the prefix answered: {r.get('Prefix')}")
    region = os.environ["HANGAR_REGION"]
    loc = s3.get_bucket_location(Bucket="page-0")["LocationConstraint"]
    check(loc == region, f"GetBucketLocation answers the configured region: {loc} vs {region}")

    # Listings of nothing, and an empty delimiter (none).
    for k in ["e/a", "e/b/c"]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=b"x")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="e/", MaxKeys=0)
    check(r["KeyCount"] == 0 and not r["IsTruncated"] and "NextContinuationToken" not in r,
          f"max-keys=0 (v2): {r}")
    r = s3.list_objects(Bucket=BUCKET, Prefix="e/", MaxKeys=0)
    check("Contents" not in r and not r["IsTruncated"], f"max-keys=0 (v1): {r}")
    r = s3.list_object_versions(Bucket=BUCKET, Prefix="e/", MaxKeys=0)
    check("Versions" not in r and not r["IsTruncated"], f"max-keys=0 (versions): {r}")
    r = s3.list_objects_v2(Bucket=BUCKET, Prefix="e/", Delimiter="")
    check([o["Key"] for o in r["Contents"]] == ["e/a", "e/b/c"] and "CommonPrefixes" not in r,
          f"an empty delimiter groups nothing: {r}")

    # Presigned URLs: X-Amz-Expires from 1 second to 7 days.
    def fetch(url):
        try:
            with urllib.request.urlopen(url) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
    good = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "e/a"}, ExpiresIn=60)
    check(fetch(good) == 200, "a presigned URL")
    for bad in ["0", str(7 * 86400 + 1)]:
        url = good.replace("X-Amz-Expires=60", f"X-Amz-Expires={bad}")
        check(fetch(url) in (400, 403), f"X-Amz-Expires={bad} refused: {fetch(url)}")
    short = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "e/a"}, ExpiresIn=1)
    time.sleep(2.5)
    check(fetch(short) == 403, "an expired presigned URL is 403")

    # UploadPartCopy of a range past the source's end.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="e/copy")
    code = error_code(lambda: s3.upload_part_copy(Bucket=BUCKET, Key="e/copy", UploadId=up["UploadId"], PartNumber=1,
                                                  CopySource={"Bucket": BUCKET, "Key": "e/a"},
                                                  CopySourceRange="bytes=0-10"))
    check(code == "InvalidRange", f"a copy range past the source: {code}")
    code = error_code(lambda: s3.upload_part_copy(Bucket=BUCKET, Key="e/copy", UploadId=up["UploadId"], PartNumber=1,
                                                  CopySource={"Bucket": BUCKET, "Key": "e/a"},
                                                  CopySourceRange="bytes=5-2"))
    check(code == "InvalidArgument", f"a malformed copy range: {code}")
    print("ok behaviours")


if __name__ == "__main__":
    {
        "tagging": tagging,
        "checksums": checksums,
        "parts": parts,
        "behaviours": behaviours,
    }[sys.argv[1]]()
