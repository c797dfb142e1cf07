//! Unified diffs of file contents, capped in size, for plans and reports.

use similar::TextDiff;

/// Largest diff kept, in bytes; the rest is cut with a note.
pub const MAX_DIFF_BYTES: usize = 10 * 1024;

/// A unified diff from `old` to `new` labelled with `path`; binary contents get a one-line note.
pub fn unified(path: &str, old: &[u8], new: &[u8]) -> String {
    let (Ok(old_text), Ok(new_text)) = (std::str::from_utf8(old), std::str::from_utf8(new)) else {
        return format!("binary content of {path} differs ({} -> {} bytes)\n", old.len(), new.len());
    };
    let diff = TextDiff::from_lines(old_text, new_text);
    let mut text = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("{path} (current)"), &format!("{path} (desired)"))
        .to_string();
    if text.len() > MAX_DIFF_BYTES {
        let mut cut = MAX_DIFF_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n... diff cut at 10 KiB\n");
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn diff_shows_lines() {
        let d = super::unified("/x", b"a\nb\n", b"a\nc\n");
        assert!(d.contains("-b\n+c\n"), "{d}");
        assert!(super::unified("/x", &[0xff, 0], b"a").starts_with("binary"));
    }
}
