//! `X-Hub-Signature-256` verification: `sha256=` + lowercase hex
//! HMAC-SHA256(key = secret, message = the exact raw body bytes).
//!
//! The comparison is constant-time (`Mac::verify_slice`), and every configured
//! secret is tried so a secret can be rotated without refusing deliveries that
//! GitHub signed with the previous one.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The messages never include the secret or the
/// expected signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no webhook secret is configured")]
    NoSecretConfigured,
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Checks `header` (the raw header value, if any) against `body` with each of
/// `secrets` in turn.
pub fn verify(secrets: &[SecretString], header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecretConfigured);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let digest = parse_header(header)?;
    let matches = secrets.iter().any(|secret| {
        // new_from_slice accepts keys of any length for HMAC.
        HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .map(|mut mac| {
                mac.update(body);
                mac.verify_slice(&digest).is_ok()
            })
            .unwrap_or(false)
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn parse_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let hex_part = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut digest).map_err(|_| SignatureError::Malformed)?;
    Ok(digest)
}

/// The header value GitHub would send for `body` signed with `secret`; used by
/// tests, benchmarks and tools that replay deliveries.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(*s)).collect()
    }

    #[test]
    fn github_documented_vector() {
        let header = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let s = secrets(&["It's a Secret to Everybody"]);
        assert_eq!(verify(&s, Some(header), b"Hello, World!"), Ok(()));
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!").as_bytes(),
            header
        );
    }

    #[test]
    fn refusals_are_distinguished() {
        let s = secrets(&["k"]);
        let good = sign("k", b"body");
        assert_eq!(
            verify(&[], Some(good.as_bytes()), b"body"),
            Err(SignatureError::NoSecretConfigured)
        );
        assert_eq!(verify(&s, None, b"body"), Err(SignatureError::Missing));
        assert_eq!(
            verify(&s, Some(b"sha1=abcd"), b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(b"sha256=zz"), b"body"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(good.as_bytes()), b"body!"),
            Err(SignatureError::Mismatch)
        );
        let upper = good.replace("sha256=", "").to_uppercase();
        assert_eq!(
            verify(&s, Some(format!("sha256={upper}").as_bytes()), b"body"),
            Ok(())
        );
    }

    #[test]
    fn previous_secrets_are_accepted_during_rotation() {
        let s = secrets(&["new", "old"]);
        assert_eq!(verify(&s, Some(sign("old", b"x").as_bytes()), b"x"), Ok(()));
        assert_eq!(
            verify(&s, Some(sign("other", b"x").as_bytes()), b"x"),
            Err(SignatureError::Mismatch)
        );
    }
}
