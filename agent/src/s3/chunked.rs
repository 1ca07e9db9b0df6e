//! aws-chunked request bodies (being written).
