//! AWS Signature Version 4 verification for the SQS API, used only when access keys are
//! configured (`--sqs-credentials`). Without keys, signatures are accepted unchecked, as local
//! SQS emulators do.
//!
//! Two forms: the `Authorization` header, and presigned URLs, whose `X-Amz-Algorithm`,
//! `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders` and
//! `X-Amz-Signature` are query parameters (kombu's asynchronous consumer deletes messages with a
//! presigned GET). The canonical request is rebuilt from what arrived (method, path, sorted
//! query without the signature, the signed headers, the SHA-256 of the body or
//! `UNSIGNED-PAYLOAD`), signed with the key derived from the secret, the date, region and
//! service in the credential scope, and compared in constant time.
//!
//! Checked in two steps, so that a request from a stranger is refused before its body is read
//! (`mod.rs`): [`claim`] reads the head (access key known, date in time, scope naming `sqs`,
//! the pinned region if any and the same date), and [`Claim::verify`] checks the signature
//! once the body's SHA-256 has been computed while it streamed in.

use axum::http::{HeaderMap, Method, Uri};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::md5::hex;
use super::SqsError;

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn uri_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub fn denied(name: &'static str, message: &str) -> SqsError {
    SqsError {
        name,
        code: name,
        status: 403,
        sender: true,
        message: message.to_string(),
    }
}

struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(h: &str) -> Option<Authorization<'_>> {
    let rest = h.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut cred = None;
    let mut signed = None;
    let mut sig = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            cred = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        }
    }
    scoped(cred?, signed?, sig?)
}

fn scoped<'a>(cred: &'a str, signed: &'a str, signature: &'a str) -> Option<Authorization<'a>> {
    let mut c = cred.split('/');
    let access_key = c.next()?;
    let date = c.next()?;
    let region = c.next()?;
    let service = c.next()?;
    if c.next()? != "aws4_request" {
        return None;
    }
    Some(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// The decoded query parameters of a request.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The region of the request's credential scope (header or presigned query), if any.
pub fn region(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let from_header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .map(str::to_string);
    let region = from_header.or_else(|| {
        let pairs = query_pairs(uri);
        param(&pairs, "X-Amz-Credential")
            .and_then(|c| c.split('/').nth(2))
            .map(str::to_string)
    })?;
    (!region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    .then_some(region)
}

/// What the credential scope may name: the service (`sqs`), and the region when the server
/// is pinned to one (`--sqs-region`).
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub service: &'a str,
    pub region: Option<&'a str>,
}

/// A signature claimed by a request's head (the `Authorization` header or a presigned query
/// string): who signs, when, for what scope. Everything here is checked before the body is
/// read; only the signature itself needs the body's hash ([`Claim::verify`]).
pub struct Claim {
    pub access_key: String,
    secret: String,
    date: String,
    region: String,
    service: String,
    signed_headers: Vec<String>,
    signature: String,
    amz_date: String,
    presigned: bool,
}

/// Read the signature a request claims, from its head alone, and refuse it at once when it is
/// missing, incomplete, from an access key not in `credentials`, out of time, or scoped to
/// another service, region or date.
pub fn claim(
    credentials: &[(String, String)],
    scope: Scope<'_>,
    uri: &Uri,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Claim, SqsError> {
    let pairs = query_pairs(uri);
    let header = headers.get("authorization").and_then(|v| v.to_str().ok());
    let presigned = header.is_none() && param(&pairs, "X-Amz-Signature").is_some();
    let (a, amz_date) = match header {
        Some(auth) => from_header(auth, headers)?,
        None if presigned => from_query(&pairs)?,
        None => {
            return Err(denied(
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            ))
        }
    };
    let Some((_, secret)) = credentials.iter().find(|(k, _)| k == a.access_key) else {
        return Err(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    check_scope(&a, scope, amz_date)?;
    check_time(presigned, &pairs, amz_date, now_ms)?;
    Ok(Claim {
        access_key: a.access_key.to_string(),
        secret: secret.clone(),
        date: a.date.to_string(),
        region: a.region.to_string(),
        service: a.service.to_string(),
        signed_headers: a.signed_headers.iter().map(|h| h.to_string()).collect(),
        signature: a.signature.to_string(),
        amz_date: amz_date.to_string(),
        presigned,
    })
}

/// The signature of a presigned URL, and its `X-Amz-Date`, from the query string.
fn from_query(pairs: &[(String, String)]) -> Result<(Authorization<'_>, &str), SqsError> {
    if param(pairs, "X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(denied(
            "IncompleteSignature",
            "X-Amz-Algorithm must be AWS4-HMAC-SHA256.",
        ));
    }
    let a = match (
        param(pairs, "X-Amz-Credential"),
        param(pairs, "X-Amz-SignedHeaders"),
        param(pairs, "X-Amz-Signature"),
    ) {
        (Some(c), Some(h), Some(s)) => scoped(c, h, s),
        _ => None,
    }
    .ok_or_else(|| {
        denied(
            "IncompleteSignature",
            "A presigned URL needs X-Amz-Credential, X-Amz-SignedHeaders and X-Amz-Signature.",
        )
    })?;
    let date = param(pairs, "X-Amz-Date")
        .ok_or_else(|| denied("IncompleteSignature", "The request must carry X-Amz-Date."))?;
    Ok((a, date))
}

/// The signature of the `Authorization` header, and the `X-Amz-Date` header.
fn from_header<'a>(
    auth: &'a str,
    headers: &'a HeaderMap,
) -> Result<(Authorization<'a>, &'a str), SqsError> {
    let a = parse_authorization(auth).ok_or_else(|| {
        denied(
            "IncompleteSignature",
            "Authorization header requires Credential, SignedHeaders and Signature (AWS4-HMAC-SHA256).",
        )
    })?;
    let date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| denied("IncompleteSignature", "The request must carry X-Amz-Date."))?;
    Ok((a, date))
}

/// The credential's scope names this service, the pinned region (if any), and the day of
/// `X-Amz-Date`.
fn check_scope(a: &Authorization<'_>, scope: Scope<'_>, amz_date: &str) -> Result<(), SqsError> {
    if a.service != scope.service {
        return Err(denied(
            "SignatureDoesNotMatch",
            &format!(
                "Credential should be scoped to correct service: '{}', not '{}'.",
                scope.service, a.service
            ),
        ));
    }
    if scope.region.is_some_and(|r| r != a.region) {
        return Err(denied(
            "SignatureDoesNotMatch",
            &format!(
                "Credential should be scoped to a valid region: '{}' (--sqs-region), not '{}'.",
                scope.region.unwrap_or_default(),
                a.region
            ),
        ));
    }
    if !amz_date.starts_with(a.date) || a.date.len() != 8 {
        return Err(denied(
            "SignatureDoesNotMatch",
            &format!(
                "Date in Credential scope ({}) does not match the date of X-Amz-Date ({amz_date}).",
                a.date
            ),
        ));
    }
    Ok(())
}

/// The signature is recent enough: within 15 minutes of the server's clock, or for a
/// presigned URL, within its `X-Amz-Expires`.
fn check_time(
    presigned: bool,
    pairs: &[(String, String)],
    amz_date: &str,
    now_ms: i64,
) -> Result<(), SqsError> {
    let signed_at = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            denied(
                "IncompleteSignature",
                "X-Amz-Date must be in the form YYYYMMDDTHHMMSSZ.",
            )
        })?
        .and_utc()
        .timestamp_millis();
    if presigned {
        // A presigned URL is good from its date (give or take the clock skew SQS allows) for
        // X-Amz-Expires seconds, at most 7 days.
        let expires: i64 = param(pairs, "X-Amz-Expires")
            .map(|e| e.parse().unwrap_or(-1))
            .unwrap_or(604_800);
        if !(1..=604_800).contains(&expires) {
            return Err(denied(
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be a number of seconds from 1 to 604800.",
            ));
        }
        if now_ms > signed_at + expires * 1000 || signed_at - now_ms > 15 * 60 * 1000 {
            return Err(denied(
                "SignatureDoesNotMatch",
                &format!(
                    "Signature expired: the presigned URL of {amz_date} was valid for {expires} s."
                ),
            ));
        }
    } else if (now_ms - signed_at).abs() > 15 * 60 * 1000 {
        // Like AWS: a signature more than 15 minutes away from our clock is refused.
        return Err(denied(
            "SignatureDoesNotMatch",
            &format!("Signature expired: {amz_date} is more than 15 minutes away from the server's time."),
        ));
    }
    Ok(())
}

impl Claim {
    /// Check the signature itself, now that the body's SHA-256 (hex) is known. Returns the
    /// access key id that signed the request.
    pub fn verify(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body_sha256: &str,
    ) -> Result<String, SqsError> {
        let path = if uri.path().is_empty() {
            "/"
        } else {
            uri.path()
        };
        let mut query: Vec<(String, String)> = query_pairs(uri)
            .iter()
            .filter(|(k, _)| !(self.presigned && k == "X-Amz-Signature"))
            .map(|(k, v)| (uri_encode(k), uri_encode(v)))
            .collect();
        query.sort();
        let canonical_query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut canonical_headers = String::new();
        for name in &self.signed_headers {
            let values: Vec<String> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        // The payload hashes a signer may have used: the declared one (which must then be the
        // body's own), or for a presigned URL UNSIGNED-PAYLOAD (what SDKs sign there) and,
        // failing that, the body's own hash.
        let declared = headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok());
        let hashes: Vec<&str> = match declared {
            Some("UNSIGNED-PAYLOAD") => vec!["UNSIGNED-PAYLOAD"],
            Some(h) if h.eq_ignore_ascii_case(body_sha256) => vec![body_sha256],
            Some(_) => {
                return Err(denied(
                    "SignatureDoesNotMatch",
                    "X-Amz-Content-SHA256 does not match the SHA-256 of the body.",
                ))
            }
            None if self.presigned => vec!["UNSIGNED-PAYLOAD", body_sha256],
            None => vec![body_sha256],
        };
        let scope = format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        );
        let k_date = hmac(
            format!("AWS4{}", self.secret).as_bytes(),
            self.date.as_bytes(),
        );
        let k_region = hmac(&k_date, self.region.as_bytes());
        let k_service = hmac(&k_region, self.service.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        for payload_hash in hashes {
            let canonical_request = format!(
                "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
                self.signed_headers.join(";")
            );
            let string_to_sign = format!(
                "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
                self.amz_date,
                hex(&Sha256::digest(canonical_request.as_bytes()))
            );
            let expected = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
            if bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes())) {
                return Ok(self.access_key.clone());
            }
        }
        Err(denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2015-08-30T12:36:00Z, the example's X-Amz-Date.
    const SIGNED_AT: i64 = 1_440_938_160_000;

    fn check(
        creds: &[(String, String)],
        scope: Scope<'_>,
        uri: &Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<String, SqsError> {
        let empty = hex(&Sha256::digest(b""));
        claim(creds, scope, uri, headers, now)?.verify(&Method::GET, uri, headers, &empty)
    }

    /// The worked example of AWS's SigV4 documentation (GET with a query string, IAM service).
    #[test]
    fn matches_the_aws_documentation_example() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().unwrap());
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8"
                .parse()
                .unwrap(),
        );
        headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                .parse()
                .unwrap(),
        );
        let uri: Uri = "/?Action=ListUsers&Version=2010-05-08".parse().unwrap();
        let creds = vec![(
            "AKIDEXAMPLE".to_string(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string(),
        )];
        let iam = Scope {
            service: "iam",
            region: None,
        };
        assert!(check(&creds, iam, &uri, &headers, SIGNED_AT).is_ok());
        let wrong = vec![("AKIDEXAMPLE".to_string(), "not-the-secret".to_string())];
        assert_eq!(
            check(&wrong, iam, &uri, &headers, SIGNED_AT)
                .unwrap_err()
                .name,
            "SignatureDoesNotMatch"
        );
        let unknown = vec![("OTHER".to_string(), "x".to_string())];
        assert_eq!(
            check(&unknown, iam, &uri, &headers, SIGNED_AT)
                .unwrap_err()
                .name,
            "InvalidClientTokenId"
        );
        let late = SIGNED_AT + 16 * 60 * 1000;
        let err = check(&creds, iam, &uri, &headers, late).unwrap_err();
        assert_eq!(err.name, "SignatureDoesNotMatch");
        assert!(err.message.contains("expired"));
        // A good signature for another service or region is refused from the head alone.
        let sqs = Scope {
            service: "sqs",
            region: None,
        };
        let err = claim(&creds, sqs, &uri, &headers, SIGNED_AT).err().unwrap();
        assert!(err.message.contains("service"), "{}", err.message);
        let eu = Scope {
            service: "iam",
            region: Some("eu-west-1"),
        };
        let err = claim(&creds, eu, &uri, &headers, SIGNED_AT).err().unwrap();
        assert!(err.message.contains("region"), "{}", err.message);
        // A declared payload hash must be the body's.
        headers.insert("x-amz-content-sha256", "ab".repeat(32).parse().unwrap());
        let err = check(&creds, iam, &uri, &headers, SIGNED_AT).unwrap_err();
        assert!(
            err.message.contains("X-Amz-Content-SHA256"),
            "{}",
            err.message
        );
    }
}
