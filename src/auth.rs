//! Client authentication (PROTOCOL.md "Auth"): HS256 JSON Web Tokens
//! checked at the upgrade, before any session exists.
//!
//! A token is `base64url(header).base64url(claims).base64url(signature)`
//! (RFC 7519, RFC 7515). Only `alg: HS256` is accepted (no `none`, no
//! algorithm chosen by the token beyond that); the signature is checked in
//! constant time by `hmac`'s `verify_slice`; `exp` is required, `nbf` is
//! honoured when present. Cost: one HMAC-SHA256 over the token, O(len).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Largest token accepted (a bound on work per upgrade).
pub const MAX_TOKEN: usize = 4096;

/// What a valid token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `sub`: becomes the member's `meta` when the client gives none.
    pub sub: Option<String>,
    /// `rooms`: names or `prefix*` patterns the client may join or create;
    /// `None` means any room.
    pub rooms: Option<Vec<String>>,
}

impl Grant {
    /// Whether this grant allows `room`.
    pub fn allows(&self, room: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(list) => list.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => room.starts_with(prefix),
                None => p == room,
            }),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    rooms: Option<Vec<String>>,
}

/// Why a token was refused (logged; the client only sees 401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Malformed(&'static str),
    BadSignature,
    Expired,
    NotYetValid,
}

fn b64url() -> &'static base64::engine::GeneralPurpose {
    &base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Checks `token` against `key` at the current time.
pub fn verify(key: &[u8], token: Option<&str>) -> Result<Grant, Refusal> {
    verify_at(key, token, now_secs())
}

/// Checks `token` against `key` as of `now` (seconds since the epoch).
pub fn verify_at(key: &[u8], token: Option<&str>, now: f64) -> Result<Grant, Refusal> {
    let token = token.ok_or(Refusal::Missing)?;
    if token.len() > MAX_TOKEN {
        return Err(Refusal::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed("not three parts"));
    };
    let header: Header = b64url()
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Refusal::Malformed("bad header"))?;
    if header.alg != "HS256" {
        return Err(Refusal::Malformed("alg is not HS256"));
    }
    let sig = b64url()
        .decode(s)
        .map_err(|_| Refusal::Malformed("bad signature encoding"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| Refusal::BadSignature)?;
    mac.update(&token.as_bytes()[..h.len() + 1 + c.len()]);
    mac.verify_slice(&sig).map_err(|_| Refusal::BadSignature)?;
    let claims: Claims = b64url()
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(Refusal::Malformed("bad claims"))?;
    match claims.exp {
        None => return Err(Refusal::Malformed("no exp")),
        Some(exp) if now >= exp => return Err(Refusal::Expired),
        Some(_) => {}
    }
    if claims.nbf.is_some_and(|nbf| now < nbf) {
        return Err(Refusal::NotYetValid);
    }
    Ok(Grant {
        sub: claims.sub,
        rooms: claims.rooms,
    })
}

/// Signs claims (JSON) with `key`: for tests and tools.
pub fn sign(key: &[u8], claims_json: &str) -> String {
    let h = b64url().encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let c = b64url().encode(claims_json.as_bytes());
    let signing = format!("{h}.{c}");
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let sig = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(signing.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{signing}.{}", b64url().encode(sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"secret";

    #[test]
    fn valid_token_grants_sub_and_rooms() {
        let t = sign(
            KEY,
            r#"{"sub":"alice","exp":2000,"rooms":["lobby","game-*"]}"#,
        );
        let g = verify_at(KEY, Some(&t), 1000.0).unwrap();
        assert_eq!(g.sub.as_deref(), Some("alice"));
        assert!(g.allows("lobby"));
        assert!(g.allows("game-7"));
        assert!(!g.allows("lobby2"));
        assert!(!g.allows("gam"));
    }

    #[test]
    fn refusals() {
        let t = sign(KEY, r#"{"exp":2000}"#);
        assert_eq!(verify_at(KEY, Some(&t), 2000.0), Err(Refusal::Expired));
        assert_eq!(
            verify_at(b"other", Some(&t), 1.0),
            Err(Refusal::BadSignature)
        );
        assert_eq!(verify_at(KEY, None, 1.0), Err(Refusal::Missing));
        let t = sign(KEY, r#"{"exp":2000,"nbf":1500}"#);
        assert_eq!(verify_at(KEY, Some(&t), 1000.0), Err(Refusal::NotYetValid));
        let t = sign(KEY, r#"{"sub":"x"}"#);
        assert!(matches!(
            verify_at(KEY, Some(&t), 1.0),
            Err(Refusal::Malformed(_))
        ));
        assert!(matches!(
            verify_at(KEY, Some("a.b"), 1.0),
            Err(Refusal::Malformed(_))
        ));
        // A token claiming alg none, with an empty signature.
        let none = format!(
            "{}.{}.",
            b64url().encode(br#"{"alg":"none"}"#),
            b64url().encode(br#"{"exp":9999999999}"#)
        );
        assert!(verify_at(KEY, Some(&none), 1.0).is_err());
        // Tampered claims keep the old signature.
        let t = sign(KEY, r#"{"exp":2000,"rooms":["a"]}"#);
        let mut p: Vec<&str> = t.split('.').collect();
        let forged = b64url().encode(br#"{"exp":2000,"rooms":["*"]}"#);
        p[1] = &forged;
        assert_eq!(
            verify_at(KEY, Some(&p.join(".")), 1.0),
            Err(Refusal::BadSignature)
        );
    }
}
