//! Checksums as recipes write them (`sha256:HEX`, the original's `md5=HEX`), and file digests.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use opsagent_recipe::{Kind, ParamReader};
use sha2::Digest;

use crate::StateError;

/// A checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    pub fn hex_len(self) -> usize {
        match self {
            Algo::Md5 => 32,
            Algo::Sha1 => 40,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

/// An expected checksum: `algo:hex` (hex in lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algo: Algo,
    pub hex: String,
}

impl std::fmt::Display for Checksum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.algo.name(), self.hex)
    }
}

pub type ChecksumError = (Kind, String, String);

pub fn parse_checksum(text: &str) -> Result<Checksum, ChecksumError> {
    let text = text.trim();
    let hint = "write `md5:HEX`, `sha1:HEX`, `sha256:HEX` or `sha512:HEX`".to_string();
    if text.starts_with("http://") || text.starts_with("https://") {
        return Err((Kind::NotYetSupported, "a checksum file URL is not yet supported".into(), hint));
    }
    let Some((algo, hex)) = text.split_once(':').or_else(|| text.split_once('=')) else {
        return Err((Kind::BadValue, format!("`{text}` does not name its algorithm"), hint));
    };
    let algo = match algo.trim().to_ascii_lowercase().as_str() {
        "md5" => Algo::Md5,
        "sha1" => Algo::Sha1,
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        other => return Err((Kind::BadValue, format!("`{other}` is not a checksum algorithm opsagent knows"), hint)),
    };
    let hex = hex.trim().to_ascii_lowercase();
    if hex.len() != algo.hex_len() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err((
            Kind::BadValue,
            format!("`{hex}` is not a {} checksum ({} hex digits)", algo.name(), algo.hex_len()),
            hint,
        ));
    }
    Ok(Checksum { algo, hex })
}

/// Reads an optional checksum parameter, reporting a malformed one.
pub fn param(p: &mut ParamReader<'_>, name: &str) -> Option<Checksum> {
    let pos = p.node(name).and_then(|n| n.pos);
    p.string(name).filter(|c| !c.trim().is_empty()).and_then(|c| {
        let parsed = parse_checksum(&c);
        if let Err((kind, message, hint)) = &parsed {
            p.report(*kind, name, pos, message.clone(), Some(hint.clone()));
        }
        parsed.ok()
    })
}

/// The hex digest of a file, read in chunks.
pub fn digest_file(path: &Path, algo: Algo) -> Result<String, StateError> {
    fn run<D: Digest>(mut file: fs::File) -> io::Result<String> {
        let mut hasher = D::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(hex::encode(hasher.finalize()));
            }
            hasher.update(&buf[..n]);
        }
    }
    let file = fs::File::open(path).map_err(StateError::io("reading", path))?;
    match algo {
        Algo::Md5 => run::<md5::Md5>(file),
        Algo::Sha1 => run::<sha1::Sha1>(file),
        Algo::Sha256 => run::<sha2::Sha256>(file),
        Algo::Sha512 => run::<sha2::Sha512>(file),
    }
    .map_err(StateError::io("reading", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_parse() {
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(parse_checksum(&format!("md5:{md5}")).unwrap().to_string(), format!("md5:{md5}"));
        assert_eq!(parse_checksum(&format!("MD5={}", md5.to_uppercase())).unwrap().to_string(), format!("md5:{md5}"));
        assert!(parse_checksum("sha256:abc").unwrap_err().1.contains("is not a sha256 checksum"));
        assert!(parse_checksum("crc:00").unwrap_err().1.contains("`crc` is not a checksum algorithm"));
        assert_eq!(parse_checksum("https://x/sum").unwrap_err().0, Kind::NotYetSupported);
    }
}
