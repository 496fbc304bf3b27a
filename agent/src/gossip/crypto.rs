//! Gossip encryption (`-encrypt`): every datagram sealed with AES-GCM under the shared key, a
//! random 96-bit nonce per packet. Wire format: `[version=1][nonce: 12][ciphertext + tag: 16]`.
//! Anything that does not open under the key (another key, no key, garbage) is rejected.

use aes_gcm::aead::Aead;
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::{AesGcm, KeyInit};
use base64::Engine;
use rand::RngCore;

type Aes128Gcm = AesGcm<Aes128, aes_gcm::aes::cipher::consts::U12>;
type Aes192Gcm = AesGcm<Aes192, aes_gcm::aes::cipher::consts::U12>;
type Aes256Gcm = AesGcm<Aes256, aes_gcm::aes::cipher::consts::U12>;

const VERSION: u8 = 1;
const NONCE: usize = 12;
const TAG: usize = 16;
/// Bytes an encrypted packet carries on top of its plaintext.
pub const OVERHEAD: usize = 1 + NONCE + TAG;

/// The shared gossip key.
pub enum Keyring {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(..)")
    }
}

impl Keyring {
    /// From the base64 text of `-encrypt` / `encrypt` (16, 24 or 32 bytes).
    pub fn from_base64(text: &str) -> Result<Keyring, String> {
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("encrypt has invalid key: {e}"))?;
        let bad = |_| "encrypt has invalid key".to_string();
        Ok(match key.len() {
            16 => Keyring::Aes128(Box::new(Aes128Gcm::new_from_slice(&key).map_err(bad)?)),
            24 => Keyring::Aes192(Box::new(Aes192Gcm::new_from_slice(&key).map_err(bad)?)),
            32 => Keyring::Aes256(Box::new(Aes256Gcm::new_from_slice(&key).map_err(bad)?)),
            n => {
                return Err(format!(
                    "encrypt has invalid key: the key must be 16, 24 or 32 bytes, got {n}"
                ))
            }
        })
    }

    /// Seals one packet.
    pub fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE];
        rand::thread_rng().fill_bytes(&mut nonce);
        let n = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce);
        let sealed = match self {
            Keyring::Aes128(c) => c.encrypt(&n, plain),
            Keyring::Aes192(c) => c.encrypt(&n, plain),
            Keyring::Aes256(c) => c.encrypt(&n, plain),
        }
        .ok()?;
        let mut out = Vec::with_capacity(OVERHEAD + plain.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Opens one packet; `None` when it is not ours (wrong key, not encrypted, truncated).
    pub fn open(&self, packet: &[u8]) -> Option<Vec<u8>> {
        if packet.len() < OVERHEAD || packet[0] != VERSION {
            return None;
        }
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&packet[1..1 + NONCE]);
        let n = aes_gcm::aead::Nonce::<Aes256Gcm>::from(nonce);
        let body = &packet[1 + NONCE..];
        match self {
            Keyring::Aes128(c) => c.decrypt(&n, body),
            Keyring::Aes192(c) => c.decrypt(&n, body),
            Keyring::Aes256(c) => c.decrypt(&n, body),
        }
        .ok()
    }
}

/// A new random 32-byte key, base64 (what `muster keygen` prints).
pub fn generate_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    base64::engine::general_purpose::STANDARD.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejection() {
        for key in [
            generate_key(),
            "cg8StVXbQJ0gPvMd9o7yrg==".to_string(),
            base64::engine::general_purpose::STANDARD.encode([7u8; 24]),
        ] {
            let ring = Keyring::from_base64(&key).expect("key");
            let sealed = ring.seal(b"hello").expect("seal");
            assert_eq!(sealed.len(), 5 + OVERHEAD);
            assert_eq!(ring.open(&sealed).as_deref(), Some(&b"hello"[..]));
            // Two seals of the same text differ (random nonce).
            assert_ne!(ring.seal(b"hello"), Some(sealed.clone()));
            let other = Keyring::from_base64(&generate_key()).expect("key");
            assert_eq!(other.open(&sealed), None);
            let mut tampered = sealed.clone();
            let last = tampered.len() - 1;
            tampered[last] ^= 1;
            assert_eq!(ring.open(&tampered), None);
            assert_eq!(ring.open(b""), None);
            assert_eq!(ring.open(&sealed[..10]), None);
        }
        assert!(Keyring::from_base64("YWJj").is_err());
        assert!(Keyring::from_base64("not base64!").is_err());
    }
}
