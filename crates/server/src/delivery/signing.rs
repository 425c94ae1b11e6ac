//! Standard Webhooks signatures over `id.timestamp.body`: `v1,<base64 HMAC-SHA256>` with a
//! `whsec_` key, `v1a,<base64 ed25519>` with a `whsk_` secret key. During a secret rotation a
//! request carries one signature per secret in force, space-separated in `webhook-signature`,
//! as the specification allows. The engine decides which secrets are in force
//! (`Subscription::secrets_in_force`); this module only computes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use sluice_engine::push::secret::PUBLIC_PREFIX;
use sluice_engine::push::SigningKey;

/// The signed content of Standard Webhooks: `id.timestamp.body`.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp.to_string();
    let mut v = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    v.extend_from_slice(id.as_bytes());
    v.push(b'.');
    v.extend_from_slice(ts.as_bytes());
    v.push(b'.');
    v.extend_from_slice(body);
    v
}

/// `webhook-signature` of Standard Webhooks: `v1,` + base64(HMAC-SHA256(key, "id.ts.body")).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&signed_content(id, timestamp, body));
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// One signature with `key`: `v1,…` (HMAC) or `v1a,…` (ed25519).
fn sign_with(key: &SigningKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    match key {
        SigningKey::Hmac(k) => sign(k, id, timestamp, body),
        SigningKey::Ed25519(seed) => {
            let sk = ed25519_dalek::SigningKey::from_bytes(seed);
            let sig = sk.sign(&signed_content(id, timestamp, body));
            format!("v1a,{}", STANDARD.encode(sig.to_bytes()))
        }
    }
}

/// The `webhook-signature` value for the secrets in force: one signature each, in order
/// (the newest first), space-separated. None without secrets. A secret that does not parse
/// (validated when it was stored, so never in practice) is skipped.
pub fn signature_header(secrets: &[&str], id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let sigs: Vec<String> = secrets
        .iter()
        .filter_map(|s| SigningKey::parse(s).ok())
        .map(|k| sign_with(&k, id, timestamp, body))
        .collect();
    (!sigs.is_empty()).then(|| sigs.join(" "))
}

/// The `whpk_` public key of an ed25519 secret key (None for an HMAC secret): what receivers
/// verify `v1a` signatures with. Safe to show to anyone.
pub fn public_key(secret: &str) -> Option<String> {
    match SigningKey::parse(secret).ok()? {
        SigningKey::Ed25519(seed) => {
            let vk = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            Some(format!("{PUBLIC_PREFIX}{}", STANDARD.encode(vk.to_bytes())))
        }
        SigningKey::Hmac(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier as _;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example from the Standard Webhooks specification's test vectors.
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn ed25519_signatures_verify_with_the_public_key_only() {
        // RFC 8032's first test key: its seed and public key.
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let seed: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let secret = format!("whsk_{}", STANDARD.encode(&seed));
        let pk = public_key(&secret).unwrap();
        assert_eq!(pk, "whpk_11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
        let header = signature_header(&[&secret], "msg_1", 1614265330, b"{}").unwrap();
        let sig = header.strip_prefix("v1a,").unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&STANDARD.decode(sig).unwrap()).unwrap();
        let raw: [u8; 32] = STANDARD.decode(&pk[5..]).unwrap().try_into().unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap();
        vk.verify(b"msg_1.1614265330.{}", &sig).unwrap();
        assert!(vk.verify(b"msg_1.1614265331.{}", &sig).is_err());
        assert_eq!(public_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    }

    #[test]
    fn a_rotation_sends_one_signature_per_secret_newest_first() {
        let new = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let old = format!("whsk_{}", STANDARD.encode([3u8; 32]));
        let h = signature_header(&[new, &old], "id", 1, b"x").unwrap();
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            sign(
                &STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
                "id",
                1,
                b"x"
            )
        );
        assert!(parts[1].starts_with("v1a,"));
        assert_eq!(signature_header(&[], "id", 1, b"x"), None);
    }
}
