//! `priv_validator_key.json`: the validator's consensus key, loaded only after
//! proving that its address and public key belong to its private key.
//!
//! ```json
//! {
//!   "address": "<HEX, 20 bytes>",
//!   "pub_key": {"type": "tendermint/PubKeySecp256k1", "value": "<b64, 33 bytes compressed>"},
//!   "priv_key": {"type": "tendermint/PrivKeySecp256k1", "value": "<b64, 32 bytes>"}
//! }
//! ```
//!
//! Ed25519 keys (`tendermint/PubKeyEd25519`, 32 bytes; `tendermint/PrivKeyEd25519`,
//! 64 bytes = seed || public key) are supported too. Addresses: secp256k1
//! `RIPEMD160(SHA256(pub))`, ed25519 `SHA256(pub)[..20]`.
//!
//! S5 — keys never travel: private bytes live in [`Zeroizing`] buffers, `Debug`
//! prints `[redacted]`, and no error message quotes any part of the private
//! value (decoder details that could echo a character are dropped on purpose).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use k256::ecdsa::signature::{Signer as _, Verifier as _};
use k256::elliptic_curve::rand_core::{CryptoRngCore, OsRng, RngCore as _};
use ripemd::Ripemd160;
use serde_json::Value;
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::fsutil::{self, Install, Mode};

/// Largest key file [`ValidatorKey::load_secret`] reads.
pub const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// Length of a validator address.
pub const ADDRESS_LEN: usize = 20;

/// The consensus key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// secp256k1 (Story's validators).
    Secp256k1,
    /// ed25519 (CometBFT's default).
    Ed25519,
}

impl KeyType {
    /// Amino name of the public key, e.g. `tendermint/PubKeySecp256k1`.
    pub fn pub_key_type(self) -> &'static str {
        match self {
            KeyType::Secp256k1 => "tendermint/PubKeySecp256k1",
            KeyType::Ed25519 => "tendermint/PubKeyEd25519",
        }
    }

    /// Amino name of the private key, e.g. `tendermint/PrivKeySecp256k1`.
    pub fn priv_key_type(self) -> &'static str {
        match self {
            KeyType::Secp256k1 => "tendermint/PrivKeySecp256k1",
            KeyType::Ed25519 => "tendermint/PrivKeyEd25519",
        }
    }

    /// Parse an amino public key name (as in `/status` `validator_info.pub_key.type`).
    pub fn from_pub_key_type(name: &str) -> Option<KeyType> {
        [KeyType::Secp256k1, KeyType::Ed25519]
            .into_iter()
            .find(|t| t.pub_key_type() == name)
    }

    fn from_priv_key_type(name: &str) -> Option<KeyType> {
        [KeyType::Secp256k1, KeyType::Ed25519]
            .into_iter()
            .find(|t| t.priv_key_type() == name)
    }

    fn pub_len(self) -> usize {
        match self {
            KeyType::Secp256k1 => 33,
            KeyType::Ed25519 => 32,
        }
    }

    fn priv_len(self) -> usize {
        match self {
            KeyType::Secp256k1 => 32,
            KeyType::Ed25519 => 64,
        }
    }
}

/// A validator public key. Safe to log and to send anywhere.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    key_type: KeyType,
    bytes: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({}, {}, address {})",
            self.key_type.pub_key_type(),
            self.to_base64(),
            self.address_hex()
        )
    }
}

impl PublicKey {
    /// Validate and wrap raw public key bytes (33-byte compressed secp256k1
    /// point, or 32-byte ed25519 point).
    pub fn from_bytes(key_type: KeyType, bytes: &[u8]) -> Result<Self, KeyErrorKind> {
        let field = "pub_key.value";
        if bytes.len() != key_type.pub_len() {
            return Err(KeyErrorKind::Length {
                field,
                expected: key_type.pub_len(),
                found: bytes.len(),
            });
        }
        let valid = match key_type {
            // Compressed form only: that is what CometBFT hashes into the address.
            KeyType::Secp256k1 => {
                matches!(bytes.first(), Some(2 | 3))
                    && k256::ecdsa::VerifyingKey::from_sec1_bytes(bytes).is_ok()
            }
            KeyType::Ed25519 => <[u8; 32]>::try_from(bytes)
                .ok()
                .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                .is_some(),
        };
        if !valid {
            return Err(KeyErrorKind::Invalid {
                field,
                what: "a valid public key point",
            });
        }
        Ok(PublicKey {
            key_type,
            bytes: bytes.to_vec(),
        })
    }

    /// The algorithm.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Base64 of the key bytes, as in the key file and in `/status`.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&self.bytes)
    }

    /// The 20-byte validator address CometBFT derives from this key.
    pub fn address(&self) -> [u8; ADDRESS_LEN] {
        let sha = Sha256::digest(&self.bytes);
        let mut out = [0u8; ADDRESS_LEN];
        match self.key_type {
            KeyType::Secp256k1 => out.copy_from_slice(&Ripemd160::digest(sha)),
            KeyType::Ed25519 => out.copy_from_slice(&sha[..ADDRESS_LEN]),
        }
        out
    }

    /// Upper-case hex address, as CometBFT prints it.
    pub fn address_hex(&self) -> String {
        hex::encode_upper(self.address())
    }

    /// Check a signature the way CometBFT does: secp256k1 64-byte `r||s` over
    /// SHA-256 of `msg`, high-S rejected; ed25519 standard verification.
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        match self.key_type {
            KeyType::Secp256k1 => {
                let Ok(vk) = k256::ecdsa::VerifyingKey::from_sec1_bytes(&self.bytes) else {
                    return false;
                };
                let Ok(sig) = k256::ecdsa::Signature::from_slice(signature) else {
                    return false;
                };
                // Malleable (high-S) signatures are invalid in CometBFT.
                sig.normalize_s().is_none() && vk.verify(msg, &sig).is_ok()
            }
            KeyType::Ed25519 => {
                let Ok(pk) = <[u8; 32]>::try_from(self.bytes.as_slice()) else {
                    return false;
                };
                let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(&pk) else {
                    return false;
                };
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                vk.verify(msg, &sig).is_ok()
            }
        }
    }
}

/// The secret half. Only the 32-byte secret is kept (for ed25519 the seed; its
/// public half is re-derived), always inside `Zeroizing`.
enum Secret {
    Secp256k1(Zeroizing<[u8; 32]>),
    Ed25519(Zeroizing<[u8; 32]>),
}

/// A loaded, verified validator key.
pub struct ValidatorKey {
    public: PublicKey,
    secret: Secret,
}

impl fmt::Debug for ValidatorKey {
    /// Public parts only (S5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatorKey")
            .field("address", &self.public.address_hex())
            .field("pub_key", &self.public)
            .field("priv_key", &format_args!("[redacted]"))
            .finish()
    }
}

/// A key-file problem and the file it concerns.
#[derive(Debug, Error)]
#[error("{}: {kind}", path.display())]
pub struct KeyError {
    /// The key file.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: KeyErrorKind,
}

/// What is wrong with a key file. No variant ever carries private key bytes.
#[derive(Debug, Error)]
pub enum KeyErrorKind {
    /// Story's password-protected key. Automatic failover would need the
    /// password at every start, so SyncGuard refuses it.
    #[error(
        "this is an encrypted (password-protected) validator key; story asks for its password \
         when it starts, so automatic failover cannot use it — install the plain \
         priv_validator_key.json (mode 0600) on SyncGuard-managed nodes"
    )]
    Encrypted,
    /// Reading or writing failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A private key file that its group or others may read (or that is not a regular
    /// file): refused by [`ValidatorKey::load_secret`].
    #[error("is readable by group or others (mode {mode:o}); a private key must be mode 0600: run `chmod 600` on it")]
    LooseMode {
        /// The file's permission bits.
        mode: u32,
    },
    /// The path is a symbolic link or not a regular file.
    #[error("{what}; a private key must be a regular file (not a link), mode 0600")]
    NotRegular {
        /// What it is instead.
        what: String,
    },
    /// Not JSON, or cut short. Only the position is reported, never the text.
    #[error("invalid JSON ({category}) at line {line} column {column}")]
    Json {
        /// `syntax` or `truncated`.
        category: &'static str,
        /// Line of the problem.
        line: usize,
        /// Column of the problem.
        column: usize,
    },
    /// A required field is absent or has the wrong JSON type.
    #[error("field `{field}` is missing or not {expected}")]
    Missing {
        /// Dotted field path.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A `type` string we do not know.
    #[error("field `{field}`: unsupported key type {found:?}")]
    UnsupportedType {
        /// Dotted field path.
        field: &'static str,
        /// The type string found, only when it looks like an amino type name
        /// (short, with a `/`); otherwise a placeholder.
        found: String,
    },
    /// `pub_key.type` and `priv_key.type` name different algorithms.
    #[error("pub_key type {pub_type} does not match priv_key type {priv_type}")]
    TypeMismatch {
        /// From the file.
        pub_type: String,
        /// From the file.
        priv_type: String,
    },
    /// A value does not decode (the decoder's detail is dropped: it could
    /// quote a character of a private key).
    #[error("field `{field}` is not {what}")]
    Invalid {
        /// Dotted field path.
        field: &'static str,
        /// What it must be.
        what: &'static str,
    },
    /// A decoded value has the wrong length.
    #[error("field `{field}`: expected {expected} bytes, found {found}")]
    Length {
        /// Dotted field path.
        field: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        found: usize,
    },
    /// `pub_key` is not the public key of `priv_key`.
    /// The file's value is not quoted: if fields were swapped by mistake it
    /// could be private bytes.
    #[error("pub_key.value does not belong to priv_key (whose public key is {derived})")]
    PubKeyMismatch {
        /// Derived from the private key (base64).
        derived: String,
    },
    /// An ed25519 `priv_key` whose public half is not its seed's public key.
    #[error("priv_key's embedded public half does not match its seed (corrupted key)")]
    EmbeddedPubKeyMismatch,
    /// `address` is not the address of the key.
    #[error("address {in_file} does not match the key (which gives {derived})")]
    AddressMismatch {
        /// From the file, only when it is a well-formed 20-byte hex address
        /// (too short to be a private key); otherwise a placeholder.
        in_file: String,
        /// Derived from the key.
        derived: String,
    },
    /// Signing failed (not expected with a verified key).
    #[error("signing failed")]
    Sign,
}

impl KeyErrorKind {
    fn at(self, path: &Path) -> KeyError {
        KeyError {
            path: path.to_path_buf(),
            kind: self,
        }
    }
}

impl ValidatorKey {
    /// Load and verify a key file. A path ending in `.enc`, or a missing
    /// `X.json` next to an existing `X.enc`, is [`KeyErrorKind::Encrypted`].
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        if path.extension().is_some_and(|e| e == "enc") {
            return Err(KeyErrorKind::Encrypted.at(path));
        }
        let bytes = match fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let enc = path.with_extension("enc");
                if enc.exists() {
                    return Err(KeyErrorKind::Encrypted.at(&enc));
                }
                return Err(KeyErrorKind::Io {
                    action: "read",
                    source: e,
                }
                .at(path));
            }
            Err(e) => {
                return Err(KeyErrorKind::Io {
                    action: "read",
                    source: e,
                }
                .at(path))
            }
        };
        ValidatorKey::from_json(&bytes).map_err(|k| k.at(path))
    }

    /// [`ValidatorKey::load`] for a key that will sign (the key store, the live key): also
    /// refuses a file its group or others may read, naming the fix (`chmod 600 <path>`),
    /// and a symbolic link (whoever controls the link chooses the key). The mode is checked
    /// on the open file, so the check and the read see the same file.
    pub fn load_secret(path: &Path) -> Result<Self, KeyError> {
        use std::io::Read as _;
        use std::os::unix::fs::PermissionsExt as _;
        if path.extension().is_some_and(|e| e == "enc") {
            return Err(KeyErrorKind::Encrypted.at(path));
        }
        let io_at = |action: &'static str| {
            move |source: io::Error| KeyErrorKind::Io { action, source }.at(path)
        };
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                return Err(KeyErrorKind::NotRegular {
                    what: format!("is a symbolic link to {target}"),
                }
                .at(path));
            }
            Ok(_) => {}
            // Missing: `load` reports it (and the `.enc` hint).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return ValidatorKey::load(path),
            Err(e) => return Err(io_at("inspect")(e)),
        }
        // Whoever could swap a link in between the check and the open could write the
        // directory, i.e. replace the key anyway; the mode is checked on the open file.
        let mut file = fs::File::open(path).map_err(io_at("open"))?;
        let meta = file.metadata().map_err(io_at("inspect"))?;
        if !meta.is_file() {
            return Err(KeyErrorKind::NotRegular {
                what: "is not a regular file".into(),
            }
            .at(path));
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyErrorKind::LooseMode { mode }.at(path));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(512));
        // A key file is a few hundred bytes; do not read an arbitrary file whole.
        (&mut file)
            .take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_at("read"))?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyErrorKind::NotRegular {
                what: format!("is larger than {MAX_KEY_FILE_BYTES} bytes"),
            }
            .at(path));
        }
        ValidatorKey::from_json(&bytes).map_err(|k| k.at(path))
    }

    /// Load, verify, and keep only the public part (for `syncguard key show`).
    pub fn load_public(path: &Path) -> Result<PublicKey, KeyError> {
        ValidatorKey::load(path).map(|k| k.public)
    }

    /// Parse and verify the JSON text of a key file.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeyErrorKind> {
        let mut root: Value = serde_json::from_slice(bytes).map_err(|e| KeyErrorKind::Json {
            category: if e.is_eof() { "truncated" } else { "syntax" },
            line: e.line(),
            column: e.column(),
        })?;
        // Move the private string out first so it can be wiped after use.
        let priv_value = match root.pointer_mut("/priv_key/value") {
            Some(Value::String(s)) => Zeroizing::new(std::mem::take(s)),
            _ => {
                return Err(KeyErrorKind::Missing {
                    field: "priv_key.value",
                    expected: "a base64 string",
                })
            }
        };
        let text = |ptr: &str, field: &'static str, expected: &'static str| {
            root.pointer(ptr)
                .and_then(Value::as_str)
                .ok_or(KeyErrorKind::Missing { field, expected })
        };
        let address = text("/address", "address", "a hex string")?;
        let pub_type_s = text("/pub_key/type", "pub_key.type", "a string")?;
        let pub_value = text("/pub_key/value", "pub_key.value", "a base64 string")?;
        let priv_type_s = text("/priv_key/type", "priv_key.type", "a string")?;

        let pub_type = KeyType::from_pub_key_type(pub_type_s).ok_or_else(|| {
            KeyErrorKind::UnsupportedType {
                field: "pub_key.type",
                found: shown_type(pub_type_s),
            }
        })?;
        let priv_type = KeyType::from_priv_key_type(priv_type_s).ok_or_else(|| {
            KeyErrorKind::UnsupportedType {
                field: "priv_key.type",
                found: shown_type(priv_type_s),
            }
        })?;
        if pub_type != priv_type {
            return Err(KeyErrorKind::TypeMismatch {
                pub_type: pub_type_s.to_owned(),
                priv_type: priv_type_s.to_owned(),
            });
        }

        let key =
            ValidatorKey::from_secret_bytes(priv_type, &decode_private(&priv_value, priv_type)?)?;

        let file_pub = BASE64
            .decode(pub_value)
            .map_err(|_| KeyErrorKind::Invalid {
                field: "pub_key.value",
                what: "valid base64",
            })?;
        if file_pub != key.public.bytes {
            return Err(KeyErrorKind::PubKeyMismatch {
                derived: key.public.to_base64(),
            });
        }
        let file_addr = hex::decode(address).map_err(|_| KeyErrorKind::Invalid {
            field: "address",
            what: "valid hex",
        })?;
        if file_addr != key.public.address() {
            return Err(KeyErrorKind::AddressMismatch {
                in_file: if address.len() == 2 * ADDRESS_LEN {
                    address.to_owned()
                } else {
                    format!("({} characters, not shown)", address.len())
                },
                derived: key.public.address_hex(),
            });
        }
        Ok(key)
    }

    /// Build from the private key as stored in the file (32 bytes secp256k1;
    /// 64 bytes seed||pub ed25519), checking the embedded ed25519 public half.
    fn from_secret_bytes(key_type: KeyType, raw: &[u8]) -> Result<Self, KeyErrorKind> {
        if raw.len() != key_type.priv_len() {
            return Err(KeyErrorKind::Length {
                field: "priv_key.value",
                expected: key_type.priv_len(),
                found: raw.len(),
            });
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&raw[..32]);
        let key = match key_type {
            KeyType::Secp256k1 => ValidatorKey::from_secp256k1_secret(seed)?,
            KeyType::Ed25519 => {
                let key = ValidatorKey::from_ed25519_seed(seed);
                if raw[32..] != key.public.bytes[..] {
                    return Err(KeyErrorKind::EmbeddedPubKeyMismatch);
                }
                key
            }
        };
        Ok(key)
    }

    fn from_secp256k1_secret(secret: Zeroizing<[u8; 32]>) -> Result<Self, KeyErrorKind> {
        let sk = k256::ecdsa::SigningKey::from_slice(&secret[..]).map_err(|_| {
            KeyErrorKind::Invalid {
                field: "priv_key.value",
                what: "a valid secp256k1 secret key",
            }
        })?;
        let point = sk.verifying_key().to_encoded_point(true);
        Ok(ValidatorKey {
            public: PublicKey {
                key_type: KeyType::Secp256k1,
                bytes: point.as_bytes().to_vec(),
            },
            secret: Secret::Secp256k1(secret),
        })
    }

    fn from_ed25519_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        ValidatorKey {
            public: PublicKey {
                key_type: KeyType::Ed25519,
                bytes: sk.verifying_key().to_bytes().to_vec(),
            },
            secret: Secret::Ed25519(seed),
        }
    }

    /// A fresh key of `key_type` from the OS RNG (placeholder keys, devnet).
    pub fn generate(key_type: KeyType) -> Self {
        match key_type {
            KeyType::Secp256k1 => ValidatorKey::generate_secp256k1(),
            KeyType::Ed25519 => {
                let mut seed = Zeroizing::new([0u8; 32]);
                OsRng.fill_bytes(&mut seed[..]);
                ValidatorKey::from_ed25519_seed(seed)
            }
        }
    }

    /// A fresh secp256k1 key from the OS RNG (placeholder keys, devnet).
    pub fn generate_secp256k1() -> Self {
        ValidatorKey::generate_secp256k1_with(&mut OsRng)
    }

    /// A fresh secp256k1 key from `rng` (deterministic tests).
    pub fn generate_secp256k1_with(rng: &mut impl CryptoRngCore) -> Self {
        loop {
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(&mut secret[..]);
            // Retried only for zero or >= the group order: probability ~2^-128.
            if let Ok(key) = ValidatorKey::from_secp256k1_secret(secret) {
                return key;
            }
        }
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The algorithm.
    pub fn key_type(&self) -> KeyType {
        self.public.key_type
    }

    /// The 20-byte address.
    pub fn address(&self) -> [u8; ADDRESS_LEN] {
        self.public.address()
    }

    /// Upper-case hex address.
    pub fn address_hex(&self) -> String {
        self.public.address_hex()
    }

    /// Sign as CometBFT's FilePV does: secp256k1 ECDSA over SHA-256(msg),
    /// RFC 6979 nonce, 64-byte `r||s` with low S; ed25519 standard.
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyErrorKind> {
        match &self.secret {
            Secret::Secp256k1(secret) => {
                let sk = k256::ecdsa::SigningKey::from_slice(&secret[..])
                    .map_err(|_| KeyErrorKind::Sign)?;
                let sig: k256::ecdsa::Signature =
                    sk.try_sign(msg).map_err(|_| KeyErrorKind::Sign)?;
                let sig = sig.normalize_s().unwrap_or(sig);
                Ok(sig.to_bytes().to_vec())
            }
            Secret::Ed25519(seed) => {
                let sk = ed25519_dalek::SigningKey::from_bytes(seed);
                Ok(sk.sign(msg).to_bytes().to_vec())
            }
        }
    }

    /// Verify a signature by this key (see [`PublicKey::verify`]).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        self.public.verify(msg, signature)
    }

    /// The key file text in CometBFT's layout (two-space indent, no trailing
    /// newline). Contains the private key: the buffer is wiped on drop.
    pub fn to_json(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; 64]);
        let raw_len = match &self.secret {
            Secret::Secp256k1(s) => {
                raw[..32].copy_from_slice(&s[..]);
                32
            }
            Secret::Ed25519(seed) => {
                raw[..32].copy_from_slice(&seed[..]);
                raw[32..].copy_from_slice(&self.public.bytes);
                64
            }
        };
        let t = self.public.key_type;
        // Reserved up front so the string never reallocates (which would
        // leave an unwiped copy of the secret behind).
        let mut out = Zeroizing::new(String::with_capacity(512));
        out.push_str("{\n  \"address\": \"");
        out.push_str(&self.public.address_hex());
        out.push_str("\",\n  \"pub_key\": {\n    \"type\": \"");
        out.push_str(t.pub_key_type());
        out.push_str("\",\n    \"value\": \"");
        out.push_str(&self.public.to_base64());
        out.push_str("\"\n  },\n  \"priv_key\": {\n    \"type\": \"");
        out.push_str(t.priv_key_type());
        out.push_str("\",\n    \"value\": \"");
        BASE64.encode_string(&raw[..raw_len], &mut out);
        out.push_str("\"\n  }\n}");
        out
    }

    /// Write the key to a new file, mode 0600, atomically. Never replaces an
    /// existing file: overwriting a validator key is not something to do by
    /// accident.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        fsutil::write_atomic(
            path,
            self.to_json().as_bytes(),
            Mode::KeepExisting { new: 0o600 },
            Install::CreateNew,
        )
        .map_err(|e| {
            KeyErrorKind::Io {
                action: e.action,
                source: e.source,
            }
            .at(path)
        })
    }
}

/// A type string for an error message. Quoted only when it cannot be a whole
/// private key (S5): amino names are short and contain a `/`.
fn shown_type(found: &str) -> String {
    if found.len() <= 40 && found.contains('/') {
        found.to_owned()
    } else {
        format!("({} characters, not shown)", found.len())
    }
}

/// Decode the private base64 without ever echoing it: fixed buffer (no
/// reallocation copies), decoder errors reduced to "not valid base64".
fn decode_private(value: &str, key_type: KeyType) -> Result<Zeroizing<Vec<u8>>, KeyErrorKind> {
    let field = "priv_key.value";
    let expected = key_type.priv_len();
    let mut buf = Zeroizing::new([0u8; 66]);
    // 88 base64 characters decode to at most 66 bytes; longer input cannot be a key.
    let len = if value.len() > 88 {
        None
    } else {
        BASE64.decode_slice(value, &mut buf[..]).ok()
    };
    let Some(len) = len else {
        return Err(KeyErrorKind::Invalid {
            field,
            what: "base64 of the right length",
        });
    };
    if len != expected {
        return Err(KeyErrorKind::Length {
            field,
            expected,
            found: len,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(expected));
    out.extend_from_slice(&buf[..len]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_round_trips_through_json() {
        let key = ValidatorKey::generate_secp256k1();
        let back = ValidatorKey::from_json(key.to_json().as_bytes()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let sig = key.sign(b"m").unwrap();
        assert_eq!(sig.len(), 64);
        assert!(back.verify(b"m", &sig));
    }

    #[test]
    fn high_s_signature_is_rejected() {
        let key = ValidatorKey::generate_secp256k1();
        let sig = key.sign(b"m").unwrap();
        let parsed = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        let (r, s) = parsed.split_scalars();
        let high = k256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(!key.verify(b"m", &high.to_bytes()));
    }
}
