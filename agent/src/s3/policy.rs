//! S3 bucket policies: the JSON policy language, for the cases people
//! use. A statement has an Effect (Allow or Deny), a Principal or
//! NotPrincipal (`*`, or access key ids, bare or at the end of an ARN),
//! an Action or NotAction (`s3:GetObject`, with `*` and `?` wildcards),
//! a Resource or NotResource (`arn:aws:s3:::bucket/prefix/*`), and
//! Conditions (String*, IpAddress / NotIpAddress, Bool, Null, with
//! `...IfExists`). An explicit Deny wins over any Allow.
//!
//! A policy is checked when it is put (`MalformedPolicy` if it does not
//! parse or names resources outside its bucket) and parsed again when a
//! request is evaluated (policies are small).

use std::net::IpAddr;

use serde_json::Value;

/// Largest policy document S3 accepts.
pub const MAX_POLICY_LEN: usize = 20 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    statements: Vec<Statement>,
}

#[derive(Debug, Clone, PartialEq)]
struct Statement {
    allow: bool,
    /// Principal (true) or NotPrincipal (false), with its list.
    principal: (bool, Principals),
    /// Action or NotAction patterns.
    action: (bool, Vec<String>),
    /// Resource or NotResource patterns.
    resource: (bool, Vec<String>),
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq)]
enum Principals {
    Anyone,
    Keys(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    IpAddress,
    NotIpAddress,
    Bool,
    Null,
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    op: Op,
    if_exists: bool,
    /// Lowercase (condition keys are case-insensitive).
    key: String,
    values: Vec<String>,
}

/// What a request looks like to a policy.
pub struct Request<'a> {
    /// The access key (None: anonymous).
    pub key_id: Option<&'a str>,
    /// `s3:GetObject`...
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    /// Condition keys' values (`aws:SourceIp`, `s3:prefix`...), keys lowercase.
    pub values: &'a [(&'a str, String)],
}

/// A policy's answer for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
    /// No statement applies.
    Silent,
}

/// `*` (any run) and `?` (one character) wildcards.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `10.0.0.0/8`, `2001:db8::/32` or a bare address.
fn cidr_contains(cidr: &str, ip: IpAddr) -> Option<bool> {
    let (addr, bits) = match cidr.split_once('/') {
        Some((a, b)) => (a.trim(), Some(b.trim().parse::<u32>().ok()?)),
        None => (cidr.trim(), None),
    };
    let net: IpAddr = addr.parse().ok()?;
    let ip = match (net, ip) {
        // An IPv4 client seen over an IPv6 socket.
        (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        _ => ip,
    };
    let (n, i, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return Some(false),
    };
    let bits = bits.unwrap_or(width);
    if bits > width {
        return None;
    }
    let shift = width - bits;
    Some(shift >= 128 || (n >> shift) == (i >> shift))
}

fn strings(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(a) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        Value::Bool(b) => Some(vec![b.to_string()]),
        Value::Number(n) => Some(vec![n.to_string()]),
        _ => None,
    }
}

fn parse_principal(v: &Value) -> Result<Principals, String> {
    let list = match v {
        Value::String(s) if s == "*" => return Ok(Principals::Anyone),
        Value::Object(m) => {
            let mut out = Vec::new();
            for (kind, ids) in m {
                if !matches!(kind.as_str(), "AWS" | "CanonicalUser") {
                    return Err(format!("unsupported principal type {kind:?}"));
                }
                out.extend(strings(ids).ok_or("a principal must be a string or a list")?);
            }
            out
        }
        _ => return Err("Principal must be \"*\" or {\"AWS\": ...}".into()),
    };
    if list.iter().any(|p| p == "*") {
        return Ok(Principals::Anyone);
    }
    // Key ids, bare or at the end of an ARN (`arn:aws:iam::x:user/ID`).
    Ok(Principals::Keys(
        list.iter()
            .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p).to_string())
            .collect(),
    ))
}

fn parse_op(name: &str) -> Result<(Op, bool), String> {
    let (base, if_exists) = match name.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let op = match base {
        "StringEquals" => Op::StringEquals,
        "StringNotEquals" => Op::StringNotEquals,
        "StringEqualsIgnoreCase" => Op::StringEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase" => Op::StringNotEqualsIgnoreCase,
        "StringLike" => Op::StringLike,
        "StringNotLike" => Op::StringNotLike,
        "IpAddress" => Op::IpAddress,
        "NotIpAddress" => Op::NotIpAddress,
        "Bool" => Op::Bool,
        "Null" => Op::Null,
        _ => return Err(format!("unsupported condition operator {name:?}")),
    };
    Ok((op, if_exists))
}

/// The pair of a field and its `Not` form, exactly one of them present.
fn either<'a>(
    st: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<(bool, &'a Value), String> {
    match (st.get(name), st.get(&format!("Not{name}"))) {
        (Some(v), None) => Ok((true, v)),
        (None, Some(v)) => Ok((false, v)),
        (Some(_), Some(_)) => Err(format!("a statement has both {name} and Not{name}")),
        (None, None) => Err(format!("a statement needs {name} or Not{name}")),
    }
}

impl Policy {
    /// Parse and check a policy of bucket `bucket`.
    pub fn parse(text: &str, bucket: &str) -> Result<Policy, String> {
        if text.len() > MAX_POLICY_LEN {
            return Err(format!("Policies must be at most {MAX_POLICY_LEN} bytes"));
        }
        let doc: Value =
            serde_json::from_str(text).map_err(|e| format!("This policy is not JSON: {e}"))?;
        let doc = doc.as_object().ok_or("a policy is a JSON object")?;
        if let Some(v) = doc.get("Version")
            && !matches!(v.as_str(), Some("2012-10-17" | "2008-10-17"))
        {
            return Err(format!("unsupported policy Version {v}"));
        }
        let list = match doc.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect::<Vec<_>>(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => return Err("a policy needs a Statement (an object or a list)".into()),
        };
        if list.is_empty() {
            return Err("a policy needs at least one Statement".into());
        }
        let mut statements = Vec::new();
        for st in list {
            let st = st.as_object().ok_or("a Statement is a JSON object")?;
            let allow = match st.get("Effect").and_then(Value::as_str) {
                Some("Allow") => true,
                Some("Deny") => false,
                _ => return Err("Effect must be Allow or Deny".into()),
            };
            let (is, p) = either(st, "Principal")?;
            let principal = (is, parse_principal(p)?);
            let (is, a) = either(st, "Action")?;
            let actions = strings(a).ok_or("Action must be a string or a list")?;
            if let Some(bad) = actions
                .iter()
                .find(|a| !(*a == "*" || a.to_ascii_lowercase().starts_with("s3:")))
            {
                return Err(format!("Policy has invalid action {bad:?}"));
            }
            let action = (is, actions);
            let (is, r) = either(st, "Resource")?;
            let resources = strings(r).ok_or("Resource must be a string or a list")?;
            let mine = format!("arn:aws:s3:::{bucket}");
            if let Some(bad) = resources.iter().find(|r| {
                let within = r.strip_prefix(&mine);
                !(matches!(within, Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('*')))
            }) {
                return Err(format!(
                    "Policy has invalid resource {bad:?}: it must be within {mine}"
                ));
            }
            let resource = (is, resources);
            let mut conditions = Vec::new();
            if let Some(c) = st.get("Condition") {
                let c = c.as_object().ok_or("Condition must be an object")?;
                for (op_name, block) in c {
                    let (op, if_exists) = parse_op(op_name)?;
                    let block = block
                        .as_object()
                        .ok_or_else(|| format!("{op_name} must map condition keys to values"))?;
                    for (key, values) in block {
                        let values =
                            strings(values).ok_or("condition values are strings or lists")?;
                        if matches!(op, Op::IpAddress | Op::NotIpAddress)
                            && values
                                .iter()
                                .any(|v| cidr_contains(v, IpAddr::from([0, 0, 0, 0])).is_none())
                        {
                            return Err(format!("invalid IP range in {values:?}"));
                        }
                        conditions.push(Condition {
                            op,
                            if_exists,
                            key: key.to_ascii_lowercase(),
                            values,
                        });
                    }
                }
            }
            statements.push(Statement {
                allow,
                principal,
                action,
                resource,
                conditions,
            });
        }
        Ok(Policy { statements })
    }

    /// What the policy says about `req`; `ignore_public`: statements that
    /// allow everyone grant nothing (RestrictPublicBuckets).
    pub fn evaluate(&self, req: &Request, ignore_public: bool) -> Verdict {
        let mut allowed = false;
        for st in &self.statements {
            if !st.applies(req) {
                continue;
            }
            if !st.allow {
                return Verdict::Deny;
            }
            if !(ignore_public && st.is_public()) {
                allowed = true;
            }
        }
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Silent
        }
    }

    /// Whether the policy grants something to everyone (AWS's notion of a
    /// public policy: an Allow for `*` not narrowed to source addresses).
    pub fn is_public(&self) -> bool {
        self.statements.iter().any(|s| s.allow && s.is_public())
    }
}

impl Statement {
    fn is_public(&self) -> bool {
        let anyone = match &self.principal {
            (true, Principals::Anyone) => true,
            (true, Principals::Keys(_)) => false,
            // NotPrincipal: everyone but some.
            (false, _) => true,
        };
        anyone
            && !self
                .conditions
                .iter()
                .any(|c| c.op == Op::IpAddress && c.key == "aws:sourceip")
    }

    fn applies(&self, req: &Request) -> bool {
        let principal_matches = match &self.principal.1 {
            Principals::Anyone => true,
            Principals::Keys(ids) => req.key_id.is_some_and(|k| ids.iter().any(|i| i == k)),
        };
        if principal_matches != self.principal.0 {
            return false;
        }
        let action_matches = self
            .action
            .1
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), &req.action.to_ascii_lowercase()));
        if action_matches != self.action.0 {
            return false;
        }
        let resource_matches = self.resource.1.iter().any(|r| glob(r, req.resource));
        if resource_matches != self.resource.0 {
            return false;
        }
        self.conditions.iter().all(|c| c.holds(req))
    }
}

impl Condition {
    fn holds(&self, req: &Request) -> bool {
        let value = req
            .values
            .iter()
            .find(|(k, _)| *k == self.key)
            .map(|(_, v)| v.as_str());
        if self.op == Op::Null {
            let want_absent = self.values.iter().any(|v| v.eq_ignore_ascii_case("true"));
            return value.is_none() == want_absent;
        }
        let Some(value) = value else {
            // A missing key: true for IfExists and for the negated
            // operators, false otherwise (as AWS).
            return self.if_exists
                || matches!(
                    self.op,
                    Op::StringNotEquals
                        | Op::StringNotEqualsIgnoreCase
                        | Op::StringNotLike
                        | Op::NotIpAddress
                );
        };
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|v| f(v));
        let ip: Option<IpAddr> = value.parse().ok();
        match self.op {
            Op::StringEquals => any(&|v| v == value),
            Op::StringNotEquals => !any(&|v| v == value),
            Op::StringEqualsIgnoreCase => any(&|v| v.eq_ignore_ascii_case(value)),
            Op::StringNotEqualsIgnoreCase => !any(&|v| v.eq_ignore_ascii_case(value)),
            Op::StringLike => any(&|v| glob(v, value)),
            Op::StringNotLike => !any(&|v| glob(v, value)),
            Op::IpAddress => ip.is_some_and(|ip| any(&|v| cidr_contains(v, ip) == Some(true))),
            Op::NotIpAddress => ip.is_some_and(|ip| !any(&|v| cidr_contains(v, ip) == Some(true))),
            Op::Bool => any(&|v| v.eq_ignore_ascii_case(value)),
            Op::Null => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        key_id: Option<&'a str>,
        action: &'a str,
        resource: &'a str,
        values: &'a [(&'a str, String)],
    ) -> Request<'a> {
        Request {
            key_id,
            action,
            resource,
            values,
        }
    }

    #[test]
    fn wildcards_match_like_aws() {
        assert!(glob("arn:aws:s3:::b/*", "arn:aws:s3:::b/a/c.txt"));
        assert!(glob("s3:Get*", "s3:GetObject"));
        assert!(glob("a?c", "abc") && !glob("a?c", "ac"));
        assert!(glob("*", "") && glob("a*b*c", "aXbYbZc") && !glob("a*b*c", "aXbY"));
        assert!(!glob("arn:aws:s3:::b/public/*", "arn:aws:s3:::b/private/x"));
    }

    #[test]
    fn addresses_match_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(cidr_contains("10.0.0.0/8", ip("10.200.1.2")), Some(true));
        assert_eq!(cidr_contains("10.0.0.0/8", ip("11.0.0.1")), Some(false));
        assert_eq!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")), Some(true));
        assert_eq!(cidr_contains("127.0.0.1", ip("127.0.0.1")), Some(true));
        assert_eq!(
            cidr_contains("127.0.0.1", ip("::ffff:127.0.0.1")),
            Some(true)
        );
        assert_eq!(
            cidr_contains("2001:db8::/32", ip("2001:db8:1::5")),
            Some(true)
        );
        assert_eq!(cidr_contains("10.0.0.0/33", ip("10.0.0.1")), None);
        assert_eq!(cidr_contains("nonsense", ip("10.0.0.1")), None);
    }

    const PUBLIC_READ: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"PublicRead",
        "Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::site/*"]}]}"#;

    #[test]
    fn allow_deny_and_silence() {
        let p = Policy::parse(PUBLIC_READ, "site").unwrap();
        assert!(p.is_public());
        let get = req(None, "s3:GetObject", "arn:aws:s3:::site/index.html", &[]);
        assert_eq!(p.evaluate(&get, false), Verdict::Allow);
        assert_eq!(
            p.evaluate(&get, true),
            Verdict::Silent,
            "RestrictPublicBuckets"
        );
        let put = req(None, "s3:PutObject", "arn:aws:s3:::site/index.html", &[]);
        assert_eq!(p.evaluate(&put, false), Verdict::Silent);
        let list = req(None, "s3:ListBucket", "arn:aws:s3:::site", &[]);
        assert_eq!(p.evaluate(&list, false), Verdict::Silent);

        // An explicit deny wins, whatever the order.
        let doc = r#"{"Statement":[
            {"Effect":"Deny","Principal":{"AWS":["GKbad"]},"Action":"s3:*","Resource":"arn:aws:s3:::site/*"},
            {"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:*","Resource":"arn:aws:s3:::site/*"}]}"#;
        let p = Policy::parse(doc, "site").unwrap();
        let r = req(Some("GKbad"), "s3:GetObject", "arn:aws:s3:::site/a", &[]);
        assert_eq!(p.evaluate(&r, false), Verdict::Deny);
        let r = req(Some("GKgood"), "s3:GetObject", "arn:aws:s3:::site/a", &[]);
        assert_eq!(p.evaluate(&r, false), Verdict::Allow);
        // Key ids at the end of an ARN, and NotPrincipal.
        let doc = r#"{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123:user/GKadmin"},
            "Action":"s3:DeleteObject","Resource":"arn:aws:s3:::site/*"}}"#;
        let p = Policy::parse(doc, "site").unwrap();
        let del = |k| req(k, "s3:DeleteObject", "arn:aws:s3:::site/a", &[]);
        assert_eq!(p.evaluate(&del(Some("GKadmin")), false), Verdict::Silent);
        assert_eq!(p.evaluate(&del(Some("GKother")), false), Verdict::Deny);
        assert_eq!(p.evaluate(&del(None), false), Verdict::Deny);
    }

    #[test]
    fn conditions_narrow_statements() {
        let doc = r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:ListBucket",
            "Resource":"arn:aws:s3:::b","Condition":{"StringLike":{"s3:prefix":["public/*"]},
            "IpAddress":{"aws:SourceIp":["10.0.0.0/8","127.0.0.1"]}}},
            {"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*",
            "Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
        let p = Policy::parse(doc, "b").unwrap();
        assert!(!p.is_public(), "narrowed to addresses");
        let vals = |prefix: &str, ip: &str| {
            vec![
                ("s3:prefix", prefix.to_string()),
                ("aws:sourceip", ip.to_string()),
            ]
        };
        let v = vals("public/a", "10.1.2.3");
        assert_eq!(
            p.evaluate(&req(None, "s3:ListBucket", "arn:aws:s3:::b", &v), false),
            Verdict::Allow
        );
        let v = vals("private/", "10.1.2.3");
        assert_eq!(
            p.evaluate(&req(None, "s3:ListBucket", "arn:aws:s3:::b", &v), false),
            Verdict::Silent
        );
        let v = vals("public/a", "192.168.1.1");
        assert_eq!(
            p.evaluate(&req(None, "s3:ListBucket", "arn:aws:s3:::b", &v), false),
            Verdict::Silent
        );
        let v = vec![("aws:securetransport", "false".to_string())];
        assert_eq!(
            p.evaluate(
                &req(Some("k"), "s3:GetObject", "arn:aws:s3:::b/x", &v),
                false
            ),
            Verdict::Deny
        );
        // A missing key: StringNotEquals holds, StringEquals does not.
        let doc = r#"{"Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:PutObject",
            "Resource":"arn:aws:s3:::b/*","Condition":{"StringNotEquals":{"s3:x-amz-acl":"private"}}}]}"#;
        let p = Policy::parse(doc, "b").unwrap();
        assert_eq!(
            p.evaluate(
                &req(Some("k"), "s3:PutObject", "arn:aws:s3:::b/x", &[]),
                false
            ),
            Verdict::Deny
        );
        let v = vec![("s3:x-amz-acl", "private".to_string())];
        assert_eq!(
            p.evaluate(
                &req(Some("k"), "s3:PutObject", "arn:aws:s3:::b/x", &v),
                false
            ),
            Verdict::Silent
        );
    }

    #[test]
    fn malformed_policies_are_refused() {
        for bad in [
            "not json",
            "[]",
            r#"{"Statement":[]}"#,
            r#"{"Version":"2020-01-01","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement":{"Effect":"Maybe","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"ec2:*","Resource":"arn:aws:s3:::b/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::bb/*"}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"NumericMaybe":{"a":"1"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/*","Condition":{"IpAddress":{"aws:SourceIp":"300.0.0.0/8"}}}}"#,
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":"x"},"Action":"s3:*","Resource":"arn:aws:s3:::b/*"}}"#,
        ] {
            assert!(Policy::parse(bad, "b").is_err(), "accepted: {bad}");
        }
        let big = format!(
            r#"{{"Statement":{{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::b/{}"}}}}"#,
            "x".repeat(MAX_POLICY_LEN)
        );
        assert!(Policy::parse(&big, "b").is_err());
    }
}
