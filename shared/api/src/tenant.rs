//! Tenant API keys. A key is shown once, when it is made; the store keeps its SHA-256 only, so
//! a leaked store leaks no key. A key reads `efk_<tenant>_<secret>`: the tenant part finds the
//! record, the secret proves it.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A key's bytes of secret (256 bits).
const SECRET_BYTES: usize = 32;

/// Why a presented key is refused. Deliberately says nothing about which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the API key is missing or malformed; send it as 'Authorization: Bearer efk_...'")]
    Malformed,
    #[error("the API key is not valid")]
    Invalid,
    #[error("no randomness available to make a key: {0}")]
    Entropy(String),
}

/// A new key: the text to hand to the user once, and the hash to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub tenant: String,
    pub key: String,
    pub hash: String,
    /// The secret that signs the tenant's webhooks (`whsec_...`), also shown once.
    pub webhook_secret: String,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn is_tenant_id(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Makes a key for `tenant` (lower case letters, digits and `-`).
pub fn generate(tenant: &str) -> Result<NewKey, KeyError> {
    if !is_tenant_id(tenant) {
        return Err(KeyError::Malformed);
    }
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Entropy(e.to_string()))?;
    let key = format!("efk_{tenant}_{}", hex::encode(secret));
    getrandom::fill(&mut secret).map_err(|e| KeyError::Entropy(e.to_string()))?;
    Ok(NewKey {
        tenant: tenant.to_owned(),
        hash: hash(&key),
        key,
        webhook_secret: format!("whsec_{}", hex::encode(secret)),
    })
}

/// The tenant a presented key claims, to look up its stored hash.
pub fn tenant_of(key: &str) -> Result<&str, KeyError> {
    let rest = key.strip_prefix("efk_").ok_or(KeyError::Malformed)?;
    let (tenant, secret) = rest.rsplit_once('_').ok_or(KeyError::Malformed)?;
    if !is_tenant_id(tenant) || secret.len() != SECRET_BYTES * 2 {
        return Err(KeyError::Malformed);
    }
    Ok(tenant)
}

/// Checks a presented key against the stored hash, in constant time.
pub fn verify(key: &str, stored_hash: &str) -> Result<(), KeyError> {
    tenant_of(key)?;
    let presented = hash(key);
    if presented.as_bytes().ct_eq(stored_hash.as_bytes()).into() {
        Ok(())
    } else {
        Err(KeyError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_checked_against_its_hash_only() {
        let k = generate("acme-events").expect("key");
        assert!(k.key.starts_with("efk_acme-events_"));
        assert!(
            !k.hash.contains(&k.key[16..]),
            "the hash does not hold the secret"
        );
        assert_eq!(tenant_of(&k.key), Ok("acme-events"));
        assert_eq!(verify(&k.key, &k.hash), Ok(()));
        let other = generate("acme-events").expect("key");
        assert_ne!(other.key, k.key);
        assert!(k.webhook_secret.starts_with("whsec_") && k.webhook_secret.len() == 70);
        assert_ne!(k.webhook_secret, other.webhook_secret);
        assert_eq!(verify(&other.key, &k.hash), Err(KeyError::Invalid));
    }

    #[test]
    fn malformed_keys_are_refused_before_any_lookup() {
        for bad in [
            "",
            "Bearer x",
            "efk_",
            "efk_acme",
            "efk_ACME_00",
            "efk_acme_xyz",
        ] {
            assert_eq!(tenant_of(bad), Err(KeyError::Malformed), "{bad}");
        }
        assert_eq!(generate("Not A Tenant"), Err(KeyError::Malformed));
    }
}
