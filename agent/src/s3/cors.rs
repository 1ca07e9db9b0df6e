//! CORS: matching a browser's request against a bucket's rules, answering
//! preflight `OPTIONS` requests (which carry no credentials) and adding
//! `Access-Control-*` headers to actual responses. Used by the S3 API and
//! the website endpoint alike.

use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::error::S3Error;
use super::server::{Body, empty};
use crate::model::tables::CorsRule;

/// `pattern` with at most one `*` wildcard, case-insensitive.
fn wildcard_match(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.to_ascii_lowercase(), value.to_ascii_lowercase());
    match p.split_once('*') {
        None => p == v,
        Some((pre, post)) => {
            v.len() >= pre.len() + post.len() && v.starts_with(pre) && v.ends_with(post)
        }
    }
}

/// The first rule allowing `origin` to use `method` with `headers`.
pub(crate) fn find_rule<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &str,
    headers: &[String],
) -> Option<&'a CorsRule> {
    rules.iter().find(|r| {
        r.origins.iter().any(|o| wildcard_match(o, origin))
            && r.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
            && headers
                .iter()
                .all(|h| r.headers.iter().any(|a| wildcard_match(a, h)))
    })
}

/// Add the headers a matching rule grants to a response.
pub(crate) fn add_headers(rule: &CorsRule, origin: &str, h: &mut HeaderMap) {
    let allow_origin = if rule.origins.iter().any(|o| o == "*") {
        "*"
    } else {
        origin
    };
    let mut put = |k: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    put("access-control-allow-origin", allow_origin);
    put("access-control-allow-methods", &rule.methods.join(", "));
    if !rule.expose.is_empty() {
        put("access-control-expose-headers", &rule.expose.join(", "));
    }
    put("vary", "Origin");
}

/// Answer a preflight request for a bucket with these rules.
pub(crate) fn preflight(
    rules: Option<&[CorsRule]>,
    req: &HeaderMap,
) -> Result<Response<Body>, S3Error> {
    let get = |k: &str| req.get(k).and_then(|v| v.to_str().ok());
    let forbidden = || {
        S3Error::new(
            "AccessForbidden",
            StatusCode::FORBIDDEN,
            "CORSResponse: This CORS request is not allowed.",
        )
    };
    let (Some(origin), Some(method)) = (get("origin"), get("access-control-request-method")) else {
        return Err(S3Error::new(
            "BadRequest",
            StatusCode::BAD_REQUEST,
            "A preflight request needs the Origin and Access-Control-Request-Method headers.",
        ));
    };
    let headers: Vec<String> = get("access-control-request-headers")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let rule = rules
        .and_then(|r| find_rule(r, origin, method, &headers))
        .ok_or_else(forbidden)?;
    let mut resp = Response::new(empty());
    let h = resp.headers_mut();
    add_headers(rule, origin, h);
    if !headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&headers.join(", "))
    {
        h.insert("access-control-allow-headers", v);
    }
    if let Some(age) = rule.max_age
        && let Ok(v) = HeaderValue::from_str(&age.to_string())
    {
        h.insert("access-control-max-age", v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CorsRule {
        CorsRule {
            origins: vec!["https://*.example.org".into()],
            methods: vec!["GET".into(), "PUT".into()],
            headers: vec!["content-*".into(), "x-amz-date".into()],
            ..Default::default()
        }
    }

    #[test]
    fn rules_match_origin_method_and_headers() {
        let rules = [rule()];
        let h = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(find_rule(&rules, "https://www.example.org", "GET", &[]).is_some());
        assert!(
            find_rule(
                &rules,
                "https://www.example.org",
                "put",
                &h(&["content-type"])
            )
            .is_some()
        );
        assert!(find_rule(&rules, "https://evil.example.com", "GET", &[]).is_none());
        assert!(find_rule(&rules, "https://www.example.org", "DELETE", &[]).is_none());
        assert!(
            find_rule(
                &rules,
                "https://www.example.org",
                "GET",
                &h(&["authorization"])
            )
            .is_none()
        );
    }
}
