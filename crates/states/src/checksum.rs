//! Checksums as recipes write them (`sha256:HEX`, the original's `md5=HEX`), checksum files
//! (`SHA256SUMS`, `x.tar.gz.sha256`: [`from_sums_file`]), and file digests.

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

/// The checksum of `file_name` in the text of a checksum file: a `HEX  NAME` (or `HEX *NAME`) line
/// as `sha256sum` writes them, a BSD `SHA256 (NAME) = HEX` line, or the file's single hash (bare,
/// or as `algo:HEX`). The algorithm follows from the digest's length (32 hex digits: md5, 40:
/// sha1, 64: sha256, 128: sha512). The error says what is missing.
pub fn from_sums_file(text: &str, file_name: &str) -> Result<Checksum, String> {
    let mut found: Vec<(Option<String>, Checksum)> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Ok(checksum) = parse_checksum(line) {
            found.push((None, checksum));
            continue;
        }
        // BSD form: `SHA256 (name) = hex`.
        if let Some((left, hex)) = line.rsplit_once(") = ") {
            if let Some((_, name)) = left.split_once(" (") {
                if let Some(checksum) = by_length(hex) {
                    found.push((Some(name.to_string()), checksum));
                }
            }
            continue;
        }
        let mut parts = line.splitn(2, char::is_whitespace);
        let (Some(hex), name) = (parts.next(), parts.next()) else { continue };
        let Some(checksum) = by_length(hex) else { continue };
        let name = name.map(|n| n.trim().trim_start_matches('*').to_string()).filter(|n| !n.is_empty());
        found.push((name, checksum));
    }
    let base = |name: &str| name.rsplit('/').next().unwrap_or(name).to_string();
    if let Some((_, checksum)) = found.iter().find(|(name, _)| name.as_deref().map(base).as_deref() == Some(file_name))
    {
        return Ok(checksum.clone());
    }
    match found.as_slice() {
        [(None, checksum)] => Ok(checksum.clone()),
        [] => Err("the checksum file holds no md5, sha1, sha256 or sha512 digest".into()),
        _ => Err(format!("the checksum file has no line for `{file_name}`")),
    }
}

fn by_length(hex: &str) -> Option<Checksum> {
    let hex = hex.trim().to_ascii_lowercase();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let algo = [Algo::Md5, Algo::Sha1, Algo::Sha256, Algo::Sha512].into_iter().find(|a| a.hex_len() == hex.len())?;
    Some(Checksum { algo, hex })
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

    #[test]
    fn checksum_files() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let sums = format!("# comment\n{a}  app-1.0.tar.gz\n{b} *dist/app-1.1.tar.gz\n");
        assert_eq!(from_sums_file(&sums, "app-1.1.tar.gz").unwrap().to_string(), format!("sha256:{b}"));
        assert_eq!(from_sums_file(&sums, "app-1.0.tar.gz").unwrap().hex, a);
        assert_eq!(from_sums_file(&sums, "other.zip").unwrap_err(), "the checksum file has no line for `other.zip`");
        let md5 = "d41d8cd98f00b204e9800998ecf8427e";
        assert_eq!(from_sums_file(&format!("{md5}\n"), "x.zip").unwrap().to_string(), format!("md5:{md5}"));
        assert_eq!(from_sums_file(&format!("md5={md5}"), "x.zip").unwrap().algo, Algo::Md5);
        assert_eq!(from_sums_file(&format!("SHA256 (x.zip) = {a}\n"), "x.zip").unwrap().hex, a);
        // A single line naming another file is not taken for this one.
        assert!(from_sums_file(&format!("{a}  y.zip\n"), "x.zip").is_err());
        assert!(from_sums_file("<html>not found</html>", "x.zip").unwrap_err().contains("holds no"));
    }
}
