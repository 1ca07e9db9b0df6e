#!/usr/bin/env python3
"""S3 compatibility scenarios (issue #5) with boto3, run by
tests/tests/e2e/compat.rs against real agents. Same conventions as
client.py: SCENARIO [ARGS], settings from the environment, non-zero exit
with a message on the first failed check.
"""
import hashlib
import sys

from client import BUCKET, check, client, data_for, error_code

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
    check(code == "InvalidArgument", f"copy range past the end: {code}")
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


if __name__ == "__main__":
    scenario = sys.argv[1]
    args = sys.argv[2:]
    {
        "multipart": multipart,
    }[scenario]()
