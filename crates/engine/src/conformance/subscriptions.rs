//! A subscription's own settings that the store must keep: a signing secret's rotation state,
//! message filters with their `filtered` counter, and the pause of a push queue's consumption.

use super::*;
use crate::push::{Rotation, SecretKind};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub async fn secret_rotation_survives_restart_and_put(h: &mut dyn Harness) {
    let c = Ctx::new(h).await;
    let push = c.engine.push();
    let mut s = sub("http://a.example/hook");
    s.signing_secret = Some(SECRET.into());
    push.put("orders", "a", s).await.unwrap();
    let done = push
        .rotate_secret("orders", "a", Rotation::default())
        .await
        .unwrap();
    let new = done.generated.expect("generated");
    assert!(new.starts_with("whsec_") && new != SECRET);
    let in_force = |c: &Ctx| {
        let s = c.engine.push().get("orders", "a").unwrap();
        let v: Vec<String> = s
            .secrets_in_force(c.engine.now())
            .into_iter()
            .map(String::from)
            .collect();
        v
    };
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // Durable: a restart keeps both, and the grace period's end.
    let c = c.restart(h).await;
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // Replacing the subscription with the same secret keeps the rotation going.
    let mut same = sub("http://a.example/other");
    same.signing_secret = Some(new.clone());
    c.engine
        .push()
        .put("orders", "a", same.clone())
        .await
        .unwrap();
    assert_eq!(in_force(&c), vec![new.clone(), SECRET.to_string()]);
    // The old secret stops signing after 24 h.
    c.advance(24 * 3600 - 1);
    assert_eq!(in_force(&c).len(), 2);
    c.advance(1);
    assert_eq!(in_force(&c), vec![new.clone()]);
    // To an ed25519 key: generated, kept apart from the old one for a given grace.
    let done = c
        .engine
        .push()
        .rotate_secret(
            "orders",
            "a",
            Rotation {
                kind: Some(SecretKind::Ed25519),
                grace_seconds: Some(60),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let key = done.generated.unwrap();
    assert!(key.starts_with("whsk_"));
    assert_eq!(in_force(&c), vec![key.clone(), new.clone()]);
    // A replacement with another secret ends the rotation.
    same.signing_secret = Some(SECRET.into());
    c.engine.push().put("orders", "a", same).await.unwrap();
    assert_eq!(in_force(&c), vec![SECRET.to_string()]);
    // A given secret with no grace switches at once; bad input names its field.
    let given = Rotation {
        secret: Some(new.clone()),
        grace_seconds: Some(0),
        ..Default::default()
    };
    c.engine
        .push()
        .rotate_secret("orders", "a", given)
        .await
        .unwrap();
    let c = c.restart(h).await;
    assert_eq!(in_force(&c), vec![new.clone()]);
    let bad = Rotation {
        secret: Some("whsk_AAAA".into()),
        ..Default::default()
    };
    let e = c.engine.push().rotate_secret("orders", "a", bad).await;
    assert!(e.unwrap_err().to_string().starts_with("secret:"));
    assert!(matches!(
        c.engine
            .push()
            .rotate_secret("orders", "nope", Rotation::default())
            .await,
        Err(EngineError::NotFound { .. })
    ));
}
