//! `linux.rpm.key` — an OpenPGP public key imported into the rpm database (`rpm --import`), so that packages signed with it verify.
//!
//! | parameter | type | default | notes |
//! |---|---|---|---|
//! | `path` | path or URL | required | the key file, ASCII-armored (`-----BEGIN PGP PUBLIC KEY BLOCK-----`) or binary: a local path, a `file://` or `http(s)://` URL (downloaded into the agent's download cache, revalidated once per round) |
//!
//! rpm keeps each imported key as a package named `gpg-pubkey-<id>`, where `<id>` is the last 8
//! hex digits of the key's id. "Already fine" means every public key in the file is there
//! (`rpm -q gpg-pubkey-<id>`): the key id is read from the file itself (OpenPGP v4 keys), so a
//! key is never imported twice (the original ran `rpm --import` every round). `--test` lists the
//! keys to import: `create gpg-pubkey-1a2b3c4d (import from /etc/pki/rpm-gpg/KEY)`. The
//! original had no removal, and neither has this module (`rpm -e gpg-pubkey-<id>` removes one).
//!
//! ```yaml
//! - id: epel-key
//!   module: linux.rpm.key
//!   parameter:
//!     path: /etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-9
//! ```

use opsagent_recipe::{Diagnostic, ParamReader, State};
use sha1::{Digest, Sha1};

use crate::fetch::Source;
use crate::process::Tail;
use crate::providers::yum;
use crate::{Action, Change, Ctx, Outcome, Plan, StateError};

/// A validated `linux.rpm.key`.
#[derive(Debug, Clone)]
pub struct RpmKey {
    pub path: Source,
}

/// The largest key file downloaded.
const MAX_KEY: u64 = 1 << 20;

impl RpmKey {
    pub fn from_params(state: &State) -> Result<(RpmKey, Vec<Diagnostic>), Vec<Diagnostic>> {
        let mut p = ParamReader::new(state);
        let pos = p.node("path").and_then(|n| n.pos);
        let raw = p.required_string("path", "give the key file, e.g. `path: /etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-9`");
        let path =
            raw.and_then(|raw| Source::read(&mut p, "path", pos, raw.trim(), "/etc/pki/rpm-gpg/RPM-GPG-KEY-EPEL-9"));
        let warnings = p.finish(&["path"], &[])?;
        let path = path.expect("finish fails when `path` is missing or not a path or URL");
        Ok((RpmKey { path }, warnings))
    }

    pub async fn check(&self, ctx: &Ctx) -> Result<Plan, StateError> {
        let missing = self.missing(ctx).await?;
        let changes = missing
            .iter()
            .map(|id| Change::new(Action::Create, format!("gpg-pubkey-{id}"), format!("import from {}", self.path)))
            .collect();
        Ok(Plan { changes, diff: None })
    }

    pub async fn apply(&self, ctx: &Ctx, plan: Plan) -> Result<Outcome, StateError> {
        // The copy `check` downloaded (or revalidated) in this round.
        let file = self.path.local(ctx, None, MAX_KEY).await?;
        let output = yum::rpm(ctx, &["--import".to_string(), file.display().to_string()]).await?;
        if let Some(id) = self.missing(ctx).await?.first() {
            return Err(StateError::Conflict {
                path: file,
                problem: format!("was imported, but rpm has no `gpg-pubkey-{id}` afterwards"),
            });
        }
        let max = ctx.round.max_output_bytes;
        Ok(Outcome {
            stdout: Some(Tail::from_bytes(output.stdout.bytes, max)),
            stderr: Some(Tail::from_bytes(output.stderr.bytes, max)),
            ..plan.into()
        })
    }

    /// The ids (8 hex digits, as rpm names them) of the file's keys that rpm does not have.
    async fn missing(&self, ctx: &Ctx) -> Result<Vec<String>, StateError> {
        let file = self.path.local(ctx, None, MAX_KEY).await?;
        let bytes = std::fs::read(&file).map_err(StateError::io("reading the key file", &file))?;
        let ids = key_ids(&bytes).map_err(|problem| {
            let problem = match &self.path {
                Source::Remote(_) => format!("(from {}) {problem}", self.path),
                Source::Local(_) => problem,
            };
            StateError::Conflict { path: file.clone(), problem }
        })?;
        let mut missing = Vec::new();
        for id in ids {
            if !yum::rpm_has(ctx, &format!("gpg-pubkey-{id}")).await? {
                missing.push(id);
            }
        }
        Ok(missing)
    }
}

/// The rpm ids (the last 8 hex digits of the key id, lowercase) of the primary public keys in an
/// OpenPGP key file, armored or binary, in file order.
pub fn key_ids(file: &[u8]) -> Result<Vec<String>, String> {
    let text = String::from_utf8_lossy(file);
    let blocks: Vec<Vec<u8>> =
        if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") { dearmor(&text)? } else { vec![file.to_vec()] };
    let mut ids = Vec::new();
    for block in blocks {
        for (tag, body) in packets(&block)? {
            // Tag 6: a primary public key (subkeys, tag 14, are imported with it).
            if tag != 6 {
                continue;
            }
            match body.first() {
                Some(4) => {}
                Some(v) => return Err(format!("holds a version {v} OpenPGP key; rpm imports version 4 keys")),
                None => return Err("holds an empty key packet".into()),
            }
            // The v4 fingerprint: SHA-1 of 0x99, the 2-byte body length, the body; the key id
            // is its last 8 bytes, and rpm names the key after the last 4.
            let len = u16::try_from(body.len()).map_err(|_| "holds a key packet that is too long".to_string())?;
            let mut sha = Sha1::new();
            sha.update([0x99]);
            sha.update(len.to_be_bytes());
            sha.update(body);
            let fingerprint = sha.finalize();
            ids.push(hex::encode(&fingerprint[16..20]));
        }
    }
    if ids.is_empty() {
        return Err("holds no OpenPGP public key".into());
    }
    Ok(ids)
}

/// The binary content of each `PUBLIC KEY BLOCK` in an armored file.
fn dearmor(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while lines.any(|l| l == "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        // Armor headers ("Version: …") end at the first blank line.
        let mut base64 = String::new();
        let mut in_headers = true;
        let mut ended = false;
        for line in lines.by_ref() {
            if line.starts_with("-----END PGP PUBLIC KEY BLOCK-----") {
                ended = true;
                break;
            }
            if in_headers {
                if line.is_empty() {
                    in_headers = false;
                } else if !line.contains(": ") {
                    // No headers at all: this line is data already.
                    in_headers = false;
                    base64.push_str(line);
                }
                continue;
            }
            // The `=XXXX` line is the CRC-24 checksum, not data.
            if !line.starts_with('=') {
                base64.push_str(line);
            }
        }
        if !ended {
            return Err("has a PGP PUBLIC KEY BLOCK without its END line".into());
        }
        blocks.push(decode_base64(&base64).ok_or("has a PGP PUBLIC KEY BLOCK that is not valid base64")?);
    }
    Ok(blocks)
}

/// The packets of a binary OpenPGP message: (tag, body).
fn packets(mut data: &[u8]) -> Result<Vec<(u8, &[u8])>, String> {
    let bad = || "is not an OpenPGP key file (a packet header is broken)".to_string();
    let mut out = Vec::new();
    while let Some(&header) = data.first() {
        if header & 0x80 == 0 {
            return Err(bad());
        }
        let (tag, len, header_len) = if header & 0x40 != 0 {
            // New format: the length in 1, 2 or 5 octets (partial lengths never occur in keys).
            let tag = header & 0x3f;
            match data.get(1).copied() {
                Some(o) if o < 192 => (tag, o as usize, 2),
                Some(o) if o < 224 => {
                    let o2 = *data.get(2).ok_or_else(bad)? as usize;
                    (tag, ((o as usize - 192) << 8) + o2 + 192, 3)
                }
                Some(255) => {
                    let b = data.get(2..6).ok_or_else(bad)?;
                    (tag, u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 6)
                }
                _ => return Err(bad()),
            }
        } else {
            // Old format: the tag in bits 5-2, the length's size in bits 1-0.
            let tag = (header >> 2) & 0x0f;
            match header & 0x03 {
                0 => (tag, *data.get(1).ok_or_else(bad)? as usize, 2),
                1 => {
                    let b = data.get(1..3).ok_or_else(bad)?;
                    (tag, u16::from_be_bytes([b[0], b[1]]) as usize, 3)
                }
                2 => {
                    let b = data.get(1..5).ok_or_else(bad)?;
                    (tag, u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize, 5)
                }
                _ => (tag, data.len() - 1, 1),
            }
        };
        let body = data.get(header_len..header_len + len).ok_or_else(bad)?;
        out.push((tag, body));
        data = &data[header_len + len..];
    }
    Ok(out)
}

/// Standard base64 (with `=` padding; whitespace already removed).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some((c - b'A') as u32),
            b'a'..=b'z' => Some((c - b'a') as u32 + 26),
            b'0'..=b'9' => Some((c - b'0') as u32 + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let data: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = data.strip_suffix(b"==").or_else(|| data.strip_suffix(b"=")).unwrap_or(&data);
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in data {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(decode_base64("a*b=").is_none());
    }

    #[test]
    fn key_ids_of_a_v4_key() {
        // A tiny made-up v4 key packet (new format, tag 6): its id is the fingerprint's tail.
        let body = [4u8, 0x5f, 0, 0, 0, 22, 0, 8, 0xff];
        let mut packet = vec![0xc6, body.len() as u8];
        packet.extend_from_slice(&body);
        let mut sha = Sha1::new();
        sha.update([0x99, 0, body.len() as u8]);
        sha.update(body);
        let want = hex::encode(&sha.finalize()[16..20]);
        assert_eq!(key_ids(&packet).unwrap(), [want.as_str()]);
        // The same packet with an old-format header, then armored.
        let mut old = vec![0x98, body.len() as u8];
        old.extend_from_slice(&body);
        assert_eq!(key_ids(&old).unwrap(), [want.as_str()]);
        let armored = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nVersion: test\n\nxgkEXwAAABYACP8=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n";
        assert_eq!(key_ids(armored.as_bytes()).unwrap(), [want]);
        assert!(key_ids(b"hello").is_err());
        assert!(key_ids(b"").is_err());
    }
}
