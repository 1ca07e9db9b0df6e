//! S3 additional checksums (`x-amz-checksum-*`): CRC32, CRC32C,
//! CRC64NVME, SHA-1 and SHA-256. A checksum a client gives with a PUT or a
//! part (as a header, or in the trailer of an aws-chunked body) is
//! verified, kept with the object, and returned on GET and HEAD with
//! `x-amz-checksum-mode: ENABLED`.
//!
//! A multipart object's checksum is either COMPOSITE (the checksum of the
//! parts' checksums, shown `value-N`) or FULL_OBJECT (the CRC of the whole
//! object, computed from the parts' CRCs without reading the data: CRCs
//! combine). AWS's defaults: FULL_OBJECT for CRC64NVME, COMPOSITE for the
//! others; SHA checksums cannot be FULL_OBJECT over parts.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::Digest;

use super::error::S3Error;
use crate::model::tables::{ChecksumAlgorithm, PartInfo, StoredChecksum};

/// Every algorithm, in the order S3 documents them.
pub(crate) const ALGORITHMS: [ChecksumAlgorithm; 5] = [
    ChecksumAlgorithm::Crc32,
    ChecksumAlgorithm::Crc32c,
    ChecksumAlgorithm::Crc64Nvme,
    ChecksumAlgorithm::Sha1,
    ChecksumAlgorithm::Sha256,
];

fn invalid_request(msg: impl Into<String>) -> S3Error {
    S3Error::invalid_request(msg)
}

impl ChecksumAlgorithm {
    /// As S3 names it (`CRC32`, `CRC64NVME`...).
    pub(crate) fn s3_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The header carrying a value (`x-amz-checksum-crc32`...).
    pub(crate) fn header(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The XML element of a value (`ChecksumCRC32`...).
    pub(crate) fn element(self) -> String {
        format!("Checksum{}", self.s3_name())
    }

    /// From S3's name, in any case.
    pub(crate) fn parse(name: &str) -> Option<ChecksumAlgorithm> {
        ALGORITHMS
            .into_iter()
            .find(|a| a.s3_name().eq_ignore_ascii_case(name.trim()))
    }

    /// From a value header's name.
    pub(crate) fn from_header(name: &str) -> Option<ChecksumAlgorithm> {
        ALGORITHMS
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }

    fn crc(self) -> Option<crc_fast::CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(crc_fast::CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(crc_fast::CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }

    /// Bytes of a value.
    fn len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    pub(crate) fn hasher(self) -> Hasher {
        match self.crc() {
            Some(c) => Hasher::Crc(self, crc_fast::Digest::new(c)),
            None if self == ChecksumAlgorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            None => Hasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// The checksum of `data`, raw.
    #[cfg(test)]
    pub(crate) fn of(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish().value
    }
}

/// A checksum being computed over a body.
pub(crate) enum Hasher {
    Crc(ChecksumAlgorithm, crc_fast::Digest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub(crate) fn algorithm(&self) -> ChecksumAlgorithm {
        match self {
            Hasher::Crc(a, _) => *a,
            Hasher::Sha1(_) => ChecksumAlgorithm::Sha1,
            Hasher::Sha256(_) => ChecksumAlgorithm::Sha256,
        }
    }

    pub(crate) fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(_, d) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub(crate) fn finish(self) -> StoredChecksum {
        let (algorithm, value) = match self {
            Hasher::Crc(a, d) => {
                let v = d.finalize();
                let bytes = if a.len() == 4 {
                    (v as u32).to_be_bytes().to_vec()
                } else {
                    v.to_be_bytes().to_vec()
                };
                (a, bytes)
            }
            Hasher::Sha1(h) => (ChecksumAlgorithm::Sha1, h.finalize().to_vec()),
            Hasher::Sha256(h) => (ChecksumAlgorithm::Sha256, h.finalize().to_vec()),
        };
        StoredChecksum {
            algorithm,
            value,
            parts: 0,
        }
    }
}

impl StoredChecksum {
    /// As headers and XML show it: base64, with `-N` when composite.
    pub(crate) fn shown(&self) -> String {
        let b64 = BASE64.encode(&self.value);
        if self.parts > 0 {
            format!("{b64}-{}", self.parts)
        } else {
            b64
        }
    }

    /// `FULL_OBJECT` or `COMPOSITE`.
    pub(crate) fn kind(&self) -> &'static str {
        if self.parts > 0 {
            "COMPOSITE"
        } else {
            "FULL_OBJECT"
        }
    }
}

/// Decode a base64 value given for `algorithm` (an `InvalidRequest` if it
/// is not one).
pub(crate) fn decode(algorithm: ChecksumAlgorithm, b64: &str) -> Result<Vec<u8>, S3Error> {
    let raw = BASE64
        .decode(b64.trim())
        .ok()
        .filter(|v| v.len() == algorithm.len())
        .ok_or_else(|| {
            invalid_request(format!(
                "Value for {} header is invalid.",
                algorithm.header()
            ))
        })?;
    Ok(raw)
}

/// The checksum a request asks to be verified: a value header
/// (`x-amz-checksum-crc32: ...`), else one announced for the trailer
/// (`x-amz-trailer: x-amz-checksum-crc32`), else the algorithm named by
/// `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm`. Two value
/// headers are refused, as S3 does.
#[derive(Debug)]
pub(crate) struct Requested {
    pub algorithm: ChecksumAlgorithm,
    /// The value given up front (raw), if any.
    pub expected: Option<Vec<u8>>,
    /// The value is to come in the body's trailer.
    pub trailer: bool,
}

pub(crate) fn requested(headers: &HeaderMap) -> Result<Option<Requested>, S3Error> {
    let mut given = headers
        .iter()
        .filter_map(|(k, v)| Some((ChecksumAlgorithm::from_header(k.as_str())?, v)));
    if let Some((algorithm, v)) = given.next() {
        if given.next().is_some() {
            return Err(invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
            ));
        }
        let v = v
            .to_str()
            .map_err(|_| invalid_request("a checksum header is not ASCII"))?;
        return Ok(Some(Requested {
            algorithm,
            expected: Some(decode(algorithm, v)?),
            trailer: false,
        }));
    }
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(t) = header("x-amz-trailer")
        && let Some(algorithm) = ChecksumAlgorithm::from_header(t)
    {
        return Ok(Some(Requested {
            algorithm,
            expected: None,
            trailer: true,
        }));
    }
    let named = header("x-amz-sdk-checksum-algorithm").or(header("x-amz-checksum-algorithm"));
    match named {
        None => Ok(None),
        Some(n) => {
            let algorithm = ChecksumAlgorithm::parse(n).ok_or_else(|| {
                invalid_request(format!("Checksum algorithm {n:?} is not supported"))
            })?;
            Ok(Some(Requested {
                algorithm,
                expected: None,
                trailer: false,
            }))
        }
    }
}

/// `x-amz-checksum-<algorithm>` (and, where S3 gives it, the type) of a
/// stored checksum.
pub(crate) fn add_checksum_headers(h: &mut HeaderMap, c: &StoredChecksum, with_type: bool) {
    if let Ok(v) = HeaderValue::from_str(&c.shown()) {
        h.insert(c.algorithm.header(), v);
    }
    if with_type {
        h.insert("x-amz-checksum-type", HeaderValue::from_static(c.kind()));
    }
}

/// The algorithm and type a CreateMultipartUpload asks for
/// (`x-amz-checksum-algorithm`, `x-amz-checksum-type`): (algorithm, full
/// object).
pub(crate) fn multipart_request(
    headers: &HeaderMap,
) -> Result<Option<(ChecksumAlgorithm, bool)>, S3Error> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let Some(name) = header("x-amz-checksum-algorithm") else {
        if header("x-amz-checksum-type").is_some() {
            return Err(invalid_request(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            ));
        }
        return Ok(None);
    };
    let algorithm = ChecksumAlgorithm::parse(name)
        .ok_or_else(|| invalid_request(format!("Checksum algorithm {name:?} is not supported")))?;
    let full = match header("x-amz-checksum-type") {
        None => algorithm == ChecksumAlgorithm::Crc64Nvme,
        Some(t) if t.eq_ignore_ascii_case("FULL_OBJECT") => true,
        Some(t) if t.eq_ignore_ascii_case("COMPOSITE") => false,
        Some(t) => {
            return Err(invalid_request(format!(
                "Unknown checksum type {t:?}: FULL_OBJECT or COMPOSITE"
            )));
        }
    };
    if full && algorithm.crc().is_none() {
        return Err(invalid_request(format!(
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            algorithm.s3_name()
        )));
    }
    if !full && algorithm == ChecksumAlgorithm::Crc64Nvme {
        return Err(invalid_request(
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm.",
        ));
    }
    Ok(Some((algorithm, full)))
}

/// A multipart object's checksum from its parts' (each of `algorithm`):
/// COMPOSITE, or FULL_OBJECT by combining CRCs. None if a part has none.
pub(crate) fn of_parts(
    algorithm: ChecksumAlgorithm,
    full: bool,
    parts: &[PartInfo],
) -> Option<StoredChecksum> {
    let sums: Vec<&StoredChecksum> = parts
        .iter()
        .map(|p| p.checksum.as_ref().filter(|c| c.algorithm == algorithm))
        .collect::<Option<_>>()?;
    if !full {
        let mut h = algorithm.hasher();
        for c in &sums {
            h.update(&c.value);
        }
        let mut c = h.finish();
        c.parts = parts.len() as u32;
        return Some(c);
    }
    let crc = algorithm.crc()?;
    let as_u64 = |v: &[u8]| v.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut acc: Option<u64> = None;
    for (p, c) in parts.iter().zip(&sums) {
        let v = as_u64(&c.value);
        acc = Some(match acc {
            None => v,
            Some(a) => crc_fast::checksum_combine(crc, a, v, p.size),
        });
    }
    let v = acc?;
    let value = if algorithm.len() == 4 {
        (v as u32).to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    };
    Some(StoredChecksum {
        algorithm,
        value,
        parts: 0,
    })
}

/// A given value that does not match.
pub(crate) fn bad_digest(algorithm: ChecksumAlgorithm) -> S3Error {
    S3Error::new(
        "BadDigest",
        StatusCode::BAD_REQUEST,
        format!(
            "The {} you specified did not match the calculated checksum.",
            algorithm.s3_name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(a: ChecksumAlgorithm, data: &[u8]) -> String {
        BASE64.encode(a.of(data))
    }

    #[test]
    fn checksums_match_known_values() {
        // The check values of each CRC's catalogue entry ("123456789").
        let check = |a: ChecksumAlgorithm| {
            a.of(b"123456789")
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        assert_eq!(check(ChecksumAlgorithm::Crc32), 0xCBF4_3926);
        assert_eq!(check(ChecksumAlgorithm::Crc32c), 0xE306_9283);
        assert_eq!(check(ChecksumAlgorithm::Crc64Nvme), 0xAE8B_1486_0A79_9888);
        // What AWS's documentation and SDKs show for "abc".
        assert_eq!(b64(ChecksumAlgorithm::Crc32, b"abc"), "NSRBwg==");
        assert_eq!(
            b64(ChecksumAlgorithm::Sha256, b""),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            b64(ChecksumAlgorithm::Sha1, b""),
            "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
        );
    }

    #[test]
    fn full_object_crcs_combine_from_parts() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [0usize, 30_000, 65_537, 100_000];
        for a in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let parts: Vec<PartInfo> = cuts
                .windows(2)
                .enumerate()
                .map(|(i, w)| PartInfo {
                    number: i as u32 + 1,
                    size: (w[1] - w[0]) as u64,
                    checksum: Some(StoredChecksum {
                        algorithm: a,
                        value: a.of(&data[w[0]..w[1]]),
                        parts: 0,
                    }),
                })
                .collect();
            let full = of_parts(a, true, &parts).expect("every part has one");
            assert_eq!(full.value, a.of(&data), "{a:?}");
            assert_eq!(full.kind(), "FULL_OBJECT");
            let composite = of_parts(a, false, &parts).expect("composite");
            assert_eq!(composite.parts, 3);
            assert!(composite.shown().ends_with("-3"));
            // A part without a checksum: none for the object.
            let mut missing = parts.clone();
            missing[1].checksum = None;
            assert_eq!(of_parts(a, true, &missing), None);
        }
    }

    #[test]
    fn requests_name_one_checksum() {
        let mut h = HeaderMap::new();
        assert!(requested(&h).unwrap().is_none());
        h.insert("x-amz-checksum-crc32", HeaderValue::from_static("NSRBwg=="));
        let r = requested(&h).unwrap().unwrap();
        assert_eq!(r.algorithm, ChecksumAlgorithm::Crc32);
        assert_eq!(r.expected, Some(ChecksumAlgorithm::Crc32.of(b"abc")));
        h.insert("x-amz-checksum-sha1", HeaderValue::from_static("AAAA"));
        assert!(requested(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-checksum-crc32",
            HeaderValue::from_static("not base64!"),
        );
        assert_eq!(requested(&h).unwrap_err().code, "InvalidRequest");
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-trailer",
            HeaderValue::from_static("x-amz-checksum-crc64nvme"),
        );
        let r = requested(&h).unwrap().unwrap();
        assert!(r.trailer && r.algorithm == ChecksumAlgorithm::Crc64Nvme);
    }

    #[test]
    fn multipart_types_follow_s3_defaults() {
        let ask = |alg: &str, kind: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-amz-checksum-algorithm",
                HeaderValue::from_str(alg).unwrap(),
            );
            if let Some(k) = kind {
                h.insert("x-amz-checksum-type", HeaderValue::from_str(k).unwrap());
            }
            multipart_request(&h)
        };
        assert_eq!(
            ask("CRC64NVME", None).unwrap(),
            Some((ChecksumAlgorithm::Crc64Nvme, true))
        );
        assert_eq!(
            ask("crc32", None).unwrap(),
            Some((ChecksumAlgorithm::Crc32, false))
        );
        assert_eq!(
            ask("CRC32C", Some("FULL_OBJECT")).unwrap(),
            Some((ChecksumAlgorithm::Crc32c, true))
        );
        assert!(ask("SHA256", Some("FULL_OBJECT")).is_err());
        assert!(ask("CRC64NVME", Some("COMPOSITE")).is_err());
        assert!(ask("MD5", None).is_err());
    }
}
