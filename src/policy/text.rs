//! Text that people read: which characters a name may hold, and how much of a
//! value a message quotes.
//!
//! Names (of rules) appear in `show rules`, `monitor`, `explain`, log prefixes'
//! companions and metric labels, so a name must not be able to look like
//! another one or hide text: no controls (Cc), no format characters (Cf: bidi
//! overrides such as U+202E, zero-width joiners, U+FEFF, U+00AD, tag
//! characters), no line or paragraph separators (Zl, Zp), no private-use (Co)
//! or unassigned (Cn) code points, and no space but U+0020 (U+00A0, U+3000 and
//! the other Zs characters look like a plain space). The categories come from
//! the `unicode-general-category` crate (the Unicode Character Database's
//! `General_Category`, one table and no dependencies) rather than a table of
//! our own: `char::is_control` covers only Cc, and a hand-kept list of ranges
//! would fall behind each Unicode version. The crate's Unicode version is
//! [`unicode_general_category::UNICODE_VERSION`]; a code point assigned in a
//! later version counts as unassigned until the crate is updated.

use std::fmt;

use unicode_general_category::{get_general_category, GeneralCategory};

/// The most characters of a value a message quotes.
pub const QUOTE_CHARS: usize = 80;

/// A value quoted for a message, as `{:?}` quotes it (escapes included), cut
/// after [`QUOTE_CHARS`] characters with an ellipsis and the value's length:
/// a 1 MB value must not become a 1 MB line in the journal and `show state`.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => {
                let head = format!("{:?}", &self.0[..cut]);
                let open = head.strip_suffix('"').unwrap_or(&head);
                write!(f, "{open}…\" ({} characters)", self.0.chars().count())
            }
        }
    }
}

/// The most characters of a library's message [`clip_quoted`] keeps.
const LIBRARY_MESSAGE_CHARS: usize = 400;

/// Shortens every quoted run longer than [`QUOTE_CHARS`] characters in a
/// message written by a library (the YAML parser's `invalid type: string
/// "..."` and serde's ``unknown variant `...` ``), whose format strings this
/// crate does not own. Double quotes are taken as `{:?}` writes them (`\"`
/// inside does not end the run); backquotes as serde writes them, unescaped,
/// so a value that holds backquotes ends its run early and its rest reads as
/// unquoted text: the whole message is then cut after
/// [`LIBRARY_MESSAGE_CHARS`] characters.
pub fn clip_quoted(message: &str) -> String {
    let clipped = clip_runs(message);
    match clipped.char_indices().nth(LIBRARY_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &clipped[..cut]),
        None => clipped,
    }
}

fn clip_runs(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(1024));
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = char::from(rest.as_bytes()[open]);
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let mut escaped = false;
        let close = rest.char_indices().find_map(|(i, c)| {
            let end = c == quote && !escaped;
            escaped = quote == '"' && c == '\\' && !escaped;
            end.then_some(i)
        });
        let inside = &rest[..close.unwrap_or(rest.len())];
        match inside.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => {
                out.push_str(&inside[..cut]);
                out.push('…');
            }
            None => out.push_str(inside),
        }
        match close {
            Some(i) => {
                out.push(quote);
                rest = &rest[i + 1..];
            }
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Why `c` may not be part of a name, if it may not.
pub fn unprintable(c: char) -> Option<&'static str> {
    Some(match get_general_category(c) {
        GeneralCategory::Control => "a control character (Cc)",
        GeneralCategory::Format => "a format character (Cf), such as a bidi override or a zero-width character",
        GeneralCategory::LineSeparator => "a line separator (Zl)",
        GeneralCategory::ParagraphSeparator => "a paragraph separator (Zp)",
        GeneralCategory::PrivateUse => "a private-use character (Co)",
        GeneralCategory::Unassigned => "not an assigned character (Cn)",
        GeneralCategory::Surrogate => "a surrogate (Cs)",
        GeneralCategory::SpaceSeparator if c != ' ' => "a space other than U+0020 (Zs)",
        _ => return None,
    })
}

/// Checks `what` (such as "a rule name"): 1 to `max` characters, each
/// printable. The message says which character is not, by code point (it may
/// be invisible).
pub fn check_name(name: &str, what: &str, max: usize) -> Result<(), String> {
    let rule = format!("{what} is 1 to {max} printable characters");
    let count = name.chars().count();
    if count == 0 || count > max {
        return Err(format!("{} is {count} characters; {rule}", Quoted(name)));
    }
    match name.chars().enumerate().find_map(|(i, c)| unprintable(c).map(|why| (i, c, why))) {
        None => Ok(()),
        Some((i, c, why)) => {
            Err(format!("{}: character {} is U+{:04X}, {why}; {rule}", Quoted(name), i + 1, u32::from(c)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(Quoted("web").to_string(), "\"web\"");
        assert_eq!(Quoted("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        let exact = "x".repeat(QUOTE_CHARS);
        assert_eq!(Quoted(&exact).to_string(), format!("\"{exact}\""));
    }

    #[test]
    fn long_values_are_cut_at_80_characters() {
        let long = "é".repeat(1 << 20);
        let q = Quoted(&long).to_string();
        assert_eq!(q, format!("\"{}…\" (1048576 characters)", "é".repeat(QUOTE_CHARS)));
    }

    #[test]
    fn library_messages_are_clipped_inside_quotes() {
        let m = format!("invalid type: string \"{}\", expected u16", "9".repeat(500));
        assert_eq!(clip_quoted(&m), format!("invalid type: string \"{}…\", expected u16", "9".repeat(QUOTE_CHARS)));
        // An escaped quote does not end the run; short runs and the rest stay.
        let m = format!("a \"{}\\\"{}\" b \"ok\" c", "x".repeat(70), "y".repeat(70));
        assert_eq!(clip_quoted(&m), format!("a \"{}\\\"{}…\" b \"ok\" c", "x".repeat(70), "y".repeat(8)));
        // An unclosed quote is cut too.
        let m = format!("x \"{}", "z".repeat(200));
        assert_eq!(clip_quoted(&m), format!("x \"{}…", "z".repeat(QUOTE_CHARS)));
        assert_eq!(clip_quoted("no quotes"), "no quotes");
        // serde's backquotes, and a backslash that ends a run ("a\\").
        let m = format!("unknown variant `{}`, expected `in` or \"a\\\\\" `out`", "v".repeat(90));
        assert_eq!(
            clip_quoted(&m),
            format!("unknown variant `{}…`, expected `in` or \"a\\\\\" `out`", "v".repeat(QUOTE_CHARS))
        );
    }

    /// Found by fuzzing (`policy/fuzz.rs`): backquotes inside a value that
    /// serde quotes in backquotes.
    #[test]
    fn library_messages_are_cut_when_a_value_holds_the_quotes() {
        let m = format!("unknown variant `({}`, expected `in` or `out`", "`".repeat(2000));
        let clipped = clip_quoted(&m);
        assert_eq!(clipped.chars().count(), LIBRARY_MESSAGE_CHARS + 1);
        assert!(clipped.starts_with("unknown variant `(``") && clipped.ends_with('…'), "{clipped}");
    }

    #[test]
    fn names_reject_each_category() {
        for (c, category) in [
            ('\u{7}', "(Cc)"),
            ('\u{202E}', "(Cf)"),
            ('\u{202A}', "(Cf)"),
            ('\u{2066}', "(Cf)"),
            ('\u{2069}', "(Cf)"),
            ('\u{061C}', "(Cf)"),
            ('\u{200B}', "(Cf)"),
            ('\u{200D}', "(Cf)"),
            ('\u{FEFF}', "(Cf)"),
            ('\u{00AD}', "(Cf)"),
            ('\u{E0041}', "(Cf)"),
            ('\u{2028}', "(Zl)"),
            ('\u{2029}', "(Zp)"),
            ('\u{E000}', "(Co)"),
            ('\u{F0000}', "(Co)"),
            ('\u{0378}', "(Cn)"),
            ('\u{00A0}', "(Zs)"),
            ('\u{3000}', "(Zs)"),
        ] {
            let name = format!("web{c}admin");
            let e = check_name(&name, "a name", 100).unwrap_err();
            assert!(e.contains(category), "{c:?}: {e}");
            assert!(e.contains(&format!("character 4 is U+{:04X}", u32::from(c))), "{e}");
        }
    }

    #[test]
    fn names_accept_printable_text() {
        for name in ["web in", "Zugriff für Büro", "ssh-管理", "naïve café 🙂", "a+b (c) [d]"] {
            assert_eq!(check_name(name, "a name", 100), Ok(()), "{name}");
        }
        assert!(check_name("", "a name", 100).unwrap_err().contains("a name is 1 to 100 printable characters"));
        assert!(check_name(&"x".repeat(101), "a name", 100).unwrap_err().contains("101 characters"));
    }
}
