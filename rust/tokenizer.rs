//! Word tokenizer: lowercase, then maximal runs of word characters.
//!
//! Word characters are Unicode letters and digits of every script plus `_`. On ASCII text this
//! is exactly the original tool's `re.findall(r"[a-z0-9_]+", text.lower())`; beyond ASCII it
//! keeps `café` whole where the original cut it into `caf`.

use rayon::prelude::*;

#[inline]
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

#[inline]
fn is_ascii_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Byte classes for the ASCII fast path: one table lookup per byte in the hot loop.
const SEP: u8 = 0;
const LOWER: u8 = 1; // a-z, 0-9, _
const UPPER: u8 = 2; // A-Z
const NON_ASCII: u8 = 3;

const BYTE_CLASS: [u8; 256] = {
    let mut t = [SEP; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = if c >= 0x80 {
            NON_ASCII
        } else if c.is_ascii_uppercase() {
            UPPER
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' {
            LOWER
        } else {
            SEP
        };
        b += 1;
    }
    t
};

/// Calls `emit` with every token of `text`.
///
/// Fast path: a run of ASCII word bytes that is already lowercase is emitted as a slice of
/// `text` (no copy); one with capitals is lowercased into a reused buffer. Anything touching
/// non-ASCII goes through `scan_unicode`, which applies the general rule char by char.
pub fn for_each_token<F: FnMut(&str)>(text: &str, mut emit: F) {
    let bytes = text.as_bytes();
    let mut buf = String::new();
    let mut i = 0;
    while i < bytes.len() {
        match BYTE_CLASS[bytes[i] as usize] {
            SEP => {
                i += 1;
                continue;
            }
            NON_ASCII => {
                i = scan_unicode(text, i, &mut buf, &mut emit);
                continue;
            }
            _ => {}
        }
        let start = i;
        let mut classes = 0u8;
        while i < bytes.len() {
            let class = BYTE_CLASS[bytes[i] as usize];
            if class != LOWER && class != UPPER {
                break;
            }
            classes |= class;
            i += 1;
        }
        if i < bytes.len() && BYTE_CLASS[bytes[i] as usize] == NON_ASCII {
            // The word may continue with non-ASCII letters (e.g. "café"): redo it in full.
            i = scan_unicode(text, start, &mut buf, &mut emit);
        } else if classes & UPPER != 0 {
            buf.clear();
            buf.push_str(&text[start..i]);
            buf.make_ascii_lowercase();
            emit(&buf);
        } else {
            emit(&text[start..i]);
        }
    }
}

/// The general rule from byte `start` (a char boundary) up to the next ASCII non-word byte or
/// the end: lowercase each char, then split on non-word chars. Returns where it stopped.
fn scan_unicode<F: FnMut(&str)>(text: &str, start: usize, buf: &mut String, emit: &mut F) -> usize {
    buf.clear();
    let mut end = text.len();
    for (offset, c) in text[start..].char_indices() {
        if c.is_ascii() && !is_ascii_word(c as u8) {
            end = start + offset;
            break;
        }
        // Lowercase first, then classify: one char may lowercase to several.
        for lc in c.to_lowercase() {
            if is_word_char(lc) {
                buf.push(lc);
            } else if !buf.is_empty() {
                emit(buf);
                buf.clear();
            }
        }
    }
    if !buf.is_empty() {
        emit(buf);
        buf.clear();
    }
    end
}

/// The tokens of one text.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for_each_token(text, |t| out.push(t.to_string()));
    out
}

/// The tokens of many texts, in parallel, order preserved.
pub fn tokenize_batch<S: AsRef<str> + Sync>(texts: &[S]) -> Vec<Vec<String>> {
    texts.par_iter().map(|t| tokenize(t.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The original tool's rule, written out for ASCII input.
    fn reference_ascii(text: &str) -> Vec<String> {
        let lower = text.to_ascii_lowercase();
        lower
            .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn keeps_accented_words_whole() {
        assert_eq!(
            tokenize("Hello, Café-World_2!"),
            vec!["hello", "café", "world_2"]
        );
    }

    #[test]
    fn other_scripts_are_words() {
        assert_eq!(
            tokenize("Москва и 東京 123"),
            vec!["москва", "и", "東京", "123"]
        );
    }

    #[test]
    fn empty_and_punctuation_only() {
        assert!(tokenize("").is_empty());
        assert!(tokenize("  ,.;!? \n\t").is_empty());
    }

    #[test]
    fn batch_preserves_order() {
        let texts = vec!["a b", "", "C d e"];
        assert_eq!(
            tokenize_batch(&texts),
            vec![vec!["a", "b"], vec![], vec!["c", "d", "e"]]
        );
    }

    /// The plain char-by-char statement of the rule, to check the fast paths against.
    fn reference_unicode(text: &str) -> Vec<String> {
        let lower: String = text.chars().flat_map(char::to_lowercase).collect();
        lower
            .split(|c: char| !is_word_char(c))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn mixed_scripts_and_case() {
        for text in [
            "ÉCOLE normale",
            "naïve-Café_X",
            "İstanbul",
            "aé",
            "éa b",
            "a\u{301}b",
        ] {
            assert_eq!(tokenize(text), reference_unicode(text), "{text}");
        }
    }

    proptest! {
        #[test]
        fn fast_paths_equal_the_plain_rule(s in "[a-zA-Z0-9_ ,.éÉİß\u{301}日本-]{0,60}") {
            prop_assert_eq!(tokenize(&s), reference_unicode(&s));
        }

        #[test]
        fn ascii_matches_original_rule(s in "[ -~\t\n]{0,200}") {
            prop_assert_eq!(tokenize(&s), reference_ascii(&s));
        }

        #[test]
        fn arbitrary_unicode_never_panics(s in any::<String>()) {
            for t in tokenize(&s) {
                prop_assert!(!t.is_empty());
            }
        }
    }
}
