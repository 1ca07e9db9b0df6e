#!/usr/bin/env python3
"""S3 versioning scenarios with boto3 (issue 18), run by
tests/tests/e2e/versioning.rs against real agents. Same conventions as
client.py: SCENARIO [ARGS], settings from the environment, non-zero exit
with a message on the first failed check.
"""
import hashlib
import os
import sys

import boto3
import botocore
from botocore.config import Config

from client import BUCKET, check, client, data_for, error_code
from compat import MIB, block_hash, wait_until


def status(fn):
    """HTTP status and headers of a request that may fail."""
    try:
        r = fn()
        return r["ResponseMetadata"]["HTTPStatusCode"], r["ResponseMetadata"]["HTTPHeaders"]
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["ResponseMetadata"]["HTTPHeaders"]


def body(s3, key, **kw):
    return s3.get_object(Bucket=BUCKET, Key=key, **kw)["Body"].read()


def versions_of(s3, prefix="", Bucket=BUCKET, **kw):
    """[(key, version id, latest, "v"|"m")] of a whole listing, in order."""
    r = s3.list_object_versions(Bucket=Bucket, Prefix=prefix, **kw)
    out = [(v["Key"], v["VersionId"], v["IsLatest"], "v", v["LastModified"]) for v in r.get("Versions", [])]
    out += [(m["Key"], m["VersionId"], m["IsLatest"], "m", m["LastModified"]) for m in r.get("DeleteMarkers", [])]
    # The XML interleaves them in order; boto3 splits them: put back in
    # key order, newest first within a key.
    out.sort(key=lambda e: (e[0], not e[2], -e[4].timestamp()))
    return [e[:4] for e in out], r


def versions():
    s3 = client()
    state = s3.get_bucket_versioning(Bucket=BUCKET)
    check("Status" not in state, f"a new bucket is unversioned: {state}")
    r = s3.put_object(Bucket=BUCKET, Key="k", Body=b"v0")
    check("VersionId" not in r, f"no version id without versioning: {r.get('VersionId')}")
    code = error_code(lambda: s3.put_bucket_versioning(
        Bucket=BUCKET, VersioningConfiguration={"Status": "Disabled"}))
    check(code == "MalformedXML", f"a bucket cannot be set back to unversioned: {code}")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    state = s3.get_bucket_versioning(Bucket=BUCKET)
    check(state.get("Status") == "Enabled", f"GetBucketVersioning: {state}")

    # Every write a new version; the object written before is "null".
    v1 = s3.put_object(Bucket=BUCKET, Key="k", Body=b"v1")["VersionId"]
    v2 = s3.put_object(Bucket=BUCKET, Key="k", Body=b"v2")["VersionId"]
    check(len({v1, v2, "null"}) == 3, f"distinct version ids: {v1} {v2}")
    listed, _ = versions_of(s3, "k")
    check(listed == [("k", v2, True, "v"), ("k", v1, False, "v"), ("k", "null", False, "v")],
          f"versions newest first: {listed}")
    got = s3.get_object(Bucket=BUCKET, Key="k")
    check(got["Body"].read() == b"v2" and got["VersionId"] == v2, "GET reads the latest")
    for vid, want in [(v1, b"v1"), ("null", b"v0"), (v2, b"v2")]:
        check(body(s3, "k", VersionId=vid) == want, f"GET ?versionId={vid}")
        h = s3.head_object(Bucket=BUCKET, Key="k", VersionId=vid)
        check(h["VersionId"] == vid and h["ContentLength"] == 2, f"HEAD ?versionId={vid}: {h}")
    check(error_code(lambda: s3.get_object(Bucket=BUCKET, Key="k", VersionId="nope")) == "InvalidArgument",
          "a malformed version id")
    check(error_code(lambda: s3.get_object(Bucket=BUCKET, Key="k", VersionId="0" * 32)) == "NoSuchVersion",
          "a version that does not exist")
    s3.get_object_acl(Bucket=BUCKET, Key="k", VersionId=v1)
    check(error_code(lambda: s3.get_object_acl(Bucket=BUCKET, Key="k", VersionId="0" * 32)) == "NoSuchVersion",
          "GetObjectAcl of a version that does not exist")

    # DELETE without a version id: a delete marker.
    d = s3.delete_object(Bucket=BUCKET, Key="k")
    marker = d.get("VersionId")
    check(d.get("DeleteMarker") is True and marker not in (None, "null", v1, v2), f"delete marker: {d}")
    st, h = status(lambda: s3.get_object(Bucket=BUCKET, Key="k"))
    check(st == 404 and h.get("x-amz-delete-marker") == "true" and h.get("x-amz-version-id") == marker,
          f"GET under a delete marker: {st} {h}")
    check(error_code(lambda: s3.get_object(Bucket=BUCKET, Key="k")) == "NoSuchKey", "NoSuchKey")
    check("k" not in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])],
          "ListObjectsV2 hides a key under a delete marker")
    listed, _ = versions_of(s3, "k")
    check(listed == [("k", marker, True, "m"), ("k", v2, False, "v"), ("k", v1, False, "v"),
                     ("k", "null", False, "v")], f"the marker is the latest: {listed}")
    st, h = status(lambda: s3.get_object(Bucket=BUCKET, Key="k", VersionId=marker))
    check(st == 405 and h.get("x-amz-delete-marker") == "true", f"GET of a marker by id: {st} {h}")
    check(body(s3, "k", VersionId=v2) == b"v2", "old versions stay readable under a marker")

    # DELETE with a version id: that version goes for good.
    d = s3.delete_object(Bucket=BUCKET, Key="k", VersionId=marker)
    check(d.get("DeleteMarker") is True and d.get("VersionId") == marker, f"marker deleted: {d}")
    check(body(s3, "k") == b"v2", "removing the marker brings the object back")
    s3.delete_object(Bucket=BUCKET, Key="k", VersionId=v2)
    check(body(s3, "k") == b"v1", "deleting the latest version makes the one before latest")
    check(error_code(lambda: s3.get_object(Bucket=BUCKET, Key="k", VersionId=v2)) == "NoSuchVersion",
          "a deleted version is gone")
    s3.delete_object(Bucket=BUCKET, Key="k", VersionId=v2)  # again: S3 says 204
    listed, _ = versions_of(s3, "k")
    check(listed == [("k", v1, True, "v"), ("k", "null", False, "v")], f"after deletes: {listed}")

    # Copy from a version; the copy is a new version.
    c = s3.copy_object(Bucket=BUCKET, Key="copy", CopySource={"Bucket": BUCKET, "Key": "k", "VersionId": "null"})
    check(c.get("CopySourceVersionId") == "null" and c.get("VersionId") not in (None, "null"), f"copy: {c}")
    check(body(s3, "copy") == b"v0", "copied the null version")

    # Versions with blocks: an old version's data stays on disk.
    big1, big2 = data_for("big1", 2 * MIB), data_for("big2", 2 * MIB)
    b1 = s3.put_object(Bucket=BUCKET, Key="big", Body=big1)["VersionId"]
    b2 = s3.put_object(Bucket=BUCKET, Key="big", Body=big2)["VersionId"]
    check(body(s3, "big", VersionId=b1) == big1, "an old version's blocks are kept")
    check(body(s3, "big") == big2, "the new one is latest")

    # Multipart uploads and UploadPartCopy from a version.
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mpu")["UploadId"]
    p1 = s3.upload_part(Bucket=BUCKET, Key="mpu", UploadId=up, PartNumber=1, Body=data_for("p1", 5 * MIB))
    p2 = s3.upload_part_copy(Bucket=BUCKET, Key="mpu", UploadId=up, PartNumber=2,
                             CopySource={"Bucket": BUCKET, "Key": "big", "VersionId": b1},
                             CopySourceRange="bytes=0-%d" % (MIB - 1))
    check(p2.get("CopySourceVersionId") == b1, f"UploadPartCopy names its source version: {p2}")
    done = s3.complete_multipart_upload(Bucket=BUCKET, Key="mpu", UploadId=up, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    check(done.get("VersionId") not in (None, "null"), f"CompleteMultipartUpload makes a version: {done}")
    check(body(s3, "mpu", Range="bytes=%d-" % (5 * MIB)) == big1[:MIB], "the part copied from an old version")

    # DeleteObjects with and without version ids.
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [
        {"Key": "k", "VersionId": v1}, {"Key": "copy"}, {"Key": "big", "VersionId": b1}]})
    deleted = {(d["Key"], d.get("VersionId"), d.get("DeleteMarker", False)) for d in r["Deleted"]}
    check(("k", v1, False) in deleted and ("big", b1, False) in deleted, f"DeleteObjects by id: {r['Deleted']}")
    copy_entry = [d for d in r["Deleted"] if d["Key"] == "copy"][0]
    check(copy_entry.get("DeleteMarker") is True and copy_entry.get("DeleteMarkerVersionId"),
          f"DeleteObjects without id adds a marker: {copy_entry}")
    check(body(s3, "k") == b"v0", "after deleting v1 the null version is latest")
    print("gone", block_hash(big1[:MIB]))
    print("gone", block_hash(big1[MIB:]))
    print("kept", block_hash(big2[:MIB]))

    # Suspended: writes replace the null version; kept versions stay.
    va = s3.put_object(Bucket=BUCKET, Key="s", Body=b"a")["VersionId"]
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    check(s3.get_bucket_versioning(Bucket=BUCKET).get("Status") == "Suspended", "suspended")
    n1 = s3.put_object(Bucket=BUCKET, Key="s", Body=b"n1")
    n2 = s3.put_object(Bucket=BUCKET, Key="s", Body=b"n2")
    check(n1.get("VersionId") == "null" and n2.get("VersionId") == "null", f"null versions: {n1} {n2}")
    listed, _ = versions_of(s3, "s")
    check(listed == [("s", "null", True, "v"), ("s", va, False, "v")], f"one null version: {listed}")
    check(body(s3, "s") == b"n2" and body(s3, "s", VersionId=va) == b"a", "suspended reads")
    d = s3.delete_object(Bucket=BUCKET, Key="s")
    check(d.get("DeleteMarker") is True and d.get("VersionId") == "null", f"null delete marker: {d}")
    listed, _ = versions_of(s3, "s")
    check(listed == [("s", "null", True, "m"), ("s", va, False, "v")], f"marker replaced null: {listed}")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

    # Conditional writes see the latest version: a delete marker is no
    # object.
    s3.put_object(Bucket=BUCKET, Key="cond", Body=b"1")
    s3.delete_object(Bucket=BUCKET, Key="cond")
    r = s3.put_object(Bucket=BUCKET, Key="cond", Body=b"2", IfNoneMatch="*")
    check(r.get("VersionId") not in (None, "null"), f"If-None-Match over a delete marker: {r}")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="cond", Body=b"3", IfNoneMatch="*"))
    check(code == "PreconditionFailed", f"If-None-Match over a version: {code}")
    check(len(versions_of(s3, "cond")[0]) == 3, "two versions and a marker")

    # A bucket holding only old versions or delete markers is not empty.
    s3.create_bucket(Bucket="versioned-gone")
    s3.put_bucket_versioning(Bucket="versioned-gone", VersioningConfiguration={"Status": "Enabled"})
    x = s3.put_object(Bucket="versioned-gone", Key="x", Body=b"x")["VersionId"]
    m = s3.delete_object(Bucket="versioned-gone", Key="x")["VersionId"]
    code = error_code(lambda: s3.delete_bucket(Bucket="versioned-gone"))
    check(code == "BucketNotEmpty", f"versions left: {code}")
    for vid in [x, m]:
        s3.delete_object(Bucket="versioned-gone", Key="x", VersionId=vid)
    s3.delete_bucket(Bucket="versioned-gone")
    print("ok versions")


def listing():
    """ListObjectVersions: pages, markers, delimiter, encoding."""
    s3 = client()
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    keys = ["a/1", "a/2", "b", "c/x/1", "d"]
    for k in keys:
        for i in range(3):
            s3.put_object(Bucket=BUCKET, Key=k, Body=f"{k} {i}".encode())
    s3.delete_object(Bucket=BUCKET, Key="d")
    full, r = versions_of(s3)
    check(len(full) == 16 and not r["IsTruncated"], f"16 entries: {full}")
    check([e[0] for e in full] == sorted(e[0] for e in full), "keys in order")
    check([e[2] for e in full if e[0] == "d"] == [True, False, False, False], "d's marker latest")
    # Pages of every size give the same listing.
    for size in [1, 2, 3, 5]:
        got, km, vm = [], None, None
        while True:
            kw = {"MaxKeys": size}
            if km is not None:
                kw["KeyMarker"] = km
                if vm is not None:
                    kw["VersionIdMarker"] = vm
            page, r = versions_of(s3, **kw)
            check(len(page) <= size, f"page of {size}: {page}")
            got += page
            if not r["IsTruncated"]:
                break
            km, vm = r["NextKeyMarker"], r.get("NextVersionIdMarker")
        check(got == full, f"pages of {size}: {got} != {full}")
    r = s3.list_object_versions(Bucket=BUCKET, Delimiter="/")
    check([p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["a/", "c/"], f"prefixes: {r.get('CommonPrefixes')}")
    check({v["Key"] for v in r.get("Versions", [])} == {"b", "d"}, "keys outside folders")
    r = s3.list_object_versions(Bucket=BUCKET, Prefix="c/", Delimiter="/")
    check([p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["c/x/"], "nested prefix")
    # A key marker alone starts after that key.
    page, _ = versions_of(s3, KeyMarker="b")
    check([e[0] for e in page][:1] == ["c/x/1"], f"after key b: {page[:2]}")
    print("ok listing")


def lifecycle():
    """Lifecycle rules on a versioned bucket (the test's agent has 2-second
    "days" and a pass every second)."""
    s3 = client()
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    old = [s3.put_object(Bucket=BUCKET, Key="old/a", Body=b"a%d" % i)["VersionId"] for i in range(4)]
    lone = s3.put_object(Bucket=BUCKET, Key="gone/b", Body=b"b")["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key="gone/b")
    s3.put_object(Bucket=BUCKET, Key="exp/c", Body=b"c")
    s3.put_object(Bucket=BUCKET, Key="keep/d", Body=b"d1")
    s3.put_object(Bucket=BUCKET, Key="keep/d", Body=b"d2")
    rules = [
        {"ID": "old", "Filter": {"Prefix": "old/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
        {"ID": "gone", "Filter": {"Prefix": "gone/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}},
        {"ID": "markers", "Filter": {"Prefix": "gone/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
        {"ID": "exp", "Filter": {"Prefix": "exp/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
    ]
    s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={"Rules": rules})
    got = s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    check(got[0]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}
          and got[2]["Expiration"] == {"ExpiredObjectDeleteMarker": True}, f"rules read back: {got}")
    code = error_code(lambda: s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={
        "Rules": [{"ID": "x", "Filter": {"Prefix": ""}, "Status": "Enabled",
                   "Expiration": {"Days": 1, "ExpiredObjectDeleteMarker": True}}]}))
    check(code == "MalformedXML", f"ExpiredObjectDeleteMarker with Days: {code}")

    def ids(prefix):
        return [(e[1], e[3]) for e in versions_of(s3, prefix)[0]]

    wait_until("old non-current versions to go, the newest kept",
               lambda: [i for i, _ in ids("old/")] == [old[3], old[2]])
    wait_until("a delete marker left alone to go with its version", lambda: ids("gone/") == [])
    check(lone not in [i for i, _ in ids("")], "the lone version went")
    wait_until("Expiration to put a delete marker above the version",
               lambda: [k for _, k in ids("exp/")] == ["m", "v"])
    check(len(ids("keep/")) == 2, "keys outside every rule keep their versions")
    check(body(s3, "old/a") == b"a3", "the current version stays")
    print("ok lifecycle of versions")


def lock():
    """Object lock: bucket configuration, default and explicit retention,
    GOVERNANCE bypass by an owner only, COMPLIANCE that no one shortens,
    legal holds, and lifecycle that leaves locked versions alone."""
    import datetime
    s3 = client()
    other = client(os.environ["HANGAR_OTHER_KEY_ID"], os.environ["HANGAR_OTHER_KEY_SECRET"])
    now = datetime.datetime.now(datetime.timezone.utc)
    hour = now + datetime.timedelta(hours=1)

    code = error_code(lambda: s3.get_object_lock_configuration(Bucket=BUCKET))
    check(code == "ObjectLockConfigurationNotFoundError", f"no lock configuration: {code}")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="x", Body=b"x", ObjectLockMode="GOVERNANCE",
                                            ObjectLockRetainUntilDate=hour))
    check(code == "InvalidRequest", f"lock headers on a bucket without object lock: {code}")

    # A bucket created with object lock is versioned, for good.
    s3.create_bucket(Bucket="locked", ObjectLockEnabledForBucket=True)
    check(s3.get_bucket_versioning(Bucket="locked").get("Status") == "Enabled", "object lock enables versioning")
    code = error_code(lambda: s3.put_bucket_versioning(Bucket="locked",
                                                       VersioningConfiguration={"Status": "Suspended"}))
    check(code == "InvalidBucketState", f"versioning of a locked bucket cannot be suspended: {code}")
    conf = s3.get_object_lock_configuration(Bucket="locked")["ObjectLockConfiguration"]
    check(conf == {"ObjectLockEnabled": "Enabled"}, f"lock configuration: {conf}")
    # Bad lock input gets S3's errors and stores nothing.
    code = error_code(lambda: s3.put_object(Bucket="locked", Key="bad", Body=b"x", ObjectLockMode="GOVERNANCE"))
    check(code == "InvalidArgument", f"a mode without a date: {code}")
    code = error_code(lambda: s3.put_object(Bucket="locked", Key="bad", Body=b"x", ObjectLockMode="COMPLIANCE",
                                            ObjectLockRetainUntilDate=now - datetime.timedelta(hours=1)))
    check(code == "InvalidArgument", f"a date in the past: {code}")
    check(error_code(lambda: s3.head_object(Bucket="locked", Key="bad")) == "404", "nothing stored")
    code = error_code(lambda: s3.put_object_lock_configuration(Bucket="locked", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1, "Years": 1}}}))
    check(code == "MalformedXML", f"Days and Years together: {code}")

    # COMPLIANCE: no one deletes it or shortens it; it can be extended.
    c = s3.put_object(Bucket="locked", Key="c", Body=b"c", ObjectLockMode="COMPLIANCE",
                      ObjectLockRetainUntilDate=hour)["VersionId"]
    h = s3.head_object(Bucket="locked", Key="c")
    check(h["ObjectLockMode"] == "COMPLIANCE" and abs((h["ObjectLockRetainUntilDate"] - hour).total_seconds()) < 1,
          f"lock headers on HEAD: {h}")
    for bypass in (False, True):
        code = error_code(lambda: s3.delete_object(Bucket="locked", Key="c", VersionId=c,
                                                   BypassGovernanceRetention=bypass))
        check(code == "AccessDenied", f"COMPLIANCE version deleted (bypass {bypass}): {code}")
    r = s3.delete_objects(Bucket="locked", BypassGovernanceRetention=True,
                          Delete={"Objects": [{"Key": "c", "VersionId": c}]})
    check([e["Code"] for e in r.get("Errors", [])] == ["AccessDenied"], f"DeleteObjects refuses it: {r}")
    for mode, until in [("COMPLIANCE", now + datetime.timedelta(minutes=30)),
                        ("GOVERNANCE", now + datetime.timedelta(hours=5))]:
        code = error_code(lambda: s3.put_object_retention(
            Bucket="locked", Key="c", VersionId=c, BypassGovernanceRetention=True,
            Retention={"Mode": mode, "RetainUntilDate": until}))
        check(code == "AccessDenied", f"COMPLIANCE changed to {mode} until {until}: {code}")
    later = now + datetime.timedelta(hours=2)
    s3.put_object_retention(Bucket="locked", Key="c", VersionId=c,
                            Retention={"Mode": "COMPLIANCE", "RetainUntilDate": later})
    got = s3.get_object_retention(Bucket="locked", Key="c", VersionId=c)["Retention"]
    check(got["Mode"] == "COMPLIANCE" and abs((got["RetainUntilDate"] - later).total_seconds()) < 1,
          f"extended: {got}")
    # Deleting without a version id only adds a marker.
    m = s3.delete_object(Bucket="locked", Key="c")
    check(m.get("DeleteMarker") is True, f"marker over a locked version: {m}")
    check(s3.get_object(Bucket="locked", Key="c", VersionId=c)["Body"].read() == b"c",
          "the locked version stays readable")

    # Lock headers on CopyObject and CreateMultipartUpload.
    s3.copy_object(Bucket="locked", Key="copied", CopySource={"Bucket": "locked", "Key": "c", "VersionId": c},
                   ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=hour, ObjectLockLegalHoldStatus="ON")
    h = s3.head_object(Bucket="locked", Key="copied")
    check(h["ObjectLockMode"] == "GOVERNANCE" and h["ObjectLockLegalHoldStatus"] == "ON", f"copy: {h}")
    up = s3.create_multipart_upload(Bucket="locked", Key="mpu", ObjectLockMode="GOVERNANCE",
                                    ObjectLockRetainUntilDate=hour)["UploadId"]
    p1 = s3.upload_part(Bucket="locked", Key="mpu", UploadId=up, PartNumber=1, Body=b"part")
    s3.complete_multipart_upload(Bucket="locked", Key="mpu", UploadId=up,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]})
    h = s3.head_object(Bucket="locked", Key="mpu")
    check(h["ObjectLockMode"] == "GOVERNANCE" and "ObjectLockLegalHoldStatus" not in h, f"multipart: {h}")

    # Default retention (GOVERNANCE, 1 day) on an existing versioned
    # bucket, where `other` may read and write but is no owner.
    s3.put_bucket_versioning(Bucket="lockable", VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket="lockable", Key="lc/b-free", Body=b"1")
    s3.put_object(Bucket="lockable", Key="lc/b-free", Body=b"2")
    s3.put_object_lock_configuration(Bucket="lockable", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    conf = s3.get_object_lock_configuration(Bucket="lockable")["ObjectLockConfiguration"]
    check(conf["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 1}, f"default retention: {conf}")
    g = other.put_object(Bucket="lockable", Key="g", Body=b"g")["VersionId"]
    h = other.head_object(Bucket="lockable", Key="g")
    day = now + datetime.timedelta(days=1)
    check(h["ObjectLockMode"] == "GOVERNANCE" and abs((h["ObjectLockRetainUntilDate"] - day).total_seconds()) < 120,
          f"default retention applied: {h}")
    code = error_code(lambda: s3.delete_object(Bucket="lockable", Key="g", VersionId=g))
    check(code == "AccessDenied", f"GOVERNANCE without bypass: {code}")
    code = error_code(lambda: other.delete_object(Bucket="lockable", Key="g", VersionId=g,
                                                  BypassGovernanceRetention=True))
    check(code == "AccessDenied", f"a key without the owner permission cannot bypass: {code}")
    code = error_code(lambda: other.put_object_retention(Bucket="lockable", Key="g", VersionId=g,
                                                         BypassGovernanceRetention=True, Retention={}))
    check(code == "AccessDenied", f"nor remove the retention: {code}")
    # Legal hold: blocks even the bypass until removed.
    other.put_object_legal_hold(Bucket="lockable", Key="g", VersionId=g, LegalHold={"Status": "ON"})
    check(s3.get_object_legal_hold(Bucket="lockable", Key="g", VersionId=g)["LegalHold"]["Status"] == "ON", "hold on")
    check(s3.head_object(Bucket="lockable", Key="g")["ObjectLockLegalHoldStatus"] == "ON", "hold on HEAD")
    code = error_code(lambda: s3.delete_object(Bucket="lockable", Key="g", VersionId=g,
                                               BypassGovernanceRetention=True))
    check(code == "AccessDenied", f"a legal hold blocks the bypass: {code}")
    s3.put_object_legal_hold(Bucket="lockable", Key="g", VersionId=g, LegalHold={"Status": "OFF"})
    s3.delete_object(Bucket="lockable", Key="g", VersionId=g, BypassGovernanceRetention=True)
    check(error_code(lambda: s3.head_object(Bucket="lockable", Key="g", VersionId=g)) == "404",
          "an owner bypasses GOVERNANCE")
    # An owner may shorten GOVERNANCE with the bypass, and remove it.
    g2 = s3.put_object(Bucket="lockable", Key="g2", Body=b"g2")["VersionId"]
    s3.put_object_retention(Bucket="lockable", Key="g2", VersionId=g2, BypassGovernanceRetention=True, Retention={})
    s3.delete_object(Bucket="lockable", Key="g2", VersionId=g2)

    # Lifecycle: a locked version stays past its NoncurrentDays; a free one
    # (written before the default retention) goes. Keys are handled in
    # order, so once the free one is gone the locked one was seen.
    s3.put_object(Bucket="lockable", Key="lc/a-held", Body=b"1")
    s3.put_object(Bucket="lockable", Key="lc/a-held", Body=b"2")
    s3.put_bucket_lifecycle_configuration(Bucket="lockable", LifecycleConfiguration={"Rules": [
        {"ID": "lc", "Filter": {"Prefix": "lc/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}]})
    wait_until("the unlocked old version to go",
               lambda: len(versions_of(s3, "lc/b-free", Bucket="lockable")[0]) == 1)
    check(len(versions_of(s3, "lc/a-held", Bucket="lockable")[0]) == 2, "lifecycle left the locked version")
    print("ok object lock")


def restic():
    """restic backs up into a versioned, object-locked bucket, checks,
    prunes and restores; then what its prune deleted (a snapshot file and
    the data only it used) is brought back from the previous versions with
    the aws CLI, and the pruned snapshot restores again."""
    import json
    import shutil
    import tempfile
    from compat import make_tree, read_tree, run
    from client import ENDPOINT
    s3 = client()
    s3.create_bucket(Bucket="backups", ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(Bucket="backups", ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    tmp = tempfile.mkdtemp()
    try:
        env = {
            "AWS_ACCESS_KEY_ID": os.environ["HANGAR_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": os.environ["HANGAR_KEY_SECRET"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "RESTIC_PASSWORD": "correct horse battery staple",
            "RESTIC_REPOSITORY": f"s3:{ENDPOINT}/backups/repo",
            "RESTIC_CACHE_DIR": os.path.join(tmp, "cache"),
        }
        src = os.path.join(tmp, "src")
        first = make_tree(src)
        run(["restic", "init"], env)
        run(["restic", "backup", "--json", src], env)
        with open(os.path.join(src, "docs", "new.txt"), "wb") as f:
            f.write(b"written after the first backup")
        os.remove(os.path.join(src, "big.bin"))
        second = read_tree(src)
        run(["restic", "backup", src], env)
        snaps = json.loads(run(["restic", "snapshots", "--json"], env))
        check(len(snaps) == 2, f"two snapshots: {snaps}")
        old_id = sorted(snaps, key=lambda s: s["time"])[0]["id"]
        run(["restic", "check", "--read-data"], env)
        # Forget the first snapshot and prune what only it used.
        run(["restic", "forget", "--keep-last", "1", "--prune"], env)
        run(["restic", "check"], env)
        snaps = json.loads(run(["restic", "snapshots", "--json"], env))
        check([s["id"] for s in snaps] != [old_id] and len(snaps) == 1, f"one snapshot left: {snaps}")
        out = os.path.join(tmp, "restored")
        run(["restic", "restore", "latest", "--target", out], env)
        check(read_tree(out + src) == second, "the latest snapshot restores")

        # The snapshot file deleted by forget: its previous version, with
        # the aws CLI.
        aws = ["aws", "--endpoint-url", ENDPOINT, "s3api"]
        listed = json.loads(run(aws + ["list-object-versions", "--bucket", "backups",
                                       "--prefix", f"repo/snapshots/{old_id}"], env))
        markers = [m for m in listed.get("DeleteMarkers", []) if m["IsLatest"]]
        check(len(markers) == 1, f"the snapshot file is under a delete marker: {listed}")
        previous = [v for v in listed["Versions"] if v["Key"] == markers[0]["Key"]][0]["VersionId"]
        saved = os.path.join(tmp, "snapshot")
        run(aws + ["get-object", "--bucket", "backups", "--key", markers[0]["Key"],
                   "--version-id", previous, saved], env)
        run(aws + ["put-object", "--bucket", "backups", "--key", markers[0]["Key"], "--body", saved], env)
        # The data and indexes prune deleted: remove their delete markers
        # (not the lock files', which restic deleted when done).
        listed = json.loads(run(aws + ["list-object-versions", "--bucket", "backups", "--prefix", "repo/"], env))
        for m in listed.get("DeleteMarkers", []):
            if m["IsLatest"] and m["Key"].startswith(("repo/data/", "repo/index/")):
                run(aws + ["delete-object", "--bucket", "backups", "--key", m["Key"],
                           "--version-id", m["VersionId"]], env)
        snaps = json.loads(run(["restic", "snapshots", "--json"], env))
        check(old_id in [s["id"] for s in snaps], f"the pruned snapshot is back: {snaps}")
        run(["restic", "check", "--read-data"], env)
        back = os.path.join(tmp, "back")
        run(["restic", "restore", old_id, "--target", back], env)
        check(read_tree(back + src) == first, "the pruned snapshot restores whole")
        # The backup's versions are locked: not even the owner deletes one
        # without the bypass.
        v = listed["Versions"][0]
        code = error_code(lambda: s3.delete_object(Bucket="backups", Key=v["Key"], VersionId=v["VersionId"]))
        check(code == "AccessDenied", f"a locked backup version: {code}")
    finally:
        shutil.rmtree(tmp)
    print("ok restic")


def endpoint_clients(endpoints):
    return [client_at(e) for e in endpoints.split(",")]


def client_at(endpoint):
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ["HANGAR_KEY_ID"],
        aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                      signature_version="s3v4"))


def listing_of(s3, prefix):
    """Every entry of a bucket's version listing under `prefix`, in the
    server's order (pages of 7, so markers are exercised too)."""
    out, km, vm = [], None, None
    while True:
        kw = {"MaxKeys": 7}
        if km is not None:
            kw["KeyMarker"] = km
            if vm is not None:
                kw["VersionIdMarker"] = vm
        page, r = versions_of(s3, prefix, **kw)
        out += page
        if not r["IsTruncated"]:
            return out
        km, vm = r["NextKeyMarker"], r.get("NextVersionIdMarker")


def race(endpoints, rounds):
    """Two writers of one key through two nodes, at once, `rounds` times:
    both get versions, and every node lists them in the same order and
    reads the same latest."""
    import concurrent.futures
    clients = endpoint_clients(endpoints)
    pool = concurrent.futures.ThreadPoolExecutor(2)
    made = {}
    for r in range(int(rounds)):
        key = f"race/{r:03}"
        bodies = [f"{key} via node {i}".encode() for i in range(2)]
        futures = [pool.submit(clients[i].put_object, Bucket=BUCKET, Key=key, Body=bodies[i])
                   for i in range(2)]
        made[key] = {f.result()["VersionId"]: bodies[i] for i, f in enumerate(futures)}
        check(len(made[key]) == 2, f"{key}: two versions {made[key]}")
    listings = [listing_of(s3, "race/") for s3 in clients]
    for i, l in enumerate(listings):
        check(l == listings[0], f"node {i} lists the versions differently:\n{l}\n{listings[0]}")
    for key, ids in made.items():
        entries = [e for e in listings[0] if e[0] == key]
        check({e[1] for e in entries} == set(ids) and entries[0][2], f"{key}: both versions listed: {entries}")
        latest = entries[0][1]
        for i, s3 in enumerate(clients):
            got = s3.get_object(Bucket=BUCKET, Key=key)
            check(got["VersionId"] == latest and got["Body"].read() == ids[latest],
                  f"{key}: node {i} reads the latest {latest}")
    print(f"ok {rounds} races: both writers kept, one order everywhere")


def hot(endpoints, count, key, progress):
    """Two writers, each writing `count` versions of one key through its
    own node at the same time (a line in `progress` per write): every
    version is kept and every node lists them alike."""
    import concurrent.futures
    count = int(count)
    clients = endpoint_clients(endpoints)[:2]

    def writer(i):
        ids = []
        for n in range(count):
            ids.append(clients[i].put_object(Bucket=BUCKET, Key=key, Body=f"{i}:{n}".encode())["VersionId"])
            with open(progress, "a") as f:
                f.write(f"{i} {n}\n")
        return ids

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        made = [f.result() for f in [pool.submit(writer, i) for i in range(2)]]
    listing = listing_of(clients[0], key)
    ids = [e[1] for e in listing]
    check(len(ids) == 2 * count and set(ids) == set(made[0]) | set(made[1]),
          f"{len(ids)} versions listed, {2 * count} written")
    # Each writer's versions in the order it wrote them (newest first).
    for i in range(2):
        mine = [v for v in ids if v in set(made[i])]
        check(mine == made[i][::-1], f"writer {i}'s versions out of order")
    print(f"ok {2 * count} versions of {key} from 2 writers")


def away(endpoint):
    """Writes while a node is cut off: new versions, markers, deletes by
    id, and a suspended bucket's null versions."""
    s3 = client_at(endpoint)
    for r in range(0, 20):
        key = f"race/{r:03}"
        if r % 3 == 0:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"while away")
        elif r % 3 == 1:
            s3.delete_object(Bucket=BUCKET, Key=key)
        else:
            oldest = listing_of(s3, key)[-1][1]
            s3.delete_object(Bucket=BUCKET, Key=key, VersionId=oldest)
    print("ok writes while a node was away")


def same_everywhere(endpoints, prefix="race/"):
    clients = endpoint_clients(endpoints)
    listings = [listing_of(s3, prefix) for s3 in clients]
    for i, l in enumerate(listings):
        check(l == listings[0], f"node {i} lists the versions differently")
    print(f"ok {len(listings[0])} versions listed alike through {len(clients)} nodes")


def quorum_state(s3):
    """What a user can see of the bucket: every version's body, tags and
    place in the listing, the bucket's versioning and tags."""
    listed = listing_of(s3, "q/")
    seen = {}
    for key, vid, latest, kind in listed:
        if kind == "v":
            got = s3.get_object(Bucket=BUCKET, Key=key, VersionId=vid)
            tags = s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=vid)["TagSet"]
            seen[f"{key} {vid}"] = (hashlib.sha256(got["Body"].read()).hexdigest(), got["ContentLength"],
                                   sorted((t["Key"], t["Value"]) for t in tags))
    return {
        "listing": [list(e) for e in listed],
        "versions": seen,
        "versioning": s3.get_bucket_versioning(Bucket=BUCKET).get("Status"),
    }


# Every write a user may try on a versioned bucket, as (name, call).
def quorum_writes(s3, ids):
    big = data_for("q/big-refused", 3 * MIB + 5)
    return [
        ("PutObject small", lambda: s3.put_object(Bucket=BUCKET, Key="q/a", Body=b"refused")),
        ("PutObject of 3 blocks", lambda: s3.put_object(Bucket=BUCKET, Key="q/big", Body=big)),
        ("PutObject new key", lambda: s3.put_object(Bucket=BUCKET, Key="q/new", Body=b"refused")),
        ("PutObjectTagging", lambda: s3.put_object_tagging(
            Bucket=BUCKET, Key="q/a", VersionId=ids["a1"],
            Tagging={"TagSet": [{"Key": "t", "Value": "refused"}]})),
        ("DeleteObjectTagging", lambda: s3.delete_object_tagging(Bucket=BUCKET, Key="q/a", VersionId=ids["a1"])),
        ("DeleteObject (marker)", lambda: s3.delete_object(Bucket=BUCKET, Key="q/a")),
        ("DeleteObject by id", lambda: s3.delete_object(Bucket=BUCKET, Key="q/a", VersionId=ids["a1"])),
        ("DeleteObjects", lambda: s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "q/big"}]})),
        ("CopyObject", lambda: s3.copy_object(Bucket=BUCKET, Key="q/copy",
                                              CopySource={"Bucket": BUCKET, "Key": "q/a", "VersionId": ids["a1"]})),
        ("CreateMultipartUpload", lambda: s3.create_multipart_upload(Bucket=BUCKET, Key="q/mpu")),
    ]


def quorum_reads(s3, ids):
    return [
        ("GetObject", lambda: s3.get_object(Bucket=BUCKET, Key="q/a")["Body"].read()),
        ("GetObject by id", lambda: s3.get_object(Bucket=BUCKET, Key="q/a", VersionId=ids["a1"])["Body"].read()),
        ("HeadObject", lambda: s3.head_object(Bucket=BUCKET, Key="q/big")),
        ("GetObjectTagging", lambda: s3.get_object_tagging(Bucket=BUCKET, Key="q/a", VersionId=ids["a1"])),
        ("ListObjectsV2", lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="q/")),
        ("ListObjectVersions", lambda: s3.list_object_versions(Bucket=BUCKET, Prefix="q/")),
    ]


def quorum(phase, state_file):
    """Versioned writes and tags while two of three nodes are down.
    `before`: versions, tags and a multi-block object, acknowledged, and
    what a user sees of them saved to `state_file`. `down` (two nodes
    killed): every write and read is refused with 503 ServiceUnavailable
    saying why, promptly. `after` (the nodes back, metadata converged):
    what was acknowledged is all there as it was; a refused write left
    nothing half-done (whatever is listed reads back whole)."""
    import json
    s3 = client()
    if phase == "before":
        ids = {"a1": s3.put_object(Bucket=BUCKET, Key="q/a", Body=b"a1")["VersionId"]}
        ids["a2"] = s3.put_object(Bucket=BUCKET, Key="q/a", Body=b"a2",
                                  Tagging="kept=yes")["VersionId"]
        s3.put_object_tagging(Bucket=BUCKET, Key="q/a", VersionId=ids["a1"],
                              Tagging={"TagSet": [{"Key": "t", "Value": "acknowledged"}]})
        ids["big"] = s3.put_object(Bucket=BUCKET, Key="q/big", Body=data_for("q/big", 3 * MIB + 1))["VersionId"]
        with open(state_file, "w") as f:
            json.dump({"ids": ids, "state": quorum_state(s3)}, f)
        print(f"ok acknowledged before: {sorted(ids)}")
        return
    with open(state_file) as f:
        saved = json.load(f)
    ids = saved["ids"]
    if phase == "down":
        for name, call in quorum_writes(s3, ids) + quorum_reads(s3, ids):
            try:
                call()
                check(False, f"{name} succeeded with two of three nodes down")
            except botocore.exceptions.ClientError as e:
                err = e.response["Error"]
                status = e.response["ResponseMetadata"]["HTTPStatusCode"]
                # HEAD has no body to say why.
                check(status == 503 and (name.startswith("Head") or (
                    err["Code"] == "ServiceUnavailable" and "refused before sending anything" in err["Message"])),
                    f"{name}: {status} {err}")
        print("ok every write and read refused: 503, the replicas away named")
        return
    now = json.loads(json.dumps(quorum_state(s3)))  # tuples as the saved lists
    want = saved["state"]
    for name in ("listing", "versions", "versioning"):
        check(now[name] == want[name],
              f"{name} after the nodes came back:\n{json.dumps(now[name])}\nbefore:\n{json.dumps(want[name])}")
    print(f"ok {len(want['versions'])} versions and their tags as acknowledged, no refused write came back")

if __name__ == "__main__":
    scenario = sys.argv[1]
    args = sys.argv[2:]
    {
        "versions": versions,
        "listing": listing,
        "lifecycle": lifecycle,
        "lock": lock,
        "restic": restic,
        "race": lambda: race(*args),
        "away": lambda: away(*args),
        "hot": lambda: hot(*args),
        "same": lambda: same_everywhere(*args),
        "quorum": lambda: quorum(*args),
    }[scenario]()
