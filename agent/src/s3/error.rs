//! S3 errors: AWS error codes, HTTP statuses and the XML error body. The
//! only place that maps Hangar's errors to S3's.

use http::StatusCode;

use crate::model::ModelError;
use crate::table::TableError;

/// An error answered to an S3 client.
#[derive(Debug)]
pub struct S3Error {
    pub code: &'static str,
    pub status: StatusCode,
    pub message: String,
    /// Headers the error response carries (`x-amz-delete-marker`...).
    pub headers: Vec<(&'static str, String)>,
}

impl S3Error {
    pub(crate) fn new(
        code: &'static str,
        status: StatusCode,
        message: impl Into<String>,
    ) -> S3Error {
        S3Error {
            code,
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// The same error, answered with this header too.
    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> S3Error {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn access_denied(msg: impl Into<String>) -> S3Error {
        S3Error::new("AccessDenied", StatusCode::FORBIDDEN, msg)
    }
    pub(crate) fn no_such_key() -> S3Error {
        S3Error::new(
            "NoSuchKey",
            StatusCode::NOT_FOUND,
            "The specified key does not exist.",
        )
    }
    fn no_such_bucket(name: &str) -> S3Error {
        S3Error::new(
            "NoSuchBucket",
            StatusCode::NOT_FOUND,
            format!("The specified bucket {name:?} does not exist."),
        )
    }
    pub(crate) fn not_implemented(what: &str) -> S3Error {
        S3Error::new(
            "NotImplemented",
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by Hangar yet."),
        )
    }
    pub(crate) fn invalid_request(msg: impl Into<String>) -> S3Error {
        S3Error::new("InvalidRequest", StatusCode::BAD_REQUEST, msg)
    }
    pub(crate) fn internal(msg: impl Into<String>) -> S3Error {
        S3Error::new("InternalError", StatusCode::INTERNAL_SERVER_ERROR, msg)
    }
    pub(crate) fn unavailable(msg: impl Into<String>) -> S3Error {
        S3Error::new("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE, msg)
    }

    /// The XML body.
    pub(crate) fn to_xml(&self, resource: &str, request_id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
            self.code,
            super::xml::escape(&self.message),
            super::xml::escape(resource),
            request_id
        )
    }
}

impl From<TableError> for S3Error {
    fn from(e: TableError) -> S3Error {
        match e {
            TableError::NoLayout
            | TableError::Quorum { .. }
            | TableError::Away { .. }
            | TableError::Contended { .. }
            | TableError::Undecided { .. }
            | TableError::Unordered { .. }
            | TableError::Interrupted { .. } => S3Error::unavailable(e.to_string()),
            TableError::Data(_) => S3Error::internal(e.to_string()),
        }
    }
}

impl From<ModelError> for S3Error {
    fn from(e: ModelError) -> S3Error {
        match e {
            ModelError::Table(t) => t.into(),
            ModelError::NoSuchBucket(n) => S3Error::no_such_bucket(&n),
            ModelError::BucketExists(n) => S3Error::new(
                "BucketAlreadyExists",
                StatusCode::CONFLICT,
                format!("The bucket name {n:?} is already taken."),
            ),
            ModelError::BucketNotEmpty(n) => S3Error::new(
                "BucketNotEmpty",
                StatusCode::CONFLICT,
                format!("The bucket {n:?} you tried to delete is not empty."),
            ),
            ModelError::InvalidBucketName(_) => {
                S3Error::new("InvalidBucketName", StatusCode::BAD_REQUEST, e.to_string())
            }
            ModelError::Db(_) => S3Error::internal(e.to_string()),
            ModelError::QuotaExceeded(..) => {
                S3Error::new("QuotaExceeded", StatusCode::FORBIDDEN, e.to_string())
            }
            ModelError::InvalidBucketState(_) => {
                S3Error::new("InvalidBucketState", StatusCode::CONFLICT, e.to_string())
            }
            ModelError::NoSuchKey(_) => {
                S3Error::new("InvalidAccessKeyId", StatusCode::FORBIDDEN, e.to_string())
            }
            ModelError::Upgrade { .. } => S3Error::new(
                "ServiceUnavailable",
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
            ),
        }
    }
}

impl From<crate::block::BlockError> for S3Error {
    fn from(e: crate::block::BlockError) -> S3Error {
        S3Error::unavailable(e.to_string())
    }
}
