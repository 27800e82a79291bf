//! Account signing keys and their encryption at rest.
//!
//! Every account owns an Ed25519 and an RSA-2048 key pair. Public halves are stored as Keygen
//! shows them (Ed25519 as hex, RSA as PEM); private halves are sealed with AES-256-GCM under the
//! server's master key, with the account id as associated data so a sealed key cannot be moved
//! to another account's row.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{anyhow, Context};
use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::RsaPrivateKey;
use zeroize::Zeroizing;

/// The 256-bit key that seals account private keys.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let bytes = Zeroizing::new(hex::decode(s.trim()).context("master key must be 64 hex characters")?);
        let arr: [u8; 32] =
            bytes.as_slice().try_into().map_err(|_| anyhow!("master key must be 64 hex characters (32 bytes)"))?;
        Ok(MasterKey(Zeroizing::new(arr)))
    }

    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        OsRng.fill_bytes(&mut k);
        MasterKey(Zeroizing::new(k))
    }

    /// Reads the key from `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_hex(&text)
    }

    /// The key as 64 hex characters (for writing it where an operator keeps it).
    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(*self.0))
    }

    /// Reads the key from `path`, or creates it there (mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            return Self::load(path);
        }
        let key = Self::generate();
        crate::fsutil::write_private(path, hex::encode(*key.0).as_bytes())?;
        Ok(key)
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let cipher = Aes256Gcm::new_from_slice(&*self.0).map_err(|_| anyhow!("bad master key"))?;
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < 12 + 16 {
            return Err(anyhow!("sealed key is truncated"));
        }
        let cipher = Aes256Gcm::new_from_slice(&*self.0).map_err(|_| anyhow!("bad master key"))?;
        let (nonce, ct) = sealed.split_at(12);
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| anyhow!("cannot unseal account key: wrong master key or corrupted data"))
    }
}

/// A freshly generated key set, public halves in Keygen's display forms and private halves sealed.
pub struct NewAccountKeys {
    pub ed25519_public_hex: String,
    pub ed25519_sealed: Vec<u8>,
    pub rsa_public_pem: String,
    pub rsa_sealed: Vec<u8>,
    pub ecdsa_public_pem: String,
    pub ecdsa_sealed: Vec<u8>,
}

/// A new ECDSA P-256 pair: (public PEM, sealed private scalar).
pub fn generate_ecdsa_key(master: &MasterKey, account_id: uuid::Uuid) -> anyhow::Result<(String, Vec<u8>)> {
    use p256::pkcs8::EncodePublicKey as _;
    let key = p256::ecdsa::SigningKey::random(&mut OsRng);
    let public = key
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .map_err(|e| anyhow!("ECDSA public key encoding failed: {e}"))?;
    Ok((public, master.seal(&key.to_bytes(), account_id.as_bytes())?))
}

/// Generates the key pairs for a new account. RSA generation takes a while: runs off the runtime.
pub async fn generate_account_keys(master: &MasterKey, account_id: uuid::Uuid) -> anyhow::Result<NewAccountKeys> {
    let master = master.clone();
    tokio::task::spawn_blocking(move || {
        let aad = account_id.as_bytes();
        let ed = SigningKey::generate(&mut OsRng);
        let rsa = RsaPrivateKey::new(&mut OsRng, 2048).context("RSA key generation failed")?;
        let rsa_der = rsa.to_pkcs8_der().context("RSA key encoding failed")?;
        let (ecdsa_public_pem, ecdsa_sealed) = generate_ecdsa_key(&master, account_id)?;
        Ok(NewAccountKeys {
            ecdsa_public_pem,
            ecdsa_sealed,
            ed25519_public_hex: hex::encode(ed.verifying_key().as_bytes()),
            ed25519_sealed: master.seal(ed.as_bytes(), aad)?,
            rsa_public_pem: rsa
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .context("RSA public key encoding failed")?,
            rsa_sealed: master.seal(rsa_der.as_bytes(), aad)?,
        })
    })
    .await?
}

/// An account's unsealed private keys, for signing.
pub struct AccountKeys {
    pub ed25519: SigningKey,
    pub rsa: RsaPrivateKey,
    /// `None` only for an account created before ECDSA keys existed and not yet backfilled.
    pub ecdsa: Option<p256::ecdsa::SigningKey>,
}

impl AccountKeys {
    pub fn unseal(
        master: &MasterKey,
        account_id: uuid::Uuid,
        ed_sealed: &[u8],
        rsa_sealed: &[u8],
    ) -> anyhow::Result<Self> {
        let aad = account_id.as_bytes();
        let ed_bytes = master.open(ed_sealed, aad)?;
        let ed: [u8; 32] = ed_bytes.as_slice().try_into().map_err(|_| anyhow!("corrupt Ed25519 key"))?;
        let rsa_der = master.open(rsa_sealed, aad)?;
        let rsa = RsaPrivateKey::from_pkcs8_der(&rsa_der).context("corrupt RSA key")?;
        Ok(AccountKeys { ed25519: SigningKey::from_bytes(&ed), rsa, ecdsa: None })
    }

    /// All of an account's keys.
    pub fn for_account(master: &MasterKey, account: &crate::model::Account) -> anyhow::Result<Self> {
        let mut keys = Self::unseal(master, account.id, &account.ed25519_secret, &account.rsa_secret)?;
        if let Some(sealed) = &account.ecdsa_secret {
            let bytes = master.open(sealed, account.id.as_bytes())?;
            keys.ecdsa = Some(p256::ecdsa::SigningKey::from_slice(&bytes).map_err(|_| anyhow!("corrupt ECDSA key"))?);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_binds_to_key_and_aad() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"secret", b"acct-1").unwrap();
        assert_eq!(&**k.open(&sealed, b"acct-1").unwrap(), b"secret");
        assert!(k.open(&sealed, b"acct-2").is_err());
        assert!(MasterKey::generate().open(&sealed, b"acct-1").is_err());
        let mut flipped = sealed;
        flipped[20] ^= 1;
        assert!(k.open(&flipped, b"acct-1").is_err());
    }

    #[tokio::test]
    async fn account_keys_round_trip() {
        let k = MasterKey::generate();
        let id = uuid::Uuid::new_v4();
        let keys = generate_account_keys(&k, id).await.unwrap();
        let unsealed = AccountKeys::unseal(&k, id, &keys.ed25519_sealed, &keys.rsa_sealed).unwrap();
        assert_eq!(hex::encode(unsealed.ed25519.verifying_key().as_bytes()), keys.ed25519_public_hex);
        assert!(keys.rsa_public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
