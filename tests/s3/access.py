#!/usr/bin/env python3
"""Public access with boto3 (issue 19): ACLs, bucket policies, Block
Public Access, anonymous requests, x-amz-expected-bucket-owner. Run by
tests/tests/e2e/access.rs against real agents. Same conventions as
client.py; HANGAR_OTHER_KEY_ID / _SECRET is a key with no permission of
its own on the bucket, HANGAR_KEY_NAME the main key's name.
"""
import json
import os
import sys
import urllib.error
import urllib.request

import boto3
import botocore
import urllib3
from botocore.config import Config

from client import BUCKET, ENDPOINT, check, client, error_code

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def anonymous():
    return boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                        config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1},
                                      s3={"addressing_style": "path"}))


def other():
    return client(os.environ["HANGAR_OTHER_KEY_ID"], os.environ["HANGAR_OTHER_KEY_SECRET"])


def curl(path, method="GET", data=None):
    """Status and body of a plain unsigned HTTP request (what a browser does)."""
    req = urllib.request.Request(f"{ENDPOINT}/{path}", method=method, data=data)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def reads(s3, key, bucket=BUCKET):
    """The body, or the error code."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]


def grants(acl):
    """{(grantee, permission)} of a Get*Acl answer, the owner's aside."""
    out = set()
    for g in acl["Grants"]:
        who = g["Grantee"].get("URI") or g["Grantee"].get("ID")
        out.add((who, g["Permission"]))
    return out


def acl():
    s3, anon, them = client(), anonymous(), other()
    me = os.environ["HANGAR_KEY_ID"]
    # Private by default: anonymous and keys without permission refused,
    # with the same answer whether the object exists or not.
    s3.put_object(Bucket=BUCKET, Key="private", Body=b"secret")
    check(reads(anon, "private") == "AccessDenied", "anonymous GET of a private object")
    check(reads(anon, "missing") == "AccessDenied", "anonymous GET of a missing one: 403 too")
    check(curl(f"{BUCKET}/private")[0] == 403, "a browser gets 403")
    check(reads(them, "private") == "AccessDenied", "a key without permission")
    code = error_code(lambda: anon.list_objects_v2(Bucket=BUCKET))
    check(code == "AccessDenied", f"anonymous listing: {code}")
    code = error_code(lambda: anon.list_buckets())
    check(code == "AccessDenied", f"anonymous ListBuckets: {code}")
    code = error_code(lambda: anon.get_object(Bucket="no-such-bucket", Key="x"))
    check(code == "NoSuchBucket", f"a missing bucket is missing for everyone: {code}")

    # public-read on an object: anyone reads it, no one else writes.
    s3.put_object(Bucket=BUCKET, Key="pub", Body=b"hello world", ACL="public-read")
    check(reads(anon, "pub") == b"hello world", "anonymous GET of a public-read object")
    check(curl(f"{BUCKET}/pub") == (200, b"hello world"), "a browser fetches it")
    check(anon.head_object(Bucket=BUCKET, Key="pub")["ContentLength"] == 11, "anonymous HEAD")
    code = error_code(lambda: anon.put_object(Bucket=BUCKET, Key="pub", Body=b"defaced"))
    check(code == "AccessDenied", f"anonymous overwrite refused: {code}")
    check(reads(s3, "pub") == b"hello world", "nothing written")
    a = s3.get_object_acl(Bucket=BUCKET, Key="pub")
    check(a["Owner"]["ID"] == me and a["Owner"]["DisplayName"] == os.environ["HANGAR_KEY_NAME"],
          f"the owner is the creating key, named: {a['Owner']}")
    check(grants(a) == {(me, "FULL_CONTROL"), (ALL_USERS, "READ")}, f"grants: {grants(a)}")
    # Back to private, by canned ACL.
    s3.put_object_acl(Bucket=BUCKET, Key="pub", ACL="private")
    check(reads(anon, "pub") == "AccessDenied", "private again")
    check(grants(s3.get_object_acl(Bucket=BUCKET, Key="pub")) == {(me, "FULL_CONTROL")}, "only the owner")
    # The XML body: a grant to AllUsers.
    s3.put_object_acl(Bucket=BUCKET, Key="pub", AccessControlPolicy={
        "Owner": {"ID": me},
        "Grants": [{"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
                   {"Grantee": {"Type": "CanonicalUser", "ID": me}, "Permission": "FULL_CONTROL"}]})
    check(reads(anon, "pub") == b"hello world", "public again through an AccessControlPolicy body")
    # Grant headers: one key by id.
    s3.put_object(Bucket=BUCKET, Key="shared", Body=b"for them")
    s3.put_object_acl(Bucket=BUCKET, Key="shared", GrantRead=f'id="{os.environ["HANGAR_OTHER_KEY_ID"]}"')
    check(reads(them, "shared") == b"for them", "a key granted READ by id reads it")
    check(reads(anon, "shared") == "AccessDenied", "not anonymous")
    check(reads(them, "private") == "AccessDenied", "nor the other objects")
    # authenticated-read: any valid key, not anonymous.
    s3.put_object(Bucket=BUCKET, Key="members", Body=b"members only", ACL="authenticated-read")
    check(reads(them, "members") == b"members only", "authenticated-read: any key")
    check(reads(anon, "members") == "AccessDenied", "authenticated-read: not anonymous")
    # A wrong signature is not anonymous.
    bad = client(os.environ["HANGAR_OTHER_KEY_ID"], "not-the-secret")
    check(reads(bad, "pub") == "SignatureDoesNotMatch", "a bad signature is refused, even on a public object")
    # Copies and multipart uploads take their own ACL.
    s3.copy_object(Bucket=BUCKET, Key="pub-copy", CopySource={"Bucket": BUCKET, "Key": "pub"})
    check(reads(anon, "pub-copy") == "AccessDenied", "a copy is private unless asked")
    s3.copy_object(Bucket=BUCKET, Key="pub-copy", CopySource={"Bucket": BUCKET, "Key": "private"},
                   ACL="public-read")
    check(reads(anon, "pub-copy") == b"secret", "a copy made public-read")
    up = s3.create_multipart_upload(Bucket=BUCKET, Key="mp", ACL="public-read")
    p = s3.upload_part(Bucket=BUCKET, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"parts")
    s3.complete_multipart_upload(Bucket=BUCKET, Key="mp", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    check(reads(anon, "mp") == b"parts", "a multipart upload created public-read")
    # A copy needs read on its source: an object ACL grant is enough.
    them_copy = error_code(lambda: them.copy_object(Bucket=BUCKET, Key="x", CopySource={"Bucket": BUCKET, "Key": "private"}))
    check(them_copy == "AccessDenied", f"copy without read or write: {them_copy}")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="bad-acl", Body=b"x", ACL="world-readable"))
    check(code == "InvalidArgument", f"an unknown canned ACL: {code}")

    # Bucket ACLs: READ lists (objects still need their own), WRITE writes.
    s3.put_bucket_acl(Bucket=BUCKET, ACL="public-read")
    check(grants(s3.get_bucket_acl(Bucket=BUCKET)) == {(me, "FULL_CONTROL"), (ALL_USERS, "READ")}, "bucket ACL")
    keys = [o["Key"] for o in anon.list_objects_v2(Bucket=BUCKET)["Contents"]]
    check("private" in keys and "pub" in keys, f"anonymous listing of a public-read bucket: {keys}")
    check(reads(anon, "private") == "AccessDenied", "a public-read bucket's private objects stay private")
    check(reads(anon, "missing") == "NoSuchKey", "with listing allowed, a missing key is 404")
    s3.put_bucket_acl(Bucket=BUCKET, ACL="public-read-write")
    anon.put_object(Bucket=BUCKET, Key="dropbox/anon.txt", Body=b"from anyone")
    check(reads(s3, "dropbox/anon.txt") == b"from anyone", "an anonymous write to a public-read-write bucket")
    s3.put_bucket_acl(Bucket=BUCKET, ACL="private")
    code = error_code(lambda: anon.list_objects_v2(Bucket=BUCKET))
    check(code == "AccessDenied", f"private bucket again: {code}")
    code = error_code(lambda: them.put_bucket_acl(Bucket=BUCKET, ACL="public-read"))
    check(code == "AccessDenied", f"only owners change a bucket ACL: {code}")
    # A bucket created public-read.
    s3.create_bucket(Bucket="born-public", ACL="public-read")
    check((ALL_USERS, "READ") in grants(s3.get_bucket_acl(Bucket="born-public")), "CreateBucket with an ACL")
    check("Contents" not in anon.list_objects_v2(Bucket="born-public"), "anyone lists it")

    # Block Public Access.
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    got = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    check(got["BlockPublicAcls"] and not got["IgnorePublicAcls"], f"settings read back: {got}")
    code = error_code(lambda: s3.put_object(Bucket=BUCKET, Key="new-pub", Body=b"x", ACL="public-read"))
    check(code == "AccessDenied", f"BlockPublicAcls refuses a public ACL: {code}")
    check(error_code(lambda: s3.head_object(Bucket=BUCKET, Key="new-pub")) == "404", "nothing stored")
    code = error_code(lambda: s3.put_object_acl(Bucket=BUCKET, Key="private", ACL="public-read"))
    check(code == "AccessDenied", f"BlockPublicAcls refuses PutObjectAcl: {code}")
    check(reads(anon, "pub") == b"hello world", "existing public ACLs still work without IgnorePublicAcls")
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": True, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": False})
    check(reads(anon, "pub") == "AccessDenied", "IgnorePublicAcls: existing public ACLs ignored")
    check(reads(them, "shared") == b"for them", "grants to a key are not public")
    s3.delete_public_access_block(Bucket=BUCKET)
    code = error_code(lambda: s3.get_public_access_block(Bucket=BUCKET))
    check(code == "NoSuchPublicAccessBlockConfiguration", f"deleted: {code}")
    check(reads(anon, "pub") == b"hello world", "public again")

    # x-amz-expected-bucket-owner.
    s3.head_bucket(Bucket=BUCKET, ExpectedBucketOwner=me)
    code = error_code(lambda: s3.head_bucket(Bucket=BUCKET, ExpectedBucketOwner="GKsomeoneelse"))
    check(code == "403", f"a wrong expected owner: {code}")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="pub", ExpectedBucketOwner="GKsomeoneelse"))
    check(code == "AccessDenied", f"a wrong expected owner on GET: {code}")
    print("ok acl")


def policy():
    s3, anon, them = client(), anonymous(), other()
    them_id = os.environ["HANGAR_OTHER_KEY_ID"]
    for k in ["public/a.txt", "public/b.txt", "private/c.txt", "keep/d.txt", "drop/e.txt"]:
        s3.put_object(Bucket=BUCKET, Key=k, Body=k.encode())
    code = error_code(lambda: s3.get_bucket_policy(Bucket=BUCKET))
    check(code == "NoSuchBucketPolicy", f"no policy yet: {code}")
    public_read = {"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{BUCKET}/public/*"]}]}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read))
    check(json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]) == public_read, "GetBucketPolicy")
    check(s3.get_bucket_policy_status(Bucket=BUCKET)["PolicyStatus"]["IsPublic"], "IsPublic")
    check(reads(anon, "public/a.txt") == b"public/a.txt", "the policy lets anyone read public/")
    check(curl(f"{BUCKET}/public/b.txt") == (200, b"public/b.txt"), "a browser too")
    check(reads(anon, "private/c.txt") == "AccessDenied", "not private/")
    code = error_code(lambda: anon.put_object(Bucket=BUCKET, Key="public/x", Body=b"x"))
    check(code == "AccessDenied", f"nor writes: {code}")
    code = error_code(lambda: anon.list_objects_v2(Bucket=BUCKET))
    check(code == "AccessDenied", f"nor listing: {code}")

    # Listing by prefix and source address; an explicit Deny wins over a
    # key's own permission (Hangar's write) and over Allow statements.
    me_id = os.environ["HANGAR_KEY_ID"]
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/public/*"},
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"StringLike": {"s3:prefix": "public/*"}, "IpAddress": {"aws:SourceIp": ["127.0.0.0/8", "::1/128"]}}},
        {"Effect": "Deny", "Principal": {"AWS": [f"arn:aws:iam::000000000000:user/{me_id}"]},
         "Action": ["s3:DeleteObject"], "Resource": f"arn:aws:s3:::{BUCKET}/keep/*"},
    ]}))
    listed = [o["Key"] for o in anon.list_objects_v2(Bucket=BUCKET, Prefix="public/")["Contents"]]
    check(listed == ["public/a.txt", "public/b.txt"], f"anonymous listing under public/: {listed}")
    code = error_code(lambda: anon.list_objects_v2(Bucket=BUCKET, Prefix="private/"))
    check(code == "AccessDenied", f"not under private/: {code}")
    code = error_code(lambda: s3.delete_object(Bucket=BUCKET, Key="keep/d.txt"))
    check(code == "AccessDenied", f"Deny wins over the key's write permission: {code}")
    check(reads(s3, "keep/d.txt") == b"keep/d.txt", "the object stays")
    s3.delete_object(Bucket=BUCKET, Key="drop/e.txt")
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "keep/d.txt"}, {"Key": "public/b.txt"}]})
    check([d["Key"] for d in r.get("Deleted", [])] == ["public/b.txt"], f"DeleteObjects deletes what it may: {r}")
    check([(e["Key"], e["Code"]) for e in r.get("Errors", [])] == [("keep/d.txt", "AccessDenied")],
          f"and refuses the rest, key by key: {r.get('Errors')}")
    # Only source addresses outside the range: the listing Allow no longer applies.
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}))
    check(not s3.get_bucket_policy_status(Bucket=BUCKET)["PolicyStatus"]["IsPublic"], "address-bound: not public")
    code = error_code(lambda: anon.list_objects_v2(Bucket=BUCKET))
    check(code == "AccessDenied", f"refused from another address: {code}")
    # Principals by key id: grants to one key only; NotPrincipal.
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": them_id}, "Action": ["s3:GetObject", "s3:PutObject"],
         "Resource": f"arn:aws:s3:::{BUCKET}/shared/*"},
        {"Effect": "Deny", "NotPrincipal": {"AWS": me_id}, "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/shared/secret*"}]}))
    them.put_object(Bucket=BUCKET, Key="shared/from-them", Body=b"theirs")
    check(reads(s3, "shared/from-them") == b"theirs", "a key allowed by the policy wrote")
    check(reads(them, "private/c.txt") == "AccessDenied", "only where the policy says")
    s3.put_object(Bucket=BUCKET, Key="shared/secret.txt", Body=b"s")
    check(reads(them, "shared/secret.txt") == "AccessDenied", "NotPrincipal Deny refuses everyone else")
    check(reads(s3, "shared/secret.txt") == b"s", "but not the key it names")
    check(reads(anon, "shared/from-them") == "AccessDenied", "anonymous is not that key")

    # Malformed policies are refused and change nothing.
    for bad in ["not json",
                json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                           "Resource": "arn:aws:s3:::some-other-bucket/*"}]}),
                json.dumps({"Statement": [{"Effect": "Perhaps", "Principal": "*", "Action": "s3:GetObject",
                                           "Resource": f"arn:aws:s3:::{BUCKET}/*"}]})]:
        code = error_code(lambda: s3.put_bucket_policy(Bucket=BUCKET, Policy=bad))
        check(code == "MalformedPolicy", f"malformed policy: {code} for {bad[:60]}")
    check(reads(them, "shared/from-them") == b"theirs", "the policy in force stays")
    code = error_code(lambda: them.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read)))
    check(code == "AccessDenied", f"only owners set policies: {code}")

    # Reads naming a version are s3:GetObjectVersion, deletes
    # s3:DeleteObjectVersion: a policy can keep older versions out of reach.
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": ["s3:GetObjectVersion", "s3:DeleteObjectVersion"],
         "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
    check(reads(s3, "public/a.txt") == b"public/a.txt", "a plain GET is s3:GetObject")
    code = error_code(lambda: s3.get_object(Bucket=BUCKET, Key="public/a.txt", VersionId="null"))
    check(code == "AccessDenied", f"a GET naming a version is s3:GetObjectVersion: {code}")
    code = error_code(lambda: s3.copy_object(Bucket=BUCKET, Key="copied",
                                             CopySource={"Bucket": BUCKET, "Key": "public/a.txt", "VersionId": "null"}))
    check(code == "AccessDenied", f"a copy source naming a version too: {code}")
    code = error_code(lambda: s3.delete_object(Bucket=BUCKET, Key="public/a.txt", VersionId="null"))
    check(code == "AccessDenied", f"a DELETE naming a version is s3:DeleteObjectVersion: {code}")
    r = s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "public/a.txt", "VersionId": "null"}]})
    check([e["Code"] for e in r.get("Errors", [])] == ["AccessDenied"], f"in DeleteObjects too: {r}")
    check(reads(s3, "public/a.txt") == b"public/a.txt", "still there")

    # Block Public Access and policies.
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": False})
    code = error_code(lambda: s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read)))
    check(code == "AccessDenied", f"BlockPublicPolicy refuses a public policy: {code}")
    s3.delete_public_access_block(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read))
    check(reads(anon, "public/a.txt") == b"public/a.txt", "public policy in force")
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": False, "IgnorePublicAcls": False, "BlockPublicPolicy": False,
        "RestrictPublicBuckets": True})
    check(reads(anon, "public/a.txt") == "AccessDenied", "RestrictPublicBuckets: the public policy is ignored")
    s3.delete_public_access_block(Bucket=BUCKET)
    s3.delete_bucket_policy(Bucket=BUCKET)
    code = error_code(lambda: s3.get_bucket_policy(Bucket=BUCKET))
    check(code == "NoSuchBucketPolicy", f"deleted: {code}")
    check(reads(anon, "public/a.txt") == "AccessDenied", "private without its policy")
    print("ok policy")


def form_post(fields, file_data, filename="upload.bin", content_type="application/octet-stream", bucket=BUCKET):
    """POST a form as a browser does: fields in order, then the file.
    Status, headers and body."""
    body, ctype = urllib3.encode_multipart_formdata(
        list(fields.items()) + [("file", (filename, file_data, content_type))])
    r = urllib3.PoolManager().request("POST", f"{ENDPOINT}/{bucket}", body=body,
                                      headers={"Content-Type": ctype}, redirect=False)
    return r.status, r.headers, r.data


def post():
    """Browser form uploads: boto3's presigned POST (SigV4), a SigV2 form,
    an unsigned one, and forms that break their policy (nothing stored)."""
    s3, them = client(), other()
    head_status = lambda k: error_code(lambda: s3.head_object(Bucket=BUCKET, Key=k)) or "200"
    p = s3.generate_presigned_post(BUCKET, "forms/${filename}", ExpiresIn=600,
                                   Fields={"acl": "public-read", "Content-Type": "image/png",
                                           "success_action_status": "201", "x-amz-meta-origin": "form"},
                                   Conditions=[{"acl": "public-read"}, ["starts-with", "$Content-Type", "image/"],
                                               {"success_action_status": "201"}, {"x-amz-meta-origin": "form"},
                                               ["content-length-range", 1, 100_000]])
    status, headers, body = form_post(p["fields"], b"\x89PNG picture", filename="cat.png", content_type="image/png")
    check(status == 201 and b"<Key>forms/cat.png</Key>" in body, f"presigned POST: {status} {body[:300]}")
    h = s3.head_object(Bucket=BUCKET, Key="forms/cat.png")
    check(h["ContentType"] == "image/png" and h["Metadata"] == {"origin": "form"}, f"stored as asked: {h}")
    check(h["ETag"] == headers.get("ETag"), "the ETag answered")
    check(reads(anonymous(), "forms/cat.png") == b"\x89PNG picture", "its acl field made it public-read")

    def refused(fields, data=b"x" * 10, filename="f.png", expect_code=None, expect_status=None, key="forms/f.png"):
        status, _, body = form_post(fields, data, filename=filename)
        ok = (expect_status is None or status == expect_status) and (
            expect_code is None or f"<Code>{expect_code}</Code>".encode() in body)
        check(ok, f"refused form: {status} {body[:300]}")
        check(head_status(key) == "404", f"nothing stored at {key}")

    # Breaking the policy: another key prefix, a field not in it, a file
    # too large, a tampered policy, a wrong content type, a bad signature.
    p = s3.generate_presigned_post(BUCKET, "forms/f.png", ExpiresIn=600,
                                   Conditions=[["content-length-range", 5, 50]])
    bad = dict(p["fields"], key="elsewhere/f.png")
    refused(bad, expect_code="AccessDenied", key="elsewhere/f.png")
    refused(dict(p["fields"], **{"x-amz-meta-extra": "1"}), expect_code="AccessDenied")
    refused(p["fields"], data=b"x" * 51, expect_code="EntityTooLarge")
    refused(p["fields"], data=b"x" * 4, expect_code="EntityTooSmall")
    tampered = dict(p["fields"], policy=p["fields"]["policy"][:-4] + "AAA=")
    refused(tampered, expect_status=403)
    refused(dict(p["fields"], **{"x-amz-signature": "0" * 64}), expect_code="SignatureDoesNotMatch")
    status, _, body = form_post(p["fields"], b"x" * 10)
    check(status == 204, f"the same form, within its rules: {status} {body[:200]}")
    # An expired policy.
    p = s3.generate_presigned_post(BUCKET, "forms/late", ExpiresIn=-10)
    refused(p["fields"], expect_code="AccessDenied", key="forms/late")
    # No file, no key, not multipart.
    body_no_file, ctype = urllib3.encode_multipart_formdata([("key", "forms/nofile")])
    r = urllib3.PoolManager().request("POST", f"{ENDPOINT}/{BUCKET}", body=body_no_file,
                                      headers={"Content-Type": ctype})
    check(r.status == 400 and b"InvalidArgument" in r.data, f"a form without a file: {r.status} {r.data[:200]}")
    p = s3.generate_presigned_post(BUCKET, "forms/k", ExpiresIn=600)
    nokey = {k: v for k, v in p["fields"].items() if k != "key"}
    refused(nokey, expect_code="InvalidArgument", key="forms/k")
    r = urllib3.PoolManager().request("POST", f"{ENDPOINT}/{BUCKET}", body=b"--nonsense\r\n",
                                      headers={"Content-Type": "multipart/form-data; boundary=zzz"})
    check(r.status == 400, f"a broken multipart body: {r.status} {r.data[:200]}")
    # success_action_redirect.
    p = s3.generate_presigned_post(BUCKET, "forms/r.txt", ExpiresIn=600,
                                   Fields={"success_action_redirect": "https://example.org/done"},
                                   Conditions=[{"success_action_redirect": "https://example.org/done"}])
    status, headers, _ = form_post(p["fields"], b"redirected")
    check(status == 303 and headers["Location"].startswith("https://example.org/done?bucket=test&key=forms%2Fr.txt"),
          f"redirect: {status} {headers.get('Location')}")
    # Unsigned forms: refused on a private bucket, accepted where anyone may write.
    refused({"key": "forms/anon.txt"}, expect_code="AccessDenied", key="forms/anon.txt")
    s3.put_bucket_acl(Bucket=BUCKET, ACL="public-read-write")
    status, _, _ = form_post({"key": "forms/anon.txt"}, b"anyone")
    check(status == 204 and reads(s3, "forms/anon.txt") == b"anyone", f"anonymous form on a public-read-write bucket: {status}")
    s3.put_bucket_acl(Bucket=BUCKET, ACL="private")
    # A key without write permission signs in vain.
    p = them.generate_presigned_post(BUCKET, "forms/theirs", ExpiresIn=600)
    refused(p["fields"], expect_code="AccessDenied", key="forms/theirs")
    # SigV2 forms (boto3 signs them with SigV2 when told).
    v2 = boto3.client("s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                      aws_access_key_id=os.environ["HANGAR_KEY_ID"],
                      aws_secret_access_key=os.environ["HANGAR_KEY_SECRET"],
                      config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    p = v2.generate_presigned_post(BUCKET, "forms/v2.txt", ExpiresIn=600)
    check("AWSAccessKeyId" in p["fields"] and "signature" in p["fields"], f"a SigV2 form: {p['fields']}")
    status, _, body = form_post(p["fields"], b"signed v2")
    check(status == 204 and reads(s3, "forms/v2.txt") == b"signed v2", f"SigV2 form: {status} {body[:200]}")
    refused(dict(p["fields"], signature="AAAA"), expect_code="SignatureDoesNotMatch", key="forms/v2-bad")
    print("ok post")


def minio_sdk():
    """The MinIO Python SDK: a presigned POST policy, uploaded with a
    form; and its ordinary calls."""
    import datetime
    from minio import Minio
    from minio.datatypes import PostPolicy
    host = ENDPOINT.split("://", 1)[1]
    mc = Minio(host, access_key=os.environ["HANGAR_KEY_ID"], secret_key=os.environ["HANGAR_KEY_SECRET"],
               secure=False, region="us-east-1")
    policy = PostPolicy(BUCKET, datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10))
    policy.add_starts_with_condition("key", "minio/")
    policy.add_content_length_range_condition(1, 1 << 20)
    fields = mc.presigned_post_policy(policy)
    data = os.urandom(300_000)
    status, _, body = form_post(dict(fields, key="minio/photo.jpg"), data, filename="photo.jpg")
    check(status == 204, f"MinIO presigned POST: {status} {body[:300]}")
    got = mc.get_object(BUCKET, "minio/photo.jpg")
    check(got.read() == data, "the uploaded content")
    status, _, body = form_post(dict(fields, key="elsewhere/photo.jpg"), data)
    check(status == 403, f"outside the policy's prefix: {status}")
    status, _, body = form_post(dict(fields, key="minio/big.bin"), os.urandom((1 << 20) + 1))
    check(status == 400 and b"EntityTooLarge" in body, f"over the policy's size: {status}")
    import io
    mc.put_object(BUCKET, "minio/put.txt", io.BytesIO(b"from minio"), 10)
    check([o.object_name for o in mc.list_objects(BUCKET, prefix="minio/")] == ["minio/photo.jpg", "minio/put.txt"],
          "MinIO lists what it stored")
    check(mc.stat_object(BUCKET, "minio/put.txt").size == 10, "stat")
    print("ok minio")


def s3cmd():
    """s3cmd: sync a tree up and down, then make a file public with
    `setacl --acl-public` and fetch it without a key."""
    import subprocess
    import tempfile
    host = ENDPOINT.split("://", 1)[1]
    tmp = tempfile.mkdtemp()
    cfg = os.path.join(tmp, "s3cfg")
    with open(cfg, "w") as f:
        f.write(f"""[default]
access_key = {os.environ["HANGAR_KEY_ID"]}
secret_key = {os.environ["HANGAR_KEY_SECRET"]}
host_base = {host}
host_bucket = {host}
use_https = False
signature_v2 = False
bucket_location = us-east-1
""")
    run = lambda *args: subprocess.run(["s3cmd", "-c", cfg, *args], check=True, capture_output=True, text=True).stdout
    up = os.path.join(tmp, "up")
    os.makedirs(os.path.join(up, "sub"))
    files = {"a.txt": b"alpha", "sub/b.bin": os.urandom(200_000), "sub/c.txt": b"gamma" * 1000}
    for name, data in files.items():
        with open(os.path.join(up, name), "wb") as f:
            f.write(data)
    run("sync", up + "/", f"s3://{BUCKET}/s3cmd/")
    s3 = client()
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="s3cmd/")["Contents"])
    check(listed == sorted(f"s3cmd/{n}" for n in files), f"s3cmd sync up: {listed}")
    down = os.path.join(tmp, "down")
    run("sync", f"s3://{BUCKET}/s3cmd/", down + "/")
    for name, data in files.items():
        with open(os.path.join(down, name), "rb") as f:
            check(f.read() == data, f"s3cmd sync down: {name}")
    check(curl(f"{BUCKET}/s3cmd/a.txt")[0] == 403, "private before setacl")
    run("setacl", "--acl-public", f"s3://{BUCKET}/s3cmd/a.txt")
    check(curl(f"{BUCKET}/s3cmd/a.txt") == (200, b"alpha"), "public after s3cmd setacl --acl-public")
    info = run("info", f"s3://{BUCKET}/s3cmd/a.txt")
    check("*anon*: READ" in info, f"s3cmd info shows the public grant: {info}")
    run("setacl", "--acl-private", f"s3://{BUCKET}/s3cmd/a.txt")
    check(curl(f"{BUCKET}/s3cmd/a.txt")[0] == 403, "private again after --acl-private")
    print("ok s3cmd")


def put_watched():
    client().put_object(Bucket=BUCKET, Key="watched", Body=b"watched")
    print("ok put")


def revoke_watch():
    """GET `watched` through every node of $HANGAR_S3_ENDPOINTS in turn,
    without pause. Prints "warm" once each node has served it (then the
    test revokes the key's read permission through one node), and ends
    once each node has refused it for 3 s in a row, printing per node the
    start time of its last success and of its first refusal (Unix
    seconds). Any other answer fails."""
    import time
    from client import endpoint_clients
    endpoints, clients = endpoint_clients(len(os.environ["HANGAR_S3_ENDPOINTS"].split(",")))
    n = len(clients)
    last_ok, first_refused, refused_since = [None] * n, [None] * n, [None] * n
    warm, deadline = False, time.time() + 90
    while time.time() < deadline:
        for i, c in enumerate(clients):
            t = time.time()
            try:
                check(c.get_object(Bucket=BUCKET, Key="watched")["Body"].read() == b"watched", "content")
                last_ok[i], refused_since[i] = t, None
            except botocore.exceptions.ClientError as e:
                code = e.response["Error"]["Code"]
                check(code == "AccessDenied", f"node {i} answered {code}")
                first_refused[i] = first_refused[i] or t
                refused_since[i] = refused_since[i] or t
        if not warm and all(last_ok):
            print("warm", flush=True)
            warm = True
        if all(r is not None and time.time() - r > 3 for r in refused_since):
            break
    for i in range(n):
        check(last_ok[i] is not None and first_refused[i] is not None, f"node {i}: {last_ok[i]} {first_refused[i]}")
        print(f"node {i} last_ok {last_ok[i]:.3f} first_refused {first_refused[i]:.3f}", flush=True)


def config_race(rounds):
    """Bucket settings changed at once through two nodes, `rounds` times:
    two policies racing (the same setting), and tags and CORS rules set
    beside them (other settings of the same bucket). After each round
    every node of $HANGAR_S3_ENDPOINTS answers the same policy, one of the
    two, and enforces it alike for anonymous readers; the tags and CORS
    rules are the round's (no setting lost to a concurrent change of
    another). Nodes reuse a looked-up bucket for up to 2 s, hence the
    polling."""
    import concurrent.futures
    import time
    from client import endpoint_clients
    endpoints, clients = endpoint_clients(len(os.environ["HANGAR_S3_ENDPOINTS"].split(",")))
    anons = [boto3.client("s3", endpoint_url=e, region_name="us-east-1",
                          config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1},
                                        s3={"addressing_style": "path"})) for e in endpoints]
    for k in ("pa/x", "pb/x"):
        clients[0].put_object(Bucket=BUCKET, Key=k, Body=k.encode())

    def public(prefix, r):
        return {"Version": "2012-10-17", "Statement": [{
            "Sid": f"round{r}", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{BUCKET}/{prefix}/*"]}]}

    pool = concurrent.futures.ThreadPoolExecutor(4)
    wins = {"pa": 0, "pb": 0}
    for r in range(int(rounds)):
        pa, pb = public("pa", r), public("pb", r)
        tags = [{"Key": "round", "Value": str(r)}]
        cors = [{"AllowedOrigins": [f"https://r{r}.example"], "AllowedMethods": ["GET"]}]
        futures = [
            pool.submit(clients[0].put_bucket_policy, Bucket=BUCKET, Policy=json.dumps(pa)),
            pool.submit(clients[1].put_bucket_policy, Bucket=BUCKET, Policy=json.dumps(pb)),
            pool.submit(clients[0].put_bucket_tagging, Bucket=BUCKET, Tagging={"TagSet": tags}),
            pool.submit(clients[1].put_bucket_cors, Bucket=BUCKET, CORSConfiguration={"CORSRules": cors}),
        ]
        for f in futures:
            f.result()

        def settled():
            seen = []
            for c, anon in zip(clients, anons):
                policy = json.loads(c.get_bucket_policy(Bucket=BUCKET)["Policy"])
                if c.get_bucket_tagging(Bucket=BUCKET)["TagSet"] != tags:
                    return None
                got = c.get_bucket_cors(Bucket=BUCKET)["CORSRules"]
                if [(x["AllowedOrigins"], x["AllowedMethods"]) for x in got] != [(y["AllowedOrigins"], y["AllowedMethods"]) for y in cors]:
                    return None
                seen.append((json.dumps(policy, sort_keys=True), reads(anon, "pa/x"), reads(anon, "pb/x")))
            return seen[0] if all(x == seen[0] for x in seen) else None

        end = time.monotonic() + 20
        while (state := settled()) is None:
            check(time.monotonic() < end, f"round {r}: the nodes never agreed on the bucket's settings")
            time.sleep(0.2)
        policy, a, b = state
        winner = "pa" if policy == json.dumps(pa, sort_keys=True) else "pb"
        check(policy in (json.dumps(pa, sort_keys=True), json.dumps(pb, sort_keys=True)),
              f"round {r}: a policy nobody wrote this round: {policy}")
        want = (b"pa/x", "AccessDenied") if winner == "pa" else ("AccessDenied", b"pb/x")
        check((a, b) == want, f"round {r}: policy {winner} enforced as {(a, b)}")
        wins[winner] += 1
    print(f"ok {rounds} rounds of racing bucket settings: one policy everywhere each time "
          f"({wins['pa']} / {wins['pb']}), tags and CORS rules never lost")


if __name__ == "__main__":
    {"acl": acl, "policy": policy, "revoke_watch": revoke_watch, "put_watched": put_watched, "config_race": lambda: config_race(*sys.argv[2:]), "post": post, "minio": minio_sdk, "s3cmd": s3cmd}[sys.argv[1]]()
