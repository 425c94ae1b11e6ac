//! AWS Signature Version 4 verification for the SQS API, used only when access keys are
//! configured (`--sqs-credentials`). Without keys, signatures are accepted unchecked, as local
//! SQS emulators do.
//!
//! The canonical request is rebuilt from what arrived (method, path, sorted query, the signed
//! headers, the SHA-256 of the body), signed with the key derived from the secret, the date,
//! region and service in the credential scope, and compared in constant time.

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
    let mut c = cred?.split('/');
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
        signed_headers: signed?.split(';').collect(),
        signature: sig?,
    })
}

/// Verify the request's signature against `credentials` (access key id, secret). Returns the
/// access key id that signed it.
pub fn verify(
    credentials: &[(String, String)],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<String, SqsError> {
    let missing = || {
        denied(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(missing)?;
    let a = parse_authorization(auth).ok_or_else(|| {
        denied(
            "IncompleteSignature",
            "Authorization header requires Credential, SignedHeaders and Signature (AWS4-HMAC-SHA256).",
        )
    })?;
    let Some((_, secret)) = credentials.iter().find(|(k, _)| k == a.access_key) else {
        return Err(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| denied("IncompleteSignature", "The request must carry X-Amz-Date."))?;

    // Like AWS: a signature more than 15 minutes away from our clock is refused (replay window).
    let signed_at = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .map_err(|_| {
            denied(
                "IncompleteSignature",
                "X-Amz-Date must be in the form YYYYMMDDTHHMMSSZ.",
            )
        })?
        .and_utc()
        .timestamp_millis();
    if (now_ms - signed_at).abs() > 15 * 60 * 1000 {
        return Err(denied(
            "SignatureDoesNotMatch",
            &format!("Signature expired: {amz_date} is more than 15 minutes away from the server's time."),
        ));
    }
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (uri_encode(&k), uri_encode(&v)))
            .collect();
    query.sort();
    let canonical_query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut canonical_headers = String::new();
    for name in &a.signed_headers {
        let values: Vec<String> = headers
            .get_all(*name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = match headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
    {
        Some(h) if h != "UNSIGNED-PAYLOAD" => h.to_string(),
        _ => hex(&Sha256::digest(body)),
    };
    let canonical_request = format!(
        "{method}\n{path}\n{canonical_query}\n{canonical_headers}\n{}\n{payload_hash}",
        a.signed_headers.join(";")
    );
    let scope = format!("{}/{}/{}/aws4_request", a.date, a.region, a.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), a.date.as_bytes());
    let k_region = hmac(&k_date, a.region.as_bytes());
    let k_service = hmac(&k_region, a.service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex(&hmac(&k_signing, string_to_sign.as_bytes()));
    if expected.as_bytes().ct_eq(a.signature.as_bytes()).into() {
        Ok(a.access_key.to_string())
    } else {
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
        assert!(verify(&creds, &Method::GET, &uri, &headers, b"", SIGNED_AT).is_ok());
        let wrong = vec![("AKIDEXAMPLE".to_string(), "not-the-secret".to_string())];
        assert_eq!(
            verify(&wrong, &Method::GET, &uri, &headers, b"", SIGNED_AT)
                .unwrap_err()
                .name,
            "SignatureDoesNotMatch"
        );
        let unknown = vec![("OTHER".to_string(), "x".to_string())];
        assert_eq!(
            verify(&unknown, &Method::GET, &uri, &headers, b"", SIGNED_AT)
                .unwrap_err()
                .name,
            "InvalidClientTokenId"
        );
        let late = SIGNED_AT + 16 * 60 * 1000;
        let err = verify(&creds, &Method::GET, &uri, &headers, b"", late).unwrap_err();
        assert_eq!(err.name, "SignatureDoesNotMatch");
        assert!(err.message.contains("expired"));
    }
}
