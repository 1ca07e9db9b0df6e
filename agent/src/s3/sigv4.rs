//! AWS Signature Version 4 verification for S3 requests.
//!
//! The flow is two-step because the secret key is looked up by access key:
//! [`parse_auth`] extracts who claims to have signed the request (header or
//! presigned-URL form), the caller finds that key's secret, then [`verify`]
//! recomputes the signature and checks the request time.
//!
//! S3 specifics that differ from the generic SigV4 description:
//! - the canonical URI is the path as sent, not normalised (`/a//b/./c` stays
//!   as is), and not encoded twice;
//! - `x-amz-content-sha256` is mandatory for header authentication and
//!   its value is the payload hash used in the canonical request; it also
//!   announces how the body is protected ([`PayloadMode`]);
//! - presigned URLs sign `UNSIGNED-PAYLOAD` unless the header is present.
//!
//! Reference: <https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-authenticating-requests.html>

use std::fmt;

use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode, percent_encode};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The only signing algorithm accepted (no SigV2, no SigV4a).
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Hex SHA-256 of the empty string: appears in chunk string-to-signs and is
/// what clients send as `x-amz-content-sha256` for bodiless requests.
pub const EMPTY_SHA256_HEX: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How far the request time may be from ours, as AWS allows: it bounds the
/// window in which a captured request can be replayed.
pub const MAX_CLOCK_SKEW_SECS: u64 = 15 * 60;

/// AWS caps presigned URL lifetimes at one week.
pub const MAX_PRESIGNED_EXPIRES_SECS: u64 = 7 * 24 * 60 * 60;

/// Characters SigV4 leaves unencoded (RFC 3986 unreserved); everything else
/// becomes `%XX` with uppercase hex, which is what `percent_encode` emits.
pub(crate) const AWS_URI_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

const CONTENT_SHA256_HEADER: &str = "x-amz-content-sha256";
const AMZ_DATE_HEADER: &str = "x-amz-date";

const Q_ALGORITHM: &[u8] = b"X-Amz-Algorithm";
const Q_CREDENTIAL: &[u8] = b"X-Amz-Credential";
const Q_DATE: &[u8] = b"X-Amz-Date";
const Q_EXPIRES: &[u8] = b"X-Amz-Expires";
const Q_SIGNED_HEADERS: &[u8] = b"X-Amz-SignedHeaders";
const Q_SIGNATURE: &[u8] = b"X-Amz-Signature";

/// Why a request failed authentication. Each variant maps to the S3 error
/// code clients know ([`AuthError::s3_code`]) and its HTTP status
/// ([`AuthError::status`]); the Display text is meant for the error
/// response's `<Message>` and says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header could not be parsed, or its credential
    /// scope is inconsistent with the request.
    #[error("the Authorization header is malformed: {0}")]
    AuthorizationHeaderMalformed(String),
    /// The presigned URL's `X-Amz-*` parameters are missing or invalid.
    #[error("the presigned URL's X-Amz-* query parameters are invalid: {0}")]
    AuthorizationQueryParametersError(String),
    /// A signing scheme we do not implement (SigV2, SigV4a, ...).
    #[error("{0}")]
    UnsupportedAuth(String),
    /// The request is well-formed but contradicts itself (for instance both
    /// header and query authentication).
    #[error("{0}")]
    InvalidArgument(String),
    /// `x-amz-content-sha256` has a value S3 does not define.
    #[error(
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, \
         STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER \
         or the 64 hex digits of the body's SHA-256, not {0:?}"
    )]
    InvalidContentSha256(String),
    /// A header S3 requires for signed requests is absent.
    #[error("missing required header for this request: {0}")]
    MissingSecurityHeader(&'static str),
    /// No usable request time.
    #[error(
        "AWS authentication requires a valid Date or x-amz-date header \
         (x-amz-date as YYYYMMDDTHHMMSSZ)"
    )]
    MissingDate,
    /// A header listed in SignedHeaders is not in the request.
    #[error("header {0:?} is listed in SignedHeaders but is not present in the request")]
    SignedHeaderMissing(String),
    /// The request time is more than [`MAX_CLOCK_SKEW_SECS`] from ours.
    #[error(
        "the difference between the request time ({request_time}) and the server time \
         ({server_time_unix} Unix seconds) is too large; check the client's clock"
    )]
    RequestTimeTooSkewed {
        request_time: String,
        server_time_unix: u64,
    },
    /// The presigned URL's lifetime is over.
    #[error(
        "request has expired: the presigned URL was valid until {expired_at_unix} Unix seconds"
    )]
    Expired { expired_at_unix: u64 },
    /// The presigned URL is dated in the future beyond the allowed skew.
    #[error("request is not valid yet: the presigned URL is dated {request_time}")]
    NotYetValid { request_time: String },
    /// Anonymous requests carry nothing to verify.
    #[error("the request is not signed")]
    NotSigned,
    /// The signature we computed differs from the client's.
    #[error(
        "the request signature we calculated does not match the signature you provided; \
         check your key and signing method"
    )]
    SignatureDoesNotMatch,
}

impl AuthError {
    /// The S3 error code (`<Code>` of the XML error) for this failure.
    pub(crate) fn s3_code(&self) -> &'static str {
        match self {
            AuthError::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthError::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            AuthError::UnsupportedAuth(_) => "InvalidRequest",
            AuthError::InvalidArgument(_) | AuthError::InvalidContentSha256(_) => "InvalidArgument",
            AuthError::MissingSecurityHeader(_) => "MissingSecurityHeader",
            AuthError::RequestTimeTooSkewed { .. } => "RequestTimeTooSkewed",
            AuthError::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            AuthError::MissingDate
            | AuthError::SignedHeaderMissing(_)
            | AuthError::Expired { .. }
            | AuthError::NotYetValid { .. }
            | AuthError::NotSigned => "AccessDenied",
        }
    }

    /// The HTTP status S3 answers with for this failure.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            AuthError::AuthorizationHeaderMalformed(_)
            | AuthError::AuthorizationQueryParametersError(_)
            | AuthError::UnsupportedAuth(_)
            | AuthError::InvalidArgument(_)
            | AuthError::InvalidContentSha256(_)
            | AuthError::MissingSecurityHeader(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

/// The credential scope the client signed with: `access/date/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// The region the client signed for; verification uses it as is (see [`verify`]).
    pub region: String,
    /// Always `s3` once parsed.
    pub service: String,
}

impl Credential {
    /// `date/region/service/aws4_request`, the scope line of string-to-signs.
    fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// What the `Authorization` header (or the presigned query) claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub credential: Credential,
    /// Lowercase header names, in the order the client listed them (clients
    /// sign that exact list, so it is kept as given).
    pub signed_headers: Vec<String>,
    /// Hex signature as sent.
    pub signature: String,
}

/// How the request claims to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKind {
    /// `Authorization: AWS4-HMAC-SHA256 ...`.
    Header(AuthHeader),
    /// Presigned URL (`X-Amz-Algorithm`, `X-Amz-Credential`, ... in the query).
    Query { auth: AuthHeader, expires_secs: u64 },
    /// Neither: only allowed where policy permits anonymous access.
    Anonymous,
}

/// How the body is protected, from `x-amz-content-sha256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// `UNSIGNED-PAYLOAD` (or presigned without the header): the body is not
    /// covered by the signature.
    Unsigned,
    /// The body must hash to this; the caller checks it once the body is in
    /// (S3 answers `XAmzContentSHA256Mismatch` otherwise).
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: aws-chunked, each chunk signed.
    StreamingSigned,
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: as above plus signed trailers.
    StreamingSignedTrailer,
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked without signatures,
    /// integrity comes from the trailing checksum.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Parses an `x-amz-content-sha256` value.
    pub(crate) fn parse(value: &[u8]) -> Result<PayloadMode, AuthError> {
        let mode = match value {
            b"UNSIGNED-PAYLOAD" => PayloadMode::Unsigned,
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD" => PayloadMode::StreamingSigned,
            b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER" => PayloadMode::StreamingSignedTrailer,
            b"STREAMING-UNSIGNED-PAYLOAD-TRAILER" => PayloadMode::StreamingUnsignedTrailer,
            _ => {
                let mut digest = [0u8; 32];
                hex::decode_to_slice(value, &mut digest).map_err(|_| {
                    AuthError::InvalidContentSha256(String::from_utf8_lossy(value).into_owned())
                })?;
                PayloadMode::Sha256(digest)
            }
        };
        Ok(mode)
    }

    /// Whether the body is `aws-chunked` framed (must go through the chunked decoder).
    pub(crate) fn is_chunked(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned
                | PayloadMode::StreamingSignedTrailer
                | PayloadMode::StreamingUnsignedTrailer
        )
    }

    /// Whether each chunk carries a signature chained from the seed.
    pub(crate) fn has_chunk_signatures(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned | PayloadMode::StreamingSignedTrailer
        )
    }

    /// Whether trailing headers follow the final chunk.
    pub(crate) fn has_trailer(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSignedTrailer | PayloadMode::StreamingUnsignedTrailer
        )
    }
}

/// What chunk signatures of a streaming-signed body chain from.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkSigningContext {
    /// The derived key for the request's date/region/service.
    pub signing_key: [u8; 32],
    /// `YYYYMMDDTHHMMSSZ`, the request's time.
    pub datetime: String,
    /// `date/region/s3/aws4_request`.
    pub scope: String,
    /// The request's own signature (lowercase hex): the first chunk's
    /// "previous signature".
    pub seed_signature: String,
}

/// Hand-written so the signing key never ends up in logs.
impl fmt::Debug for ChunkSigningContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkSigningContext")
            .field("signing_key", &"<redacted>")
            .field("datetime", &self.datetime)
            .field("scope", &self.scope)
            .field("seed_signature", &self.seed_signature)
            .finish()
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    /// The region the client signed for (may differ from ours, see [`verify`]).
    pub region: String,
    pub payload: PayloadMode,
    /// For streaming-signed bodies: what chunk signatures chain from.
    pub signing: Option<ChunkSigningContext>,
}

/// Reads how the request is authenticated, without checking anything that
/// needs the secret. Header and query authentication together are refused,
/// as S3 does.
pub(crate) fn parse_auth(uri: &Uri, headers: &HeaderMap) -> Result<AuthKind, AuthError> {
    let query = parse_query(uri.query().unwrap_or(""));
    let presigned = query
        .iter()
        .any(|(name, _)| name == Q_ALGORITHM || name == Q_SIGNATURE || name == Q_CREDENTIAL);
    let header = headers.get(http::header::AUTHORIZATION);
    match (header, presigned) {
        (Some(_), true) => Err(AuthError::InvalidArgument(
            "only one auth mechanism allowed: use either the Authorization header or the \
             X-Amz-* query parameters, not both"
                .into(),
        )),
        (Some(value), false) => parse_authorization_header(value.as_bytes()).map(AuthKind::Header),
        (None, true) => parse_presigned(&query),
        (None, false) => {
            // A SigV2 presigned URL: say so instead of treating it as anonymous.
            if query.iter().any(|(name, _)| name == b"AWSAccessKeyId") {
                return Err(AuthError::UnsupportedAuth(
                    "Signature Version 2 presigned URLs are not supported; presign with \
                     Signature Version 4"
                        .into(),
                ));
            }
            Ok(AuthKind::Anonymous)
        }
    }
}

fn parse_authorization_header(value: &[u8]) -> Result<AuthHeader, AuthError> {
    let malformed = |msg: &str| AuthError::AuthorizationHeaderMalformed(msg.to_string());
    let value = std::str::from_utf8(value).map_err(|_| malformed("it is not valid UTF-8"))?;
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(unsupported_algorithm(algorithm));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, val) = part
            .split_once('=')
            .ok_or_else(|| malformed(&format!("expected key=value, found {part:?}")))?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => return Err(malformed(&format!("unknown component {other:?}"))),
        };
        if slot.replace(val.trim()).is_some() {
            return Err(malformed(&format!("{} is given twice", key.trim())));
        }
    }
    let credential = credential.ok_or_else(|| malformed("missing Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| malformed("missing SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("missing Signature"))?;
    Ok(AuthHeader {
        credential: parse_credential(credential).map_err(|m| malformed(&m))?,
        signed_headers: parse_signed_headers(signed_headers).map_err(|m| malformed(&m))?,
        signature: parse_signature(signature).map_err(|m| malformed(&m))?,
    })
}

fn unsupported_algorithm(algorithm: &str) -> AuthError {
    let msg = match algorithm {
        "AWS" => "Signature Version 2 is not supported; sign requests with AWS4-HMAC-SHA256".into(),
        "AWS4-ECDSA-P256-SHA256" => {
            "Signature Version 4A is not supported; sign requests with AWS4-HMAC-SHA256".into()
        }
        other => format!("unsupported authorization algorithm {other:?}; use AWS4-HMAC-SHA256"),
    };
    AuthError::UnsupportedAuth(msg)
}

fn parse_presigned(query: &[(Vec<u8>, Vec<u8>)]) -> Result<AuthKind, AuthError> {
    let bad = |msg: String| AuthError::AuthorizationQueryParametersError(msg);
    let get = |name: &[u8]| -> Result<&str, AuthError> {
        let mut found = query.iter().filter(|(n, _)| n == name);
        let shown = String::from_utf8_lossy(name);
        let (_, value) = found
            .next()
            .ok_or_else(|| bad(format!("missing {shown}")))?;
        if found.next().is_some() {
            return Err(bad(format!("{shown} is given more than once")));
        }
        std::str::from_utf8(value).map_err(|_| bad(format!("{shown} is not valid UTF-8")))
    };
    let algorithm = get(Q_ALGORITHM)?;
    if algorithm != ALGORITHM {
        return Err(unsupported_algorithm(algorithm));
    }
    let credential = parse_credential(get(Q_CREDENTIAL)?).map_err(bad)?;
    let signed_headers = parse_signed_headers(get(Q_SIGNED_HEADERS)?).map_err(bad)?;
    let signature = parse_signature(get(Q_SIGNATURE)?).map_err(bad)?;
    // Parsed fully in `verify`; checked here so a URL missing it is malformed.
    get(Q_DATE)?;
    let expires = get(Q_EXPIRES)?;
    let expires_secs = expires
        .parse::<u64>()
        .ok()
        .filter(|_| expires.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            bad(format!(
                "X-Amz-Expires must be a number of seconds, not {expires:?}"
            ))
        })?;
    if expires_secs == 0 || expires_secs > MAX_PRESIGNED_EXPIRES_SECS {
        return Err(bad(format!(
            "X-Amz-Expires must be at least 1 and at most {MAX_PRESIGNED_EXPIRES_SECS} seconds (one week), \
             not {expires_secs}"
        )));
    }
    Ok(AuthKind::Query {
        auth: AuthHeader {
            credential,
            signed_headers,
            signature,
        },
        expires_secs,
    })
}

/// `AKID/YYYYMMDD/region/s3/aws4_request`. The access key is everything
/// before the last four components so the split cannot be confused by it.
fn parse_credential(value: &str) -> Result<Credential, String> {
    let mut parts = value.rsplitn(5, '/');
    let terminator = parts.next().unwrap_or("");
    let (Some(service), Some(region), Some(date), Some(access_key)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "Credential must be <access key>/<YYYYMMDD>/<region>/s3/aws4_request, not {value:?}"
        ));
    };
    if terminator != "aws4_request" {
        return Err(format!(
            "the credential scope must end with aws4_request, not {terminator:?}"
        ));
    }
    if service != "s3" {
        return Err(format!(
            "incorrect service {service:?} in the credential scope; this endpoint is s3"
        ));
    }
    if access_key.is_empty() {
        return Err("the credential has an empty access key".into());
    }
    if region.is_empty() {
        return Err("the credential has an empty region".into());
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "the credential date must be YYYYMMDD, not {date:?}"
        ));
    }
    Ok(Credential {
        access_key: access_key.to_string(),
        date: date.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

fn parse_signed_headers(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value
        .split(';')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(format!("SignedHeaders has an empty header name: {value:?}"));
    }
    Ok(names)
}

fn parse_signature(value: &str) -> Result<String, String> {
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the signature must be 64 hex digits, not {value:?}"
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// Verifies the request's signature with `secret_key`, `now_unix` being the
/// current time in Unix seconds.
///
/// The signature is checked against the region the client signed for (from
/// its credential scope), not a configured one: a client configured for the
/// "wrong" region is served rather than refused. This is deliberate — Hangar
/// is a single-region store and clients disagree on default regions
/// (`us-east-1`, `auto`, ...); the secret still authenticates the request.
pub(crate) fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    auth: &AuthKind,
    secret_key: &str,
    now_unix: u64,
) -> Result<Verified, AuthError> {
    let (auth, presigned_expires) = match auth {
        AuthKind::Header(auth) => (auth, None),
        AuthKind::Query { auth, expires_secs } => (auth, Some(*expires_secs)),
        AuthKind::Anonymous => return Err(AuthError::NotSigned),
    };
    let scope_error = |msg: String| match presigned_expires {
        None => AuthError::AuthorizationHeaderMalformed(msg),
        Some(_) => AuthError::AuthorizationQueryParametersError(msg),
    };
    let query = parse_query(uri.query().unwrap_or(""));

    // Request time.
    let datetime = match presigned_expires {
        None => header_datetime(headers)?,
        Some(_) => {
            let raw = query
                .iter()
                .find(|(n, _)| n == Q_DATE)
                .map(|(_, v)| v.as_slice())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(raw);
            parse_amz_date(&text)
                .map(|_| text.into_owned())
                .ok_or_else(|| {
                    AuthError::AuthorizationQueryParametersError(format!(
                        "X-Amz-Date must be YYYYMMDDTHHMMSSZ, not {:?}",
                        String::from_utf8_lossy(raw)
                    ))
                })?
        }
    };
    let request_unix = parse_amz_date(&datetime).ok_or(AuthError::MissingDate)?;
    if datetime[..8] != auth.credential.date {
        return Err(scope_error(format!(
            "the credential date {} does not match the request date {}",
            auth.credential.date,
            &datetime[..8]
        )));
    }
    match presigned_expires {
        None => {
            if request_unix.abs_diff(now_unix) > MAX_CLOCK_SKEW_SECS {
                return Err(AuthError::RequestTimeTooSkewed {
                    request_time: datetime,
                    server_time_unix: now_unix,
                });
            }
        }
        Some(expires) => {
            if request_unix > now_unix.saturating_add(MAX_CLOCK_SKEW_SECS) {
                return Err(AuthError::NotYetValid {
                    request_time: datetime,
                });
            }
            let expired_at_unix = request_unix.saturating_add(expires);
            if now_unix > expired_at_unix {
                return Err(AuthError::Expired { expired_at_unix });
            }
        }
    }

    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(scope_error(
            "the host header must be signed (listed in SignedHeaders)".into(),
        ));
    }

    // Payload hash as the client put it in its canonical request.
    let content_sha256 = headers.get(CONTENT_SHA256_HEADER).map(|v| v.as_bytes());
    let (payload, payload_hash): (PayloadMode, &[u8]) = match (content_sha256, presigned_expires) {
        (Some(value), _) => (PayloadMode::parse(value)?, value),
        (None, None) => return Err(AuthError::MissingSecurityHeader(CONTENT_SHA256_HEADER)),
        (None, Some(_)) => (PayloadMode::Unsigned, b"UNSIGNED-PAYLOAD"),
    };

    let canonical = canonical_request(
        method,
        uri,
        headers,
        &query,
        &auth.signed_headers,
        payload_hash,
        presigned_expires.is_some(),
    )?;
    let scope = auth.credential.scope();
    let string_to_sign = format!(
        "{ALGORITHM}\n{datetime}\n{scope}\n{}",
        hex::encode(Sha256::digest(&canonical))
    );
    let key = signing_key(
        secret_key,
        &auth.credential.date,
        &auth.credential.region,
        &auth.credential.service,
    );
    if !verify_signature(&key, string_to_sign.as_bytes(), &auth.signature) {
        return Err(AuthError::SignatureDoesNotMatch);
    }

    let signing = payload.has_chunk_signatures().then(|| ChunkSigningContext {
        signing_key: key,
        datetime,
        scope,
        seed_signature: auth.signature.clone(),
    });
    Ok(Verified {
        access_key: auth.credential.access_key.clone(),
        region: auth.credential.region.clone(),
        payload,
        signing,
    })
}

/// The request time from `x-amz-date`, else from `Date` (which SigV4
/// allows), as `YYYYMMDDTHHMMSSZ`.
fn header_datetime(headers: &HeaderMap) -> Result<String, AuthError> {
    if let Some(value) = headers.get(AMZ_DATE_HEADER) {
        let text = value.to_str().map_err(|_| AuthError::MissingDate)?;
        return parse_amz_date(text)
            .map(|_| text.to_string())
            .ok_or(AuthError::MissingDate);
    }
    let value = headers
        .get(http::header::DATE)
        .ok_or(AuthError::MissingDate)?;
    let text = value.to_str().map_err(|_| AuthError::MissingDate)?;
    parse_http_date(text).ok_or(AuthError::MissingDate)
}

/// Builds the canonical request (bytes: header values need not be UTF-8).
fn canonical_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    query: &[(Vec<u8>, Vec<u8>)],
    signed_headers: &[String],
    payload_hash: &[u8],
    presigned: bool,
) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(uri.path()).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(query, presigned).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = headers.get_all(name.as_str()).iter().peekable();
        if values.peek().is_none() {
            // HTTP/2 carries the host in :authority, which lands in the URI.
            match (name.as_str(), uri.authority()) {
                ("host", Some(authority)) => out.extend_from_slice(authority.as_str().as_bytes()),
                _ => return Err(AuthError::SignedHeaderMissing(name.clone())),
            }
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_trimmed_header_value(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash);
    Ok(out)
}

/// Trims surrounding whitespace and collapses inner runs of spaces to one,
/// as SigV4's canonical header values require.
fn push_trimmed_header_value(out: &mut Vec<u8>, value: &[u8]) {
    let is_ws = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ws(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    let mut previous_space = false;
    for &b in &value[start..end] {
        if b == b' ' {
            if !previous_space {
                out.push(b);
            }
            previous_space = true;
        } else {
            out.push(b);
            previous_space = false;
        }
    }
}

/// The path as the client sent it, segment by segment brought to AWS
/// encoding. Clients already send the path SigV4-encoded, so for them this
/// is the identity; decoding then re-encoding only fixes clients that left
/// a reserved character (`$`, `@`, ...) raw or used lowercase hex, in which
/// case they signed the encoded form. Splitting on the raw `/` first keeps
/// an encoded `%2F` inside a segment encoded. No normalisation (`.`/`..`,
/// repeated slashes) and no double encoding: S3 does neither.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(path.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let decoded: Vec<u8> = percent_decode(segment.as_bytes()).collect();
        out.extend(percent_encode(&decoded, AWS_URI_ENCODE));
    }
    out
}

/// Splits a raw query string into percent-decoded `(name, value)` pairs.
/// `+` stays a literal plus (RFC 3986); SigV4 clients encode spaces as `%20`.
fn parse_query(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(name.as_bytes()).collect(),
                percent_decode(value.as_bytes()).collect(),
            )
        })
        .collect()
}

/// Parameters sorted by encoded name then value, each side AWS-encoded,
/// `name=value` joined by `&` (a bare `name` becomes `name=`). The presigned
/// signature itself is not part of what it signs.
fn canonical_query(query: &[(Vec<u8>, Vec<u8>)], presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| !(presigned && name == Q_SIGNATURE))
        .map(|(name, value)| {
            (
                percent_encode(name, AWS_URI_ENCODE).to_string(),
                percent_encode(value, AWS_URI_ENCODE).to_string(),
            )
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Derives the SigV4 signing key: HMAC chain over date, region, service and
/// `aws4_request`, keyed first by `"AWS4" + secret`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// HMAC-SHA256 of `data` under `key`.
fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = new_mac(key);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `signature_hex` is HMAC-SHA256(`key`, `string_to_sign`). The
/// comparison runs in constant time (through `Mac::verify_slice`) so timing
/// does not reveal how many leading bytes of a forged signature were right.
pub(crate) fn verify_signature(key: &[u8], string_to_sign: &[u8], signature_hex: &str) -> bool {
    let mut expected = [0u8; 32];
    if hex::decode_to_slice(signature_hex, &mut expected).is_err() {
        return false;
    }
    let mut mac = new_mac(key);
    mac.update(string_to_sign);
    mac.verify_slice(&expected).is_ok()
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Parses `YYYYMMDDTHHMMSSZ` (ISO 8601 basic, UTC) to Unix seconds.
pub(crate) fn parse_amz_date(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    // On bytes: slicing the str could split a multi-byte character.
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    hangar_common::date::unix_secs(
        i64::from(num(0..4)?),
        num(4..6)?,
        num(6..8)?,
        num(9..11)?,
        num(11..13)?,
        num(13..15)?,
    )
}

/// Parses a `Date` header (`Fri, 24 May 2013 00:00:00 GMT`) into
/// `YYYYMMDDTHHMMSSZ`, for SDKs that sign with `Date` instead of
/// `X-Amz-Date`.
fn parse_http_date(text: &str) -> Option<String> {
    let t = httpdate::parse_http_date(text).ok()?;
    let secs = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs();
    Some(hangar_common::date::amz_date(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Request};

    const ACCESS: &str = "AKIAIOSFODNN7EXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATETIME: &str = "20130524T000000Z";
    /// 2013-05-24T00:00:00Z.
    const NOW: u64 = 1_369_353_600;

    fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
        let mut builder = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).expect("test request").into_parts();
        (parts.method, parts.uri, parts.headers)
    }

    fn auth_header(signed: &str, signature: &str) -> String {
        format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS}/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders={signed},Signature={signature}"
        )
    }

    fn check(req: &(Method, Uri, HeaderMap), now: u64) -> Result<Verified, AuthError> {
        let auth = parse_auth(&req.1, &req.2)?;
        verify(&req.0, &req.1, &req.2, &auth, SECRET, now)
    }

    /// Independent signer for the tests: the canonical request is written out
    /// literally by the test, only the HMAC chain is computed here.
    fn sign_canonical(canonical: &str, date: &str, datetime: &str, region: &str) -> String {
        let mac = |key: &[u8], data: &str| {
            let mut m = HmacSha256::new_from_slice(key).expect("hmac");
            m.update(data.as_bytes());
            m.finalize().into_bytes().to_vec()
        };
        let k = mac(format!("AWS4{SECRET}").as_bytes(), date);
        let k = mac(&k, region);
        let k = mac(&k, "s3");
        let k = mac(&k, "aws4_request");
        let sts = format!(
            "AWS4-HMAC-SHA256\n{datetime}\n{date}/{region}/s3/aws4_request\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        hex::encode(mac(&k, &sts))
    }

    // --- AWS published examples -------------------------------------------

    #[test]
    fn aws_example_get_object() {
        let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
        let req = request(
            "GET",
            "/test.txt",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("range", "bytes=0-9"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("x-amz-date", DATETIME),
                (
                    "authorization",
                    &auth_header("host;range;x-amz-content-sha256;x-amz-date", sig),
                ),
            ],
        );
        let verified = check(&req, NOW).expect("AWS example verifies");
        assert_eq!(verified.access_key, ACCESS);
        assert_eq!(verified.region, "us-east-1");
        assert_eq!(verified.signing, None);
        let mut empty = [0u8; 32];
        hex::decode_to_slice(EMPTY_SHA256_HEX, &mut empty).expect("hex");
        assert_eq!(verified.payload, PayloadMode::Sha256(empty));
    }

    #[test]
    fn aws_example_put_object() {
        let sig = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
        let req = request(
            "PUT",
            "/test%24file.text",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-date", DATETIME),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                (
                    "x-amz-content-sha256",
                    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                ),
                (
                    "authorization",
                    &auth_header(
                        "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                        sig,
                    ),
                ),
            ],
        );
        check(&req, NOW).expect("AWS example verifies");
        // A client that left `$` raw signed the encoded form all the same.
        let raw = request("PUT", "/test$file.text", &[]);
        let mut req = req;
        req.1 = raw.1;
        check(&req, NOW).expect("raw reserved character is canonicalised");
    }

    #[test]
    fn aws_example_get_bucket_lifecycle() {
        let sig = "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543";
        let req = request(
            "GET",
            "/?lifecycle",
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-date", DATETIME),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                (
                    "authorization",
                    &auth_header("host;x-amz-content-sha256;x-amz-date", sig),
                ),
            ],
        );
        check(&req, NOW).expect("AWS example verifies");
    }

    #[test]
    fn aws_example_list_objects() {
        let sig = "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7";
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-date", DATETIME),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
        ];
        let authorization = auth_header("host;x-amz-content-sha256;x-amz-date", sig);
        // Parameter order on the wire does not matter: they are sorted.
        for uri in ["/?max-keys=2&prefix=J", "/?prefix=J&max-keys=2"] {
            let mut all = headers.to_vec();
            all.push(("authorization", &authorization));
            check(&request("GET", uri, &all), NOW).expect("AWS example verifies");
        }
    }

    fn presigned_uri(signature: &str) -> String {
        format!(
            "https://examplebucket.s3.amazonaws.com/test.txt\
             ?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature={signature}"
        )
    }
    const PRESIGNED_SIG: &str = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

    #[test]
    fn aws_example_presigned_get() {
        let req = request(
            "GET",
            &presigned_uri(PRESIGNED_SIG),
            &[("host", "examplebucket.s3.amazonaws.com")],
        );
        let auth = parse_auth(&req.1, &req.2).expect("parses");
        let AuthKind::Query { expires_secs, .. } = &auth else {
            panic!("expected presigned auth, got {auth:?}");
        };
        assert_eq!(*expires_secs, 86_400);
        let verified = check(&req, NOW + 3600).expect("AWS example verifies");
        assert_eq!(verified.payload, PayloadMode::Unsigned);
        // Still valid at the last second, expired one second later.
        check(&req, NOW + 86_400).expect("valid until the end");
        assert_eq!(
            check(&req, NOW + 86_401),
            Err(AuthError::Expired {
                expired_at_unix: NOW + 86_400
            })
        );
        assert!(matches!(
            check(&req, NOW - 3600),
            Err(AuthError::NotYetValid { .. })
        ));
        // Tampering with any signed parameter breaks it.
        let tampered = request(
            "GET",
            &presigned_uri(PRESIGNED_SIG).replace("test.txt", "test2.txt"),
            &[("host", "examplebucket.s3.amazonaws.com")],
        );
        assert_eq!(check(&tampered, NOW), Err(AuthError::SignatureDoesNotMatch));
        let wrong_host = request(
            "GET",
            &presigned_uri(PRESIGNED_SIG),
            &[("host", "otherbucket.s3.amazonaws.com")],
        );
        assert_eq!(
            check(&wrong_host, NOW),
            Err(AuthError::SignatureDoesNotMatch)
        );
    }

    #[test]
    fn aws_example_streaming_seed_signature() {
        // From "Signature Calculation: Transferring Payload in Multiple Chunks".
        let sig = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        let req = request(
            "PUT",
            "/examplebucket/chunkObject.txt",
            &[
                ("host", "s3.amazonaws.com"),
                ("x-amz-date", DATETIME),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("content-encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", "66560"),
                ("content-length", "66824"),
                ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
                (
                    "authorization",
                    &auth_header(
                        "content-encoding;content-length;host;x-amz-content-sha256;\
                         x-amz-date;x-amz-decoded-content-length;x-amz-storage-class",
                        sig,
                    ),
                ),
            ],
        );
        let verified = check(&req, NOW).expect("AWS example verifies");
        assert_eq!(verified.payload, PayloadMode::StreamingSigned);
        let ctx = verified.signing.expect("signing context for streaming");
        assert_eq!(ctx.seed_signature, sig);
        assert_eq!(ctx.datetime, DATETIME);
        assert_eq!(ctx.scope, "20130524/us-east-1/s3/aws4_request");
        assert_eq!(
            ctx.signing_key,
            signing_key(SECRET, "20130524", "us-east-1", "s3")
        );
        assert!(!format!("{ctx:?}").contains(&hex::encode(ctx.signing_key)));
    }

    // --- Independently signed requests ---------------------------------

    /// A request signed by the test's literal canonical request.
    fn signed_put(region: &str, canonical_extra: Option<&str>) -> (Method, Uri, HeaderMap) {
        let canonical = canonical_extra.map(str::to_string).unwrap_or_else(|| {
            format!(
                "PUT\n/my%20bucket/a%2Fb/%C3%A9t%C3%A9~x\nacl=&prefix=a%20b%2Bc&uploads=\n\
                 host:localhost:9000\nx-amz-content-sha256:UNSIGNED-PAYLOAD\n\
                 x-amz-date:{DATETIME}\nx-amz-meta-note:a b c\n\n\
                 host;x-amz-content-sha256;x-amz-date;x-amz-meta-note\nUNSIGNED-PAYLOAD"
            )
        });
        let sig = sign_canonical(&canonical, "20130524", DATETIME, region);
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS}/20130524/{region}/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-note, Signature={sig}"
        );
        request(
            "PUT",
            "/my%20bucket/a%2Fb/%c3%a9t%C3%A9%7Ex?uploads&prefix=a%20b%2Bc&acl",
            &[
                ("host", "localhost:9000"),
                ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
                ("x-amz-date", DATETIME),
                ("x-amz-meta-note", "  a   b c "),
                ("authorization", &authorization),
            ],
        )
    }

    #[test]
    fn independent_signature_verifies() {
        let verified = check(&signed_put("us-east-1", None), NOW).expect("verifies");
        assert_eq!(verified.payload, PayloadMode::Unsigned);
    }

    #[test]
    fn wrong_region_is_served() {
        // Signed for a region we do not claim to be: still authenticated.
        let verified = check(&signed_put("eu-west-3", None), NOW).expect("verifies");
        assert_eq!(verified.region, "eu-west-3");
        let verified = check(&signed_put("auto", None), NOW).expect("verifies");
        assert_eq!(verified.region, "auto");
    }

    #[test]
    fn tampering_is_detected() {
        let base = signed_put("us-east-1", None);

        let mut req = base.clone();
        req.2
            .insert("x-amz-meta-note", HeaderValue::from_static("a b d"));
        assert_eq!(check(&req, NOW), Err(AuthError::SignatureDoesNotMatch));

        let mut req = base.clone();
        req.1 = "/my%20bucket/a%2Fb/%C3%A9t%C3%A9~x?uploads&prefix=a%20b%2Bd&acl"
            .parse()
            .expect("uri");
        assert_eq!(check(&req, NOW), Err(AuthError::SignatureDoesNotMatch));

        let mut req = base.clone();
        req.1 = "/my%20bucket/a/b/%C3%A9t%C3%A9~x?uploads&prefix=a%20b%2Bc&acl"
            .parse()
            .expect("uri");
        assert_eq!(check(&req, NOW), Err(AuthError::SignatureDoesNotMatch));

        let mut req = base.clone();
        req.0 = Method::POST;
        assert_eq!(check(&req, NOW), Err(AuthError::SignatureDoesNotMatch));

        let mut req = base.clone();
        req.2.insert(
            "x-amz-content-sha256",
            HeaderValue::from_static(EMPTY_SHA256_HEX),
        );
        assert_eq!(check(&req, NOW), Err(AuthError::SignatureDoesNotMatch));

        let auth = parse_auth(&base.1, &base.2).expect("parses");
        assert_eq!(
            verify(&base.0, &base.1, &base.2, &auth, "not-the-secret", NOW),
            Err(AuthError::SignatureDoesNotMatch)
        );

        // Unsigned headers may change freely.
        let mut req = base.clone();
        req.2
            .insert("user-agent", HeaderValue::from_static("whatever"));
        check(&req, NOW).expect("unsigned header is not covered");
    }

    #[test]
    fn clock_skew() {
        let req = signed_put("us-east-1", None);
        check(&req, NOW + MAX_CLOCK_SKEW_SECS).expect("edge of the window");
        check(&req, NOW - MAX_CLOCK_SKEW_SECS).expect("edge of the window");
        let err = check(&req, NOW + MAX_CLOCK_SKEW_SECS + 1).expect_err("too late");
        assert_eq!(err.s3_code(), "RequestTimeTooSkewed");
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert!(matches!(
            check(&req, NOW - MAX_CLOCK_SKEW_SECS - 1),
            Err(AuthError::RequestTimeTooSkewed { .. })
        ));
    }

    #[test]
    fn credential_date_must_match_request_day() {
        let mut req = signed_put("us-east-1", None);
        req.2
            .insert("x-amz-date", HeaderValue::from_static("20130525T000000Z"));
        let err = check(&req, NOW + 86_400).expect_err("date mismatch");
        assert_eq!(err.s3_code(), "AuthorizationHeaderMalformed");
    }

    #[test]
    fn date_header_fallback() {
        let canonical = format!(
            "GET\n/b/k\n\ndate:Fri, 24 May 2013 00:00:00 GMT\nhost:h\n\
             x-amz-content-sha256:{EMPTY_SHA256_HEX}\n\ndate;host;x-amz-content-sha256\n\
             {EMPTY_SHA256_HEX}"
        );
        let sig = sign_canonical(&canonical, "20130524", DATETIME, "us-east-1");
        let req = request(
            "GET",
            "/b/k",
            &[
                ("host", "h"),
                ("date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                (
                    "authorization",
                    &auth_header("date;host;x-amz-content-sha256", &sig),
                ),
            ],
        );
        check(&req, NOW).expect("Date header is used when x-amz-date is absent");
    }

    #[test]
    fn streaming_modes_get_signing_context() {
        for (value, mode, signed) in [
            (
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                PayloadMode::StreamingSignedTrailer,
                true,
            ),
            (
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                PayloadMode::StreamingUnsignedTrailer,
                false,
            ),
        ] {
            let canonical = format!(
                "PUT\n/b/k\n\nhost:h\nx-amz-content-sha256:{value}\nx-amz-date:{DATETIME}\n\n\
                 host;x-amz-content-sha256;x-amz-date\n{value}"
            );
            let sig = sign_canonical(&canonical, "20130524", DATETIME, "us-east-1");
            let req = request(
                "PUT",
                "/b/k",
                &[
                    ("host", "h"),
                    ("x-amz-content-sha256", value),
                    ("x-amz-date", DATETIME),
                    (
                        "authorization",
                        &auth_header("host;x-amz-content-sha256;x-amz-date", &sig),
                    ),
                ],
            );
            let verified = check(&req, NOW).expect("verifies");
            assert_eq!(verified.payload, mode);
            assert_eq!(verified.signing.is_some(), signed);
        }
    }

    #[test]
    fn http2_host_from_authority() {
        let canonical = format!(
            "GET\n/b/k\n\nhost:h:9000\nx-amz-content-sha256:{EMPTY_SHA256_HEX}\n\
             x-amz-date:{DATETIME}\n\nhost;x-amz-content-sha256;x-amz-date\n{EMPTY_SHA256_HEX}"
        );
        let sig = sign_canonical(&canonical, "20130524", DATETIME, "us-east-1");
        let req = request(
            "GET",
            "https://h:9000/b/k",
            &[
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("x-amz-date", DATETIME),
                (
                    "authorization",
                    &auth_header("host;x-amz-content-sha256;x-amz-date", &sig),
                ),
            ],
        );
        check(&req, NOW).expect("host taken from :authority");
    }

    // --- Malformed requests ---------------------------------------------

    #[test]
    fn missing_pieces() {
        let base = signed_put("us-east-1", None);

        let mut req = base.clone();
        req.2.remove("x-amz-content-sha256");
        let err = check(&req, NOW).expect_err("content sha required");
        assert_eq!(
            err,
            AuthError::MissingSecurityHeader("x-amz-content-sha256")
        );
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);

        let mut req = base.clone();
        req.2
            .insert("x-amz-content-sha256", HeaderValue::from_static("abc"));
        let err = check(&req, NOW).expect_err("bad content sha");
        assert_eq!(err.s3_code(), "InvalidArgument");

        let mut req = base.clone();
        req.2.remove("x-amz-date");
        assert_eq!(check(&req, NOW), Err(AuthError::MissingDate));

        let mut req = base.clone();
        req.2.remove("x-amz-meta-note");
        assert_eq!(
            check(&req, NOW),
            Err(AuthError::SignedHeaderMissing("x-amz-meta-note".into()))
        );

        // host not signed.
        let req = request(
            "GET",
            "/b/k",
            &[
                ("host", "h"),
                ("x-amz-date", DATETIME),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                (
                    "authorization",
                    &auth_header("x-amz-content-sha256;x-amz-date", &"0".repeat(64)),
                ),
            ],
        );
        assert_eq!(
            check(&req, NOW).map_err(|e| e.s3_code()),
            Err("AuthorizationHeaderMalformed")
        );
    }

    #[test]
    fn malformed_authorization_headers() {
        let sig = "0".repeat(64);
        let cases = [
            (
                "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
                "InvalidRequest",
            ),
            ("AWS4-HMAC-SHA256", "AuthorizationHeaderMalformed"),
            ("", "InvalidRequest"),
            (
                "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request",
                "AuthorizationHeaderMalformed",
            ),
            (
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/ec2/aws4_request,\
                     SignedHeaders=host,Signature={sig}"
                ),
                "AuthorizationHeaderMalformed",
            ),
            (
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AK/2013-05-24/us-east-1/s3/aws4_request,\
                     SignedHeaders=host,Signature={sig}"
                ),
                "AuthorizationHeaderMalformed",
            ),
            (
                &format!(
                    "AWS4-HMAC-SHA256 Credential=20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host,Signature={sig}"
                ),
                "AuthorizationHeaderMalformed",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,\
                 SignedHeaders=host,Signature=xyz",
                "AuthorizationHeaderMalformed",
            ),
            (
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host;;date,Signature={sig}"
                ),
                "AuthorizationHeaderMalformed",
            ),
            (
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request,\
                     Credential=AK/20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host,Signature={sig}"
                ),
                "AuthorizationHeaderMalformed",
            ),
        ];
        for (value, code) in cases {
            let req = request("GET", "/", &[("authorization", value)]);
            let err = parse_auth(&req.1, &req.2).expect_err(value);
            assert_eq!(err.s3_code(), code, "{value}: {err}");
        }
        // Access keys may contain '/': only the last four components are scope.
        let req = request(
            "GET",
            "/",
            &[(
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=a/b/20130524/us-east-1/s3/aws4_request,\
                     SignedHeaders=host,Signature={sig}"
                ),
            )],
        );
        let auth = parse_auth(&req.1, &req.2).expect("parses");
        let AuthKind::Header(auth) = auth else {
            panic!("expected header auth, got {auth:?}");
        };
        assert_eq!(auth.credential.access_key, "a/b");
    }

    #[test]
    fn malformed_presigned() {
        let req = request("GET", "/k?X-Amz-Algorithm=AWS4-HMAC-SHA256", &[]);
        assert_eq!(
            parse_auth(&req.1, &req.2).map_err(|e| e.s3_code()),
            Err("AuthorizationQueryParametersError")
        );
        let too_long = presigned_uri(PRESIGNED_SIG).replace("86400", "604801");
        let req = request("GET", &too_long, &[]);
        assert_eq!(
            parse_auth(&req.1, &req.2).map_err(|e| e.s3_code()),
            Err("AuthorizationQueryParametersError")
        );
        let both = request(
            "GET",
            &presigned_uri(PRESIGNED_SIG),
            &[("authorization", "AWS4-HMAC-SHA256 x")],
        );
        assert_eq!(
            parse_auth(&both.1, &both.2).map_err(|e| e.s3_code()),
            Err("InvalidArgument")
        );
        let v2 = request("GET", "/k?AWSAccessKeyId=AK&Expires=1&Signature=x", &[]);
        assert_eq!(
            parse_auth(&v2.1, &v2.2).map_err(|e| e.s3_code()),
            Err("InvalidRequest")
        );
        let anonymous = request("GET", "/k?prefix=a", &[]);
        let auth = parse_auth(&anonymous.1, &anonymous.2).expect("anonymous");
        assert_eq!(auth, AuthKind::Anonymous);
        assert_eq!(
            verify(&anonymous.0, &anonymous.1, &anonymous.2, &auth, SECRET, NOW),
            Err(AuthError::NotSigned)
        );
    }

    // --- Helpers --------------------------------------------------------

    #[test]
    fn canonical_pieces() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/a//b/./c/../d"), "/a//b/./c/../d");
        assert_eq!(canonical_uri("/a%2fb/c+d/%7e"), "/a%2Fb/c%2Bd/~");
        assert_eq!(canonical_uri("/bad%zz"), "/bad%25zz");
        let q = parse_query("b=2&a=&a=1&c&=x&%41=%7e&space=a%20b+c");
        assert_eq!(
            canonical_query(&q, false),
            "=x&A=~&a=&a=1&b=2&c=&space=a%20b%2Bc"
        );
        let mut out = Vec::new();
        push_trimmed_header_value(&mut out, b" \t a   b \t c  ");
        assert_eq!(out, b"a b \t c");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date(DATETIME), Some(NOW));
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date("20130229T000000Z"), None);
        assert_eq!(parse_amz_date("20130524T240000Z"), None);
        assert_eq!(parse_amz_date("20130524 000000Z"), None);
        assert_eq!(parse_amz_date("2013052T0000000Z"), None);
        assert_eq!(parse_amz_date("+0130524T000000Z"), None);
        assert_eq!(parse_amz_date("2013052€0000Z"), None);
        assert_eq!(parse_amz_date("20€524T000000Z"), None);
        assert_eq!(
            parse_http_date("Fri, 24 May 2013 00:00:00 GMT").as_deref(),
            Some(DATETIME)
        );
        assert_eq!(parse_http_date("Fri, 24 May 2013 00:00:00 PST"), None);
        assert_eq!(parse_http_date("Fri, 31 Jun 2013 00:00:00 GMT"), None);
    }

    #[test]
    fn payload_modes() {
        assert_eq!(
            PayloadMode::parse(b"UNSIGNED-PAYLOAD"),
            Ok(PayloadMode::Unsigned)
        );
        assert!(
            PayloadMode::parse(b"STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
                .expect("valid")
                .has_chunk_signatures()
        );
        assert!(PayloadMode::parse(b"streaming-unsigned-payload-trailer").is_err());
        assert!(PayloadMode::parse(&[b'g'; 64]).is_err());
        assert!(PayloadMode::parse(b"").is_err());
    }
}
