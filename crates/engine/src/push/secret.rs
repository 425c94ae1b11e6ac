//! A subscription's signing secrets, as the Standard Webhooks specification serializes them:
//! a symmetric `whsec_` key (HMAC-SHA256, signatures `v1,`) or an asymmetric `whsk_` ed25519
//! secret key (signatures `v1a,`; its `whpk_` public key is what receivers hold). This module
//! parses and checks them, generates fresh ones, masks them for every view, and keeps the rule
//! of a rotation: the previous secret still signs until its grace period ends, so a receiver
//! can switch keys without dropping a request. The signing itself is the server's (it owns the
//! request bytes); the engine never computes a signature.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::clock::Millis;
use crate::error::{EngineError, Result};

use super::{Push, Subscription};

/// Limits of secrets and rotation (documented in docs/webhooks.md).
pub mod limits {
    /// How long the previous secret keeps signing after a rotation, by default (24 h).
    pub const GRACE_DEFAULT_S: u64 = 24 * 3600;
    /// The longest grace period (7 days).
    pub const GRACE_MAX_S: u64 = 7 * 24 * 3600;
    /// Bytes of a generated secret (a `whsec_` key, or a `whsk_` ed25519 seed).
    pub const GENERATED_BYTES: usize = 32;
}

const HMAC_PREFIX: &str = "whsec_";
const ED25519_PREFIX: &str = "whsk_";
/// The prefix of an ed25519 public key (`whpk_` + base64 of its 32 bytes).
pub const PUBLIC_PREFIX: &str = "whpk_";

/// Which kind of signature a secret makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SecretKind {
    /// `whsec_`: HMAC-SHA256, `v1,` signatures.
    Hmac,
    /// `whsk_`: ed25519, `v1a,` signatures.
    Ed25519,
}

/// A parsed signing secret.
#[derive(Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// The HMAC key.
    Hmac(Vec<u8>),
    /// The ed25519 seed (the secret key of Standard Webhooks' `whsk_`).
    Ed25519([u8; 32]),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even in a debug log.
        f.write_str(match self {
            SigningKey::Hmac(_) => "SigningKey::Hmac(…)",
            SigningKey::Ed25519(_) => "SigningKey::Ed25519(…)",
        })
    }
}

impl SecretKind {
    /// The name used in the API (`hmac`, `ed25519`).
    pub fn label(self) -> &'static str {
        match self {
            SecretKind::Hmac => "hmac",
            SecretKind::Ed25519 => "ed25519",
        }
    }
}

impl SigningKey {
    /// Parse a secret: `whsk_` + base64 of a 32-byte ed25519 seed, or `whsec_` + base64 of an
    /// HMAC key (the `whsec_` prefix may be left out, as the Standard Webhooks libraries allow).
    /// The error never quotes the secret.
    pub fn parse(secret: &str) -> std::result::Result<SigningKey, String> {
        if let Some(b64) = secret.strip_prefix(ED25519_PREFIX) {
            let seed = STANDARD.decode(b64).map_err(|_| {
                "an ed25519 secret must be \"whsk_\" followed by the standard base64 of its 32-byte seed (Standard Webhooks)".to_string()
            })?;
            let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
                format!(
                    "an ed25519 secret key (whsk_) encodes a 32-byte seed; this one encodes {} bytes",
                    seed.len()
                )
            })?;
            return Ok(SigningKey::Ed25519(seed));
        }
        signing_key(secret).map(SigningKey::Hmac)
    }

    pub fn kind(&self) -> SecretKind {
        match self {
            SigningKey::Hmac(_) => SecretKind::Hmac,
            SigningKey::Ed25519(_) => SecretKind::Ed25519,
        }
    }
}

/// The HMAC key of a Standard Webhooks secret: `whsec_` + base64 of the key (the prefix may be
/// left out, as the Standard Webhooks libraries allow). 24 to 64 bytes are recommended; 1 to
/// 1024 are accepted.
pub fn signing_key(secret: &str) -> std::result::Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix(HMAC_PREFIX).unwrap_or(secret);
    let key = STANDARD.decode(b64).map_err(|_| {
        "must be \"whsec_\" followed by the key in standard base64, or \"whsk_\" followed by an ed25519 seed (Standard Webhooks)"
            .to_string()
    })?;
    if !(1..=1024).contains(&key.len()) {
        return Err(format!(
            "must encode 1 to 1024 bytes of key (24 to 64 recommended); it encodes {}",
            key.len()
        ));
    }
    Ok(key)
}

/// The kind of a secret that is known to be valid (HMAC for anything not `whsk_`).
pub fn kind_of(secret: &str) -> SecretKind {
    if secret.starts_with(ED25519_PREFIX) {
        SecretKind::Ed25519
    } else {
        SecretKind::Hmac
    }
}

/// A fresh secret of `kind`: 32 random bytes from the operating system's generator, as
/// `whsec_…` or `whsk_…`.
pub fn generate(kind: SecretKind) -> Result<String> {
    let mut b = [0u8; limits::GENERATED_BYTES];
    getrandom::getrandom(&mut b)
        .map_err(|e| EngineError::Storage(format!("no random bytes for a secret: {e}")))?;
    let prefix = match kind {
        SecretKind::Hmac => HMAC_PREFIX,
        SecretKind::Ed25519 => ED25519_PREFIX,
    };
    Ok(format!("{prefix}{}", STANDARD.encode(b)))
}

/// A secret as every view shows it: `whsec_` and the first 4 characters of the key (enough to
/// tell two apart), or just `whsk_…` for an ed25519 secret key, whose public key identifies it.
pub fn mask(secret: &str) -> String {
    match kind_of(secret) {
        SecretKind::Ed25519 => format!("{ED25519_PREFIX}…"),
        SecretKind::Hmac => {
            let rest = secret.strip_prefix(HMAC_PREFIX).unwrap_or(secret);
            format!("{HMAC_PREFIX}{}…", rest.chars().take(4).collect::<String>())
        }
    }
}

/// The previous secret of a rotation, which keeps signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: String,
    pub expires_at: Millis,
}

/// What a rotation asks for: a given secret, or one generated of a kind, and a grace period.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// The new secret; None: generate one.
    pub secret: Option<String>,
    /// The kind to generate (None: the kind of the current secret, HMAC if there is none).
    /// With `secret` given it must match it.
    pub kind: Option<SecretKind>,
    /// How long the old secret keeps signing, 0 to [`limits::GRACE_MAX_S`] (None: 24 h).
    pub grace_seconds: Option<u64>,
}

impl Rotation {
    /// The new secret (and whether it was generated here), checked.
    pub fn new_secret(&self, current: Option<&str>) -> Result<(String, bool)> {
        if let Some(g) = self.grace_seconds {
            crate::validate::range("grace_seconds", g, 0, limits::GRACE_MAX_S)?;
        }
        match &self.secret {
            Some(s) => {
                let key = SigningKey::parse(s).map_err(|m| EngineError::invalid("secret", m))?;
                if let Some(k) = self.kind {
                    if k != key.kind() {
                        return Err(EngineError::invalid(
                            "type",
                            format!(
                                "is {} but the secret given is {} (whsec_: hmac, whsk_: ed25519); give one or the other",
                                k.label(),
                                key.kind().label()
                            ),
                        ));
                    }
                }
                if current == Some(s.as_str()) {
                    return Err(EngineError::invalid(
                        "secret",
                        "is the subscription's current secret; a rotation needs a new one",
                    ));
                }
                Ok((s.clone(), false))
            }
            None => {
                let kind = self
                    .kind
                    .unwrap_or_else(|| current.map_or(SecretKind::Hmac, kind_of));
                Ok((generate(kind)?, true))
            }
        }
    }

    /// The grace period in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        self.grace_seconds.unwrap_or(limits::GRACE_DEFAULT_S) as i64 * 1000
    }
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub subscription: Subscription,
    /// The new secret in full when it was generated here (shown once, to the caller who
    /// asked); None when the caller gave it.
    pub generated: Option<String>,
}

impl Push {
    /// Rotate a subscription's signing secret: the new one signs from now on, and the current
    /// one keeps signing beside it until the grace period ends (a second rotation within it
    /// drops the oldest at once). Durable on return, like any change of settings.
    pub async fn rotate_secret(&self, queue: &str, name: &str, r: Rotation) -> Result<Rotated> {
        let mut sub = self.get(queue, name)?;
        let (secret, generated) = r.new_secret(sub.signing_secret.as_deref())?;
        let now = self.core.now();
        let grace = r.grace_ms();
        sub.previous_secret = match sub.signing_secret.take() {
            Some(old) if grace > 0 => Some(PreviousSecret {
                secret: old,
                expires_at: now + grace,
            }),
            _ => None,
        };
        sub.signing_secret = Some(secret.clone());
        sub.updated_at = now;
        sub.validate()?;
        self.save(queue, name, &sub).await?;
        Ok(Rotated {
            subscription: sub,
            generated: generated.then_some(secret),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_kinds_and_never_quotes_the_secret() {
        let h = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(h.kind(), SecretKind::Hmac);
        let seed = STANDARD.encode([7u8; 32]);
        let e = SigningKey::parse(&format!("whsk_{seed}")).unwrap();
        assert_eq!(e, SigningKey::Ed25519([7u8; 32]));
        assert_eq!(format!("{e:?}"), "SigningKey::Ed25519(…)");
        let short = format!("whsk_{}", STANDARD.encode([1u8; 16]));
        let err = SigningKey::parse(&short).unwrap_err();
        assert!(
            err.contains("16 bytes") && !err.contains(&short[5..]),
            "{err}"
        );
        assert!(SigningKey::parse("whsk_not base64!").is_err());
    }

    #[test]
    fn generated_secrets_are_fresh_and_of_their_kind() {
        let a = generate(SecretKind::Hmac).unwrap();
        let b = generate(SecretKind::Hmac).unwrap();
        assert_ne!(a, b);
        assert_eq!(signing_key(&a).unwrap().len(), 32);
        let k = generate(SecretKind::Ed25519).unwrap();
        assert_eq!(SigningKey::parse(&k).unwrap().kind(), SecretKind::Ed25519);
    }

    #[test]
    fn masks_keep_no_ed25519_key_material() {
        assert_eq!(
            mask("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "whsec_MfKQ…"
        );
        assert_eq!(mask(&generate(SecretKind::Ed25519).unwrap()), "whsk_…");
    }

    #[test]
    fn rotation_checks_its_fields() {
        let r = Rotation {
            grace_seconds: Some(limits::GRACE_MAX_S + 1),
            ..Default::default()
        };
        assert!(r
            .new_secret(None)
            .unwrap_err()
            .to_string()
            .starts_with("grace_seconds:"));
        let same = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
        let r = Rotation {
            secret: Some(same.clone()),
            ..Default::default()
        };
        assert!(r
            .new_secret(Some(&same))
            .unwrap_err()
            .to_string()
            .starts_with("secret:"));
        let r = Rotation {
            secret: Some(same.clone()),
            kind: Some(SecretKind::Ed25519),
            ..Default::default()
        };
        assert!(r
            .new_secret(None)
            .unwrap_err()
            .to_string()
            .starts_with("type:"));
        let (k, generated) = Rotation::default().new_secret(Some("whsk_x")).unwrap();
        assert!(generated && k.starts_with("whsk_"));
        assert_eq!(Rotation::default().grace_ms(), 86_400_000);
    }
}
