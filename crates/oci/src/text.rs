//! Names and text from requests, made safe to print.

/// `text` with every control character written out (`\n`, `\t`, `\x1b`, `\u{85}`), so that a
/// name from a request cannot start a new row or an escape sequence when it is printed as
/// text. Backslashes stay as they are: what is shown is for reading, not for parsing back
/// (the JSON outputs are for that). Every table `berth` prints goes through this, and the
/// server stores a login name outside the account grammar this way in the audit log.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && c.is_control() => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            // C1 controls, line and paragraph separators, bidirectional overrides: they too
            // move the cursor or change how a terminal shows what follows.
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_control;

    #[test]
    fn control_characters_are_written_out() {
        assert_eq!(escape_control("bob"), "bob");
        assert_eq!(
            escape_control("x\nadmin delete.manifest secret/app"),
            "x\\nadmin delete.manifest secret/app"
        );
        assert_eq!(escape_control("\u{1b}[31mred"), "\\x1b[31mred");
        assert_eq!(escape_control("a\\b"), "a\\b");
        // Escaping what is escaped already changes nothing.
        let once = escape_control("x\n\u{1b}");
        assert_eq!(escape_control(&once), once);
        assert_eq!(
            escape_control("\r\t\u{7f}\u{85}\u{202e}"),
            "\\r\\t\\x7f\\u{85}\\u{202e}"
        );
        assert_eq!(escape_control("café"), "café");
    }
}
