//! Content digests (`sha256:<hex>`, `sha512:<hex>`) and resumable hashing.
//!
//! An upload may span many requests on many instances, so the running hash
//! state is serialisable: it is saved with the upload session after every chunk
//! and restored by whichever instance takes the next one.

use std::fmt;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A supported digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

/// A validated digest of a supported algorithm, hex always lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    split: usize,
}

/// Why a digest string was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the `algorithm:encoded` grammar, or wrong length or characters.
    Malformed,
    /// Well formed, but an algorithm this registry does not implement.
    Unsupported,
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let (alg, encoded) = text.split_once(':').ok_or(DigestError::Malformed)?;
        let alg_ok = !alg.is_empty()
            && alg
                .split(['+', '.', '_', '-'])
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        let encoded_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b'_' || b == b'-');
        if !alg_ok || !encoded_ok {
            return Err(DigestError::Malformed);
        }
        let algorithm = Algorithm::parse(alg).ok_or(DigestError::Unsupported)?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Malformed);
        }
        Ok(Digest {
            text: text.to_string(),
            split: alg.len(),
        })
    }

    /// The digest of `data` under `algorithm`.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Digest {
        let mut hasher = Hasher::new(algorithm);
        hasher.update(data);
        hasher.finish()
    }

    /// The digest whose raw output is `out` (a hash computed elsewhere: the
    /// caller checks its length is the algorithm's).
    pub fn of_output(algorithm: Algorithm, out: &[u8]) -> Digest {
        Digest {
            text: format!("{}:{}", algorithm.name(), hex(out)),
            split: algorithm.name().len(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        // Validated at construction: one of the two.
        match self.text.starts_with("sha512:") {
            true => Algorithm::Sha512,
            false => Algorithm::Sha256,
        }
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        &self.text[self.split + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An incremental hasher whose state can be saved and restored between requests.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, out) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        Digest::of_output(algorithm, &out)
    }

    /// The running state as hex, for storing in an upload session.
    pub fn save(&self) -> String {
        match self {
            Hasher::Sha256(h) => hex(&h.serialize()),
            Hasher::Sha512(h) => hex(&h.serialize()),
        }
    }

    /// Restores a state written by [`Hasher::save`]; `None` if it is corrupt.
    pub fn restore(algorithm: Algorithm, saved: &str) -> Option<Hasher> {
        let raw = unhex(saved)?;
        Some(match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::deserialize(raw.as_slice().try_into().ok()?).ok()?),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::deserialize(raw.as_slice().try_into().ok()?).ok()?),
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let digit = |nibble: u8| char::from_digit(u32::from(nibble), 16).unwrap_or('0');
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 15));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_digests() {
        let d = Digest::parse("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d, Digest::of(Algorithm::Sha256, b""));
        let d512 = Digest::of(Algorithm::Sha512, b"x");
        assert_eq!(Digest::parse(d512.as_str()).unwrap(), d512);
    }

    #[test]
    fn refuses_bad_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "sha256:xyz",
            "SHA256:00",
            "sha256:ABC",
            "sha256:0123",
        ] {
            assert_eq!(Digest::parse(bad), Err(DigestError::Malformed), "{bad}");
        }
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(Digest::parse(&upper), Err(DigestError::Malformed));
        assert_eq!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::Unsupported)
        );
    }

    #[test]
    fn saved_state_resumes_to_the_one_shot_digest() {
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
            let mut first = Hasher::new(algorithm);
            first.update(&data[..3_333]);
            let saved = first.save();
            let mut resumed = Hasher::restore(algorithm, &saved).unwrap();
            resumed.update(&data[3_333..]);
            assert_eq!(resumed.finish(), Digest::of(algorithm, &data));
        }
        assert!(Hasher::restore(Algorithm::Sha256, "zz").is_none());
        assert!(Hasher::restore(Algorithm::Sha256, "00").is_none());
    }
}
